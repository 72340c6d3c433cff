"""Adaptive refinement of a continuous action box (:class:`~cage_games.ContinuousActions`).

Algorithm (:func:`solve_refined`):

1. Tabulate the game on the box's first uniform grid (``resolution`` points per dimension),
   the agent's utility shifted by ``beta * log(w)`` for the cells' volume shares ``w``
   (so the quantal agent chooses a density on the box; see :mod:`cage_games.actions`).
2. Solve it with the chosen method.
3. Find the grid's *active* points per dimension:

   - ``beta > 0``: the nodes where the policy's marginal has mass above ``1e-10``; every
     interval touching one is halved (a quantal policy has full support, so this refines
     where the density lives, and payoffs then converge at the trapezoid rule's ``O(h^2)``);
   - ``beta = 0``: the coordinates of the action taken, of every action with policy mass
     above ``1e-3`` (a capped game's answer may be a mixed limit) and of every maximiser of
     ``v + sum_{i in S} u_i`` over all coalitions ``S``
     (the actions that determine the menu auction's payoffs, ``W(N) - W(N \\ S)``); the two
     intervals on each side are cut into four (the grid is refined *around* the answer, so
     the taken action converges to the continuous maximiser, the first-order-condition
     solution for smooth concave payoffs, at a rate ``h_0 / 4^k``).

4. Re-tabulate on the refined grid and repeat until the payoffs (the principals' and the
   agent's) move less than ``refine_tol`` times their scale and the mean action less than
   ``refine_tol`` times the box's width, or ``max_refinements`` refinements, or the grid would
   exceed ``max_actions`` points.

The result is the last grid's, with ``refinement`` the history of every grid solved and
``success`` false if the refinement did not converge.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from cage_games._validation import as_int, as_scalar
from cage_games.actions import ActionGrid, ContinuousActions
from cage_games.game import CommonAgencyGame
from cage_games.result import EquilibriumResult, RefinementStep

__all__ = ["REFINE_OPTIONS", "refine_grid", "solve_refined"]

#: The options :func:`cage_games.solve` routes to the refinement instead of the method.
REFINE_OPTIONS = ("refine_tol", "max_refinements", "max_actions")
_MASS = 1e-10


def _key_actions(game: CommonAgencyGame, res: EquilibriumResult) -> np.ndarray:
    """Actions whose neighbourhoods are refined at ``beta = 0``."""
    keys = {res.action, *np.flatnonzero(res.policy > 1e-3).tolist()}
    m = game.n_principals
    if m <= 12:
        masks = ((np.arange(2**m)[:, None] >> np.arange(m)[None, :]) & 1).astype(float)
        # In blocks of coalitions, so that 2**m x n never has to sit in memory at once.
        step = max(1, 2_000_000 // max(1, game.n_actions))
        for start in range(0, masks.shape[0], step):
            totals = game.agent.utility[None, :] + masks[start : start + step] @ game.utilities
            totals = np.where(game.agent.support[None, :], totals, -np.inf)
            keys |= set(np.argmax(totals, axis=1).tolist())
    return np.array(sorted(keys), dtype=int)


def _refine_axis(x: np.ndarray, intervals: set[int], parts: int) -> np.ndarray:
    """Cut each interval ``[x[j], x[j+1]]`` in ``intervals`` into ``parts`` equal pieces."""
    new = [x]
    for j in intervals:
        if 0 <= j < x.size - 1:
            new.append(np.linspace(x[j], x[j + 1], parts + 1)[1:-1])
    return np.unique(np.concatenate(new))


def refine_grid(game: CommonAgencyGame, res: EquilibriumResult) -> ActionGrid:
    """The next grid of the adaptive refinement around ``res`` (see the module docstring)."""
    grid = game.grid
    axes = grid.axes
    new_axes = {}
    if game.beta > 0:
        for name, marg in grid.marginals(res.policy).items():
            active = np.flatnonzero(marg > _MASS)
            intervals = set((active - 1).tolist()) | set(active.tolist())
            new_axes[name] = _refine_axis(axes[name], intervals, 2)
    else:
        keys = _key_actions(game, res)
        idx = np.unravel_index(keys, grid.shape)
        for k, name in enumerate(grid.names):
            near = set()
            for j in np.unique(idx[k]).tolist():
                near |= {j - 2, j - 1, j, j + 1}
            new_axes[name] = _refine_axis(axes[name], near, 4)
    return ActionGrid(**new_axes)


def solve_refined(
    game: CommonAgencyGame,
    solve_on: Callable[[CommonAgencyGame], EquilibriumResult],
    *,
    refine_tol: float | None = None,
    max_refinements: int = 12,
    max_actions: int = 200_000,
) -> EquilibriumResult:
    """Solve a game on a continuous box on adaptively refined grids.

    Parameters
    ----------
    game : CommonAgencyGame
        A game with ``actions=ContinuousActions(...)`` (tabulated on its current grid).
    solve_on : callable
        Solves one tabulated game (``cage_games.solve`` passes the chosen method).
    refine_tol : float, optional
        Stop when payoffs move less than ``refine_tol * max(1, |payoffs|)`` and the mean
        action less than ``refine_tol`` times the box's width between two grids. Default
        ``1e-6`` at ``beta = 0`` and ``1e-4`` for ``beta > 0`` (where payoffs converge like
        ``h^2`` and a tighter tolerance needs very fine grids).
    max_refinements : int
        Most refinements after the first grid.
    max_actions : int
        Never tabulate a grid with more points than this.

    Returns
    -------
    EquilibriumResult
        The last grid's result, ``refinement`` holding one
        :class:`~cage_games.result.RefinementStep` per grid; ``success`` also requires the
        refinement to have converged, and the message says how it ended.
    """
    if not isinstance(game.actions, ContinuousActions):
        raise ValueError("solve_refined needs a game with actions=cg.ContinuousActions(...)")
    if refine_tol is None:
        refine_tol = 1e-6 if game.beta == 0 else 1e-4
    refine_tol = as_scalar(refine_tol, "refine_tol", minimum=0.0, strict=True)
    max_refinements = as_int(max_refinements, "max_refinements", minimum=0)
    max_actions = as_int(max_actions, "max_actions", minimum=1)
    width = game.actions.upper - game.actions.lower
    steps: list[RefinementStep] = []
    prev: tuple[np.ndarray, np.ndarray] | None = None
    current = game
    ending = ""
    converged = False
    while True:
        res = solve_on(current)
        pay = np.append(res.payoffs, res.agent_payoff)
        mean = np.array(list(res.mean_action.values()))
        if prev is None:
            dpay = dact = float("inf")
        else:
            dpay = float(np.max(np.abs(pay - prev[0])))
            dact = float(np.max(np.abs(mean - prev[1]) / width))
        steps.append(
            RefinementStep(
                n_actions=current.n_actions,
                shape=current.grid.shape,
                payoffs=res.payoffs,
                agent_payoff=float(res.agent_payoff),
                mean_action=res.mean_action,
                payoff_change=dpay,
                action_change=dact,
                residual=float(res.residual),
            )
        )
        scale = max(1.0, float(np.max(np.abs(pay))))
        if dpay <= refine_tol * scale and dact <= refine_tol:
            converged = True
            ending = (
                f"Refinement converged after {len(steps) - 1} refinements "
                f"({current.n_actions} grid points): payoffs moved {dpay:.2g}, the mean action "
                f"{dact:.2g} of the box's width."
            )
            break
        if len(steps) > max_refinements:
            ending = (
                f"Refinement stopped at max_refinements={max_refinements} before converging "
                f"(last changes: payoffs {dpay:.2g}, mean action {dact:.2g} of the width)."
            )
            break
        new_grid = refine_grid(current, res)
        if new_grid.size > max_actions:
            ending = (
                f"Refinement stopped: the next grid would have {new_grid.size} points "
                f"(max_actions={max_actions}); last changes: payoffs {dpay:.2g}, mean action "
                f"{dact:.2g} of the width."
            )
            break
        if new_grid == current.grid:
            converged = True
            ending = "Refinement converged: the grid cannot be refined further."
            break
        prev = (pay, mean)
        current = game.on_grid(new_grid)
    params: dict[str, Any] = dict(res.params)
    params.update(refine_tol=refine_tol, max_refinements=max_refinements)
    return dataclasses.replace(
        res,
        message=f"{res.message} {ending}",
        success=bool(res.success and converged),
        status=res.status if converged or res.status != 0 else 1,
        params=params,
        refinement=tuple(steps),
    )
