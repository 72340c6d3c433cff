"""Immutable, printable result records.

Modelled on scipy's ``OptimizeResult`` (attribute access, a readable ordered repr with message,
success and status first) and on Gambit's ``NashComputationResult`` (the record keeps the game,
the method and its parameters, so it explains how it was obtained).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from cage_games.actions import ActionGrid
from cage_games.game import CommonAgencyGame

__all__ = ["EquilibriumResult", "FrozenRecord", "RefinementStep", "format_record", "freeze"]


def freeze(value: Any) -> Any:
    """A read-only version of a record field: arrays copied and locked, dicts as mapping
    proxies, lists as tuples. Used by every immutable record of the package."""
    if isinstance(value, np.ndarray):
        value = value.copy()
        value.setflags(write=False)
    elif isinstance(value, dict):
        value = MappingProxyType(dict(value))
    elif isinstance(value, list):
        value = tuple(value)
    return value


class FrozenRecord:
    """Mixin for the package's frozen dataclass records: after construction every field is
    made read-only with :func:`freeze` (arrays locked, dicts as mapping proxies, lists as
    tuples), so a record cannot be changed after the fact."""

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            object.__setattr__(self, f.name, freeze(getattr(self, f.name)))


def _format_value(value: Any, indent: int) -> str:
    """Text for one record value; continuation lines are indented by ``indent`` spaces."""
    pad = "\n" + " " * indent
    width = max(40, 100 - indent)
    if is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in fields(value) if f.repr}
    if isinstance(value, np.ndarray):
        text = np.array2string(value, precision=6, threshold=24, edgeitems=4, max_line_width=width)
        return text.replace("\n", pad)
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    if isinstance(value, str):
        return pad.join(textwrap.wrap(value, width)) or '""'
    if isinstance(value, tuple) and value and all(isinstance(v, str) for v in value):
        if all(len(v) <= 24 for v in value):
            return pad.join(textwrap.wrap(", ".join(value), width))
        return pad.join(
            pad.join(textwrap.wrap(v, width, initial_indent="- ", subsequent_indent="  "))
            for v in value
        )
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        keys = [str(k) for k in value]
        kw = max(len(k) for k in keys)
        return pad.join(
            f"{k.ljust(kw)}: {_format_value(v, indent + kw + 2)}"
            for k, v in zip(keys, value.values(), strict=True)
        )
    return repr(value)


def format_record(obj: Any, title: str | None = None, skip: tuple[str, ...] = ()) -> str:
    """Render a dataclass record as an optional title and aligned ``name: value`` lines.

    The one formatter of the package's records and reports. Fields declared with
    ``repr=False`` (the game, bulky arrays), fields named in ``skip``, ``None`` values and
    empty mappings are left out; arrays are written compactly, floats with 6 significant
    digits, tuples of strings one per line as a bullet list.
    """
    names = [
        f.name
        for f in fields(obj)
        if f.repr
        and f.name not in skip
        and getattr(obj, f.name) is not None
        and not (isinstance(getattr(obj, f.name), Mapping) and not getattr(obj, f.name))
    ]
    width = max(len(n) for n in names)
    lines = [] if title is None else [title]
    for name in names:
        lines.append(f"{name.rjust(width)}: {_format_value(getattr(obj, name), width + 2)}")
    return "\n".join(lines)


@dataclass(frozen=True, eq=False, repr=False)
class EquilibriumResult(FrozenRecord):
    """The outcome of :func:`cage_games.solve`: an equilibrium with its own residual.

    Attributes
    ----------
    message : str
        What happened, in words.
    success : bool
        Whether the residual met the tolerance (and, with caps, whether every capped principal's
        KKT point was checked to be a global best response; see ``cap_check``).
    status : int
        0 converged; 1 iteration limit reached; 2 no further progress possible (stagnation at
        the floating-point floor); 3 numerical failure; 4 (``beta = 0`` with binding caps,
        ``method="quantal-limit"``) no capped truthful equilibrium was found, and the limit of
        the quantal equilibria is returned instead (see the message).
    method : str
        The solver that produced the answer (``"auto"`` is resolved to the one used; a
        fall-back is written as ``"newton>gauss-seidel"``).
    residual : float
        ``max_i |G_i(c)| / beta``: the threshold system's residual in units of the agent's
        temperature (dimensionless: the game only depends on ``u / beta``).
    nit : int
        Iterations (Newton steps, Gauss-Seidel sweeps or diagonalization sweeps).
    nfev : int
        Evaluations of the threshold system (or best-response programs for diagonalization).
    policy : ndarray, shape (n,)
        The agent's equilibrium mixed action.
    transfers : ndarray, shape (m, n)
        Equilibrium transfer schedules, ``>= 0`` and ``<= cap``; zero off the agent's support.
    thresholds : ndarray, shape (m,)
        The thresholds ``c_i`` (utility units): ``tau_i = clip(u_i - c_i, 0, cap_i)``.
    payoffs : ndarray, shape (m,)
        Principals' net payoffs ``E_pi[u_i - tau_i]``.
    agent_payoff : float
        The agent's value ``beta * log sum_a exp((v + sum_i tau_i) / beta)``.
    params : mapping
        The parameters the solver ran with (tol, max_iter, ...).
    history : tuple of float
        Residual after each iteration (the first entry is at the starting point).
    game : CommonAgencyGame
        The game that was solved (for a continuous box: tabulated on the final grid).
    refinement : tuple of RefinementStep
        For a :class:`~cage_games.ContinuousActions` game: one record per grid solved
        (size, payoffs, mean action and their changes); empty otherwise.

    Notes
    -----
    Coordinates: :attr:`action` is the action taken (``beta = 0``) or the modal action;
    :attr:`action_coords`, :attr:`mean_action` and :attr:`marginals` speak in the
    coordinates of the game's action space (a plain game has one dimension, ``"action"``,
    the action's index).
    """

    message: str
    success: bool
    status: int
    method: str
    residual: float
    nit: int
    nfev: int
    policy: np.ndarray
    transfers: np.ndarray
    thresholds: np.ndarray
    payoffs: np.ndarray
    agent_payoff: float
    params: Mapping[str, Any] = field(default_factory=dict)
    history: tuple[float, ...] = field(default=(), repr=False)
    game: CommonAgencyGame | None = field(default=None, repr=False)
    refinement: tuple[RefinementStep, ...] = field(default=(), repr=False)

    @property
    def action(self) -> int:
        """The action taken (``beta = 0``) or the modal action (largest probability)."""
        return int(np.argmax(self.policy))

    def _grid(self) -> ActionGrid:
        if self.game is not None and self.game.grid is not None:
            return self.game.grid
        return ActionGrid(action=np.arange(self.policy.size, dtype=float))

    @property
    def action_coords(self) -> dict[str, float]:
        """Coordinates of :attr:`action`: ``{dimension: value}``."""
        return self._grid().point(self.action)

    @property
    def mean_action(self) -> dict[str, float]:
        """Mean coordinates under the policy: ``{dimension: value}``."""
        return self._grid().mean(self.policy)

    @property
    def marginals(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Marginal distribution of the policy per dimension: ``{name: (values, probs)}``."""
        grid = self._grid()
        axes = grid.axes
        return {n: (axes[n], p) for n, p in grid.marginals(self.policy).items()}

    def __repr__(self) -> str:
        return format_record(self)

    __str__ = __repr__


@dataclass(frozen=True, eq=False, repr=False)
class RefinementStep(FrozenRecord):
    """One grid of an adaptive refinement of a continuous action space.

    Attributes
    ----------
    n_actions : int
        Points of the grid.
    shape : tuple of int
        Points per dimension.
    payoffs : ndarray, shape (m,)
        The principals' payoffs on this grid.
    agent_payoff : float
        The agent's payoff on this grid.
    mean_action : mapping
        The mean action on this grid.
    payoff_change : float
        Largest change of a payoff (principals' and agent's) from the previous grid
        (``inf`` on the first).
    action_change : float
        Largest change of a mean coordinate from the previous grid, relative to the box's
        width in that dimension (``inf`` on the first).
    residual : float
        The solver's residual on this grid.
    """

    n_actions: int
    shape: tuple[int, ...]
    payoffs: np.ndarray
    agent_payoff: float
    mean_action: Mapping[str, float]
    payoff_change: float
    action_change: float
    residual: float

    def __repr__(self) -> str:
        return format_record(self, title="RefinementStep")
