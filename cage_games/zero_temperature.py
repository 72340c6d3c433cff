"""The zero-temperature path: quantal equilibria approaching the menu auction as ``beta -> 0``.

With the agent's utility ``v`` held fixed and ``beta -> 0`` the quantal equilibrium
concentrates on the efficient action and the principals' payoffs enter the Bernheim-Whinston
truthful-equilibrium polytope (design note, fact 5); docs/menu_auction.rst states the rate,
``O(beta log(1/beta))``. This module sits above both :mod:`cage_games.menu_auction` and
:mod:`cage_games.solvers`, so neither imports the other.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cage_games.game import Agent, CommonAgencyGame
from cage_games.menu_auction import (
    MenuAuctionResult,
    _check_game,
    _welfare_table,
    solve_menu_auction,
    truthful_set_violation,
)
from cage_games.result import FrozenRecord, format_record
from cage_games.solvers import solve

__all__ = ["ZeroTemperaturePath", "zero_temperature_path"]


@dataclass(frozen=True, eq=False, repr=False)
class ZeroTemperaturePath(FrozenRecord):
    """Quantal equilibria along ``beta -> 0`` compared with the menu auction's truthful set.

    Attributes
    ----------
    betas : ndarray, shape (k,)
        The temperatures, in the order solved (decreasing).
    efficient_mass : ndarray, shape (k,)
        Policy mass on the efficient action(s) at each ``beta``.
    max_violation : ndarray, shape (k,)
        ``max(0, max_S sum_{i in S} U_i - (W(N) - W(N \\ S)))`` for the quantal equilibrium
        payoffs ``U``: 0 once they are inside the truthful-equilibrium polytope.
    frontier_slack : ndarray, shape (k,)
        ``min_S (W(N) - W(N \\ S) - sum_{i in S} U_i) / |S|``: the largest amount every
        principal's payoff could rise together within the polytope; negative outside it, 0 on
        its (weak) Pareto frontier, where the truthful equilibria are.
    payoffs : ndarray, shape (k, m)
        The quantal equilibrium payoffs.
    agent_payoffs : ndarray, shape (k,)
        The agent's value at each ``beta``.
    residuals : ndarray, shape (k,)
        The solver's residual at each ``beta``.
    success : bool
        Whether every quantal solve succeeded.
    auction : MenuAuctionResult
        The ``beta = 0`` truthful equilibrium (default selection).
    results : tuple of EquilibriumResult
        The quantal solves.
    """

    betas: np.ndarray
    efficient_mass: np.ndarray
    max_violation: np.ndarray
    frontier_slack: np.ndarray
    payoffs: np.ndarray
    agent_payoffs: np.ndarray
    residuals: np.ndarray
    success: bool
    auction: MenuAuctionResult = field(repr=False)
    results: tuple = field(default=(), repr=False)

    def table(self) -> str:
        """The path as a table: ``beta``, efficient mass, violation, payoffs."""
        lines = [f"{'beta':>8}  {'mass on a*':>10}  {'violation':>10}  {'slack':>10}  payoffs"]
        for k, beta in enumerate(self.betas):
            pay = np.array2string(self.payoffs[k], precision=4, separator=", ")
            lines.append(
                f"{beta:8.4g}  {self.efficient_mass[k]:10.6f}  {self.max_violation[k]:10.2e}  "
                f"{self.frontier_slack[k]:10.2e}  {pay}"
            )
        lines.append(
            f"{'0 (BW)':>8}  {1.0:10.6f}  {0.0:10.2e}  {0.0:10.2e}  "
            + np.array2string(self.auction.payoffs, precision=4, separator=", ")
            + f"  ({self.auction.selection})"
        )
        return "\n".join(lines)

    def plot(self, path: str | os.PathLike) -> str:
        """Save a two-panel log-log plot of the path to ``path``; return the path.

        Left: the policy mass off the efficient action(s). Right: ``|frontier_slack|``, the
        payoffs' distance to the truthful frontier, filled where they violate a coalition
        bound (outside the polytope) and hollow inside it. Zeros are left out of the log
        scale. Uses :class:`matplotlib.figure.Figure` directly: no window is opened and
        pyplot's global state is left alone.
        """
        from matplotlib.figure import Figure

        fig = Figure(figsize=(8, 3.2), layout="constrained")
        ax1, ax2 = fig.subplots(1, 2)
        off = 1.0 - self.efficient_mass
        keep = off > 0
        ax1.loglog(self.betas[keep], off[keep], "o-")
        ax1.set_xlabel("beta")
        ax1.set_ylabel("1 - policy mass on a*")
        ax1.set_title("concentration on the efficient action")
        dist = np.abs(self.frontier_slack)
        keep = dist > 0
        ax2.loglog(self.betas[keep], dist[keep], "-", color="C1")
        outside = keep & (self.max_violation > 0)
        inside = keep & ~(self.max_violation > 0)
        ax2.loglog(self.betas[outside], dist[outside], "s", color="C1", label="outside P")
        ax2.loglog(self.betas[inside], dist[inside], "s", mfc="none", color="C1", label="inside P")
        ax2.set_xlabel("beta")
        ax2.set_ylabel("|frontier slack|")
        ax2.set_title("payoffs approaching the truthful frontier")
        ax2.legend(fontsize=8)
        for ax in (ax1, ax2):
            ax.invert_xaxis()
            ax.grid(True, which="both", alpha=0.3)
        fig.savefig(path, dpi=110)
        return os.fspath(path)

    def __repr__(self) -> str:
        return format_record(self)

    __str__ = __repr__


def zero_temperature_path(
    game: CommonAgencyGame,
    betas: Sequence[float] | np.ndarray = (1.0, 0.1, 0.03, 0.01, 0.003),
    *,
    plot: str | os.PathLike | None = None,
    selection: str | Sequence[float] | np.ndarray = "equal-sacrifice",
    **solve_kwargs: Any,
) -> ZeroTemperaturePath:
    """Solve the quantal game at decreasing ``beta`` (``v`` fixed) and compare with ``beta = 0``.

    Design note fact 5: as ``beta -> 0`` with the agent's utility ``v`` held fixed, the
    quantal equilibrium concentrates on the efficient action and the principals' payoffs
    converge into the Bernheim-Whinston truthful-equilibrium polytope.

    Parameters
    ----------
    game : CommonAgencyGame
        The game; its own ``beta`` is ignored, ``v`` (``game.agent.utility``), the support,
        the utilities and caps are kept. (A game built with :meth:`Agent.kl_regularized` has
        ``v = beta * log p0`` frozen at its construction ``beta``.)
    betas : sequence of float
        Positive temperatures, sorted decreasing for the report.
    plot : path, optional
        If given, a plot of the path is saved there (see :meth:`ZeroTemperaturePath.plot`).
    selection : str or weights
        Passed to :func:`solve_menu_auction` for the ``beta = 0`` reference point.
    **solve_kwargs
        Passed to :func:`cage_games.solve` (``method``, ``tol``, ``max_iter``).

    Returns
    -------
    ZeroTemperaturePath
    """
    game = _check_game(game)
    betas_arr = np.asarray(betas, dtype=float)
    if betas_arr.ndim != 1 or betas_arr.size == 0:
        raise ValueError("betas must be a non-empty 1-D sequence of positive temperatures")
    if not np.all(np.isfinite(betas_arr)) or np.any(betas_arr <= 0):
        raise ValueError(
            "betas must be finite and positive (beta = 0 is the menu auction itself), "
            f"got {betas_arr}"
        )
    betas_arr = np.sort(betas_arr)[::-1]
    auction = solve_menu_auction(game, selection=selection)
    eff = list(auction.efficient_actions)
    results = []
    for beta in betas_arr:
        agent = Agent(utility=game.agent.utility, beta=float(beta), support=game.agent.support)
        g = CommonAgencyGame(agent, game.principals, game.action_names)
        results.append(solve(g, **solve_kwargs))
    payoffs = np.array([r.payoffs for r in results])
    viol = np.array([max(0.0, truthful_set_violation(game, p)) for p in payoffs])
    W, masks = _welfare_table(game)
    full = 2**game.n_principals - 1
    A = masks[1:].astype(float)
    b = W[full] - W[full ^ np.arange(1, full + 1)]
    slack = ((b[None, :] - payoffs @ A.T) / A.sum(axis=1)[None, :]).min(axis=1)
    path = ZeroTemperaturePath(
        betas=betas_arr,
        efficient_mass=np.array([float(r.policy[eff].sum()) for r in results]),
        max_violation=viol,
        frontier_slack=slack,
        payoffs=payoffs,
        agent_payoffs=np.array([r.agent_payoff for r in results]),
        residuals=np.array([r.residual for r in results]),
        success=all(r.success for r in results),
        auction=auction,
        results=tuple(results),
    )
    if plot is not None:
        path.plot(plot)
    return path
