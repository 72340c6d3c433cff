"""The record of a run of learning dynamics, and its plot."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from cage_games.result import FrozenRecord, format_record

__all__ = ["LearningResult", "plot_learning"]


@dataclass(frozen=True, eq=False, repr=False)
class LearningResult(FrozenRecord):
    """The outcome of :func:`cage_games.learning.learn`: regrets, bounds, averages, distances.

    Regrets are totals over the rounds in utility units (divide by ``rounds`` for the average
    regret). "The class" is the learner's strategy set: the grid of thresholds for the Hedge
    learners, the whole interval ``[min u_i, max u_i]`` for gradient ascent.

    Attributes
    ----------
    learner : str
        The learner's name.
    params : mapping
        Its parameters, defaults resolved (step size, grid, ...).
    rounds : int
        Number of rounds ``T``.
    seed : int
        Entropy of the run's ``numpy.random.SeedSequence`` (pass it back as ``seed`` to
        reproduce the run).
    names : tuple of str
        The principals' names.
    regret : ndarray, shape (m,)
        External regret against the best fixed schedule of the class in hindsight:
        ``max_x sum_t U_i(x; opponents_t) - sum_t (learner's payoff_t)``, the learner's payoff
        being the expectation under its mixed strategy (Hedge) or at its threshold (gradient).
        Exact by enumeration for Hedge; dense grid plus bounded local search for gradient.
    bound : ndarray, shape (m,)
        The learner's theoretical regret bound for these parameters (see ``bound_formula``
        and ``bound_covers`` for what it assumes and controls).
    within_bound : ndarray of bool, shape (m,)
        ``regret <= bound`` (for gradient ascent the bound's quantity is ``linearized_regret``).
    average_regret : ndarray, shape (m,)
        ``regret / rounds``.
    realized_regret : ndarray, shape (m,)
        Regret of the thresholds actually drawn (differs from ``regret`` for sampling learners).
    interval_regret : ndarray, shape (m,)
        Regret against the best fixed threshold in the whole interval (grid plus refinement):
        for Hedge it adds the grid's discretisation error.
    linearized_regret : ndarray or None
        ``max_x sum_t g_t (x - c_t)`` for gradient ascent (what Zinkevich's bound controls).
    best_fixed : ndarray, shape (m,)
        The best fixed threshold of the class in hindsight.
    average_thresholds : ndarray, shape (m,)
        Time-averaged thresholds played.
    average_policy : ndarray, shape (n,)
        Time-averaged agent policy.
    average_payoffs : ndarray, shape (m,)
        Time-averaged realised payoffs ``E_pi[u_i - tau_i]``.
    equilibrium_thresholds, equilibrium_policy : ndarray or None
        The equilibrium compared with (``cage_games.solve`` unless given).
    policy_distance : float or None
        Total-variation distance between the average policy and the equilibrium policy.
    threshold_distance : ndarray or None, shape (m,)
        ``|average threshold - equilibrium threshold|``, both clipped to ``[min u_i, max u_i]``
        (above ``max u_i`` every threshold is the zero schedule). With a cap, a whole interval
        of thresholds can give the same schedule, so prefer ``transfer_distance`` there.
    transfer_distance : ndarray or None, shape (m,)
        ``max_a |average transfer_i(a) - equilibrium transfer_i(a)|`` over the agent's support
        (utility units): the distance between schedules, identifiable even where thresholds
        are not.
    bound_formula, bound_source, bound_covers : str
        The bound's expression, its source theorem, and what it controls.
    regret_trajectory : ndarray, shape (T, m)
        Regret after each round, against the class's grid (for gradient ascent the grid before
        the final refinement, so its last entry can be slightly below ``regret``).
    distance_trajectory : ndarray or None, shape (T,)
        Policy TV distance of the running average after each round.
    threshold_distance_trajectory, transfer_distance_trajectory : ndarray or None, shape (T, m)
        The two distances of the running averages after each round.
    thresholds : ndarray, shape (T, m)
        Thresholds played each round.
    diagnostics : mapping
        Learner-specific extras.
    """

    learner: str
    params: Mapping[str, Any]
    rounds: int
    seed: int
    names: tuple[str, ...]
    regret: np.ndarray
    bound: np.ndarray
    average_regret: np.ndarray
    realized_regret: np.ndarray
    interval_regret: np.ndarray
    linearized_regret: np.ndarray | None
    best_fixed: np.ndarray
    average_thresholds: np.ndarray
    average_policy: np.ndarray
    average_payoffs: np.ndarray
    equilibrium_thresholds: np.ndarray | None
    equilibrium_policy: np.ndarray | None
    policy_distance: float | None
    threshold_distance: np.ndarray | None
    transfer_distance: np.ndarray | None
    bound_formula: str
    bound_source: str
    bound_covers: str
    regret_trajectory: np.ndarray = field(repr=False)
    distance_trajectory: np.ndarray | None = field(repr=False)
    threshold_distance_trajectory: np.ndarray | None = field(repr=False)
    transfer_distance_trajectory: np.ndarray | None = field(repr=False)
    thresholds: np.ndarray = field(repr=False)
    diagnostics: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def within_bound(self) -> np.ndarray:
        measured = self.linearized_regret if self.linearized_regret is not None else self.regret
        return measured <= self.bound

    def __repr__(self) -> str:
        return format_record(self)

    __str__ = __repr__

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no per-round trajectories)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if not f.repr:
                continue
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                v = v.tolist()
            elif isinstance(v, Mapping):
                v = {k: (x.item() if isinstance(x, np.generic) else x) for k, x in v.items()}
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        out["within_bound"] = self.within_bound.tolist()
        return out

    def plot(self, path: str | os.PathLike[str]) -> Path:
        """Save the regret/T and distance-to-equilibrium curves; see :func:`plot_learning`."""
        return plot_learning(self, path)


def plot_learning(result: LearningResult, path: str | os.PathLike[str]) -> Path:
    """Plot average regret and distance to equilibrium over the rounds, and save the figure.

    Left: ``regret_t / t`` per principal (log rounds axis), with ``bound / T`` marked at the
    horizon (and, for gradient ascent, the linearised regret that the bound controls). Right:
    the total-variation distance of the running average policy to the equilibrium policy and
    each principal's sup-distance between its running average transfer schedule and its
    equilibrium schedule (log-log), when an equilibrium was used.

    Parameters
    ----------
    result : LearningResult
    path : str or path-like
        Output file; the format follows the extension (``.png``, ``.pdf``, ``.svg``).

    Returns
    -------
    pathlib.Path
        The file written.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - matplotlib is in the test extra
        raise ImportError("plotting needs matplotlib: pip install 'cage-games[plot]'") from None
    path = Path(path)
    T = result.rounds
    t = np.arange(1, T + 1)
    fig = Figure(figsize=(9.0, 3.6), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    for i, name in enumerate(result.names):
        (line,) = ax1.plot(t, result.regret_trajectory[:, i] / t, label=f"{name}: regret/t")
        ax1.plot(
            [T],
            [result.bound[i] / T],
            marker="v",
            color=line.get_color(),
            linestyle="none",
            label=f"{name}: bound/T",
        )
        if result.linearized_regret is not None:
            ax1.plot(
                [T],
                [result.linearized_regret[i] / T],
                marker="x",
                color=line.get_color(),
                linestyle="none",
                label=f"{name}: linearised regret/T",
            )
    ax1.axhline(0.0, color="0.6", linewidth=0.8)
    ax1.set_xscale("log")
    ax1.set_xlabel("round t")
    ax1.set_ylabel("average regret (utility units)")
    ax1.set_title(f"{result.learner}: average regret")
    ax1.legend(fontsize="small")
    if result.distance_trajectory is not None:
        tiny = 1e-16
        ax2.loglog(
            t, np.maximum(result.distance_trajectory, tiny), color="k", label="TV(avg policy, eq.)"
        )
        for i, name in enumerate(result.names):
            ax2.loglog(
                t,
                np.maximum(result.transfer_distance_trajectory[:, i], tiny),
                linestyle="--",
                label=f"max|avg tau - tau*| {name}",
            )
        ax2.set_xlabel("round t")
        ax2.set_title("time average vs equilibrium")
        ax2.legend(fontsize="small")
    else:
        ax2.text(
            0.5, 0.5, "no equilibrium given", ha="center", va="center", transform=ax2.transAxes
        )
        ax2.set_axis_off()
    fig.savefig(path, dpi=100)
    return path
