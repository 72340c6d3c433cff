"""Generic EPEC diagonalization: Gauss-Seidel over principals with convex best responses.

Each sweep visits the principals in order; principal ``i`` replaces its schedule by its best
response to the others, computed by :func:`cage_games.best_response` with ``method="conic"`` (the
exponential-cone program of design note fact 1, solved with cvxpy; the global threshold search
for capped principals, which have no convex program). It stops when the agent's policy moves
by less than ``tol`` (sup norm) in a sweep. This is the textbook route for EPECs (e.g. Su,
2005, "Equilibrium problems with equilibrium constraints", PhD thesis, Stanford, chapter 5),
independent of the threshold system, hence the reference the fast solvers are checked
against, and slow.
"""

from __future__ import annotations

import numpy as np

from cage_games.certificates import best_response, policy
from cage_games.game import CommonAgencyGame
from cage_games.result import EquilibriumResult
from cage_games.thresholds import ThresholdSystem, log_softmax

__all__ = ["solve_diagonalization"]


def solve_diagonalization(
    game: CommonAgencyGame, *, tol: float, max_iter: int, x0: np.ndarray | None = None
) -> EquilibriumResult:
    """Best-response sweeps until the policy changes by less than ``tol`` between sweeps."""
    m, n = game.n_principals, game.n_actions
    system = ThresholdSystem(game)
    tau = np.zeros((m, n)) if x0 is None else system.transfers(np.asarray(x0, dtype=float))
    pi = policy(game, tau)
    history: list[float] = []
    # The conic program is the generic, threshold-free route; capped principals have no convex
    # program, so theirs is the global threshold search.
    methods = ["threshold" if np.isfinite(cap) else "conic" for cap in game.caps]
    status, nit, nfev, solver = 1, 0, 0, ""
    while nit < max_iter:
        nit += 1
        for i in range(m):
            br = best_response(game, i, tau, method=methods[i])
            tau[i] = br.transfer
            nfev += 1
            solver = br.solver if br.method == "conic" else solver
        new = policy(game, tau)
        change = float(np.max(np.abs(new - pi)))
        history.append(change)
        pi = new
        if change <= tol:
            status = 0
            break
    # Thresholds by the KKT identity c_i = beta + E_pi[u_i - tau_i] (design note fact 2); the
    # residual then measures how far the cvxpy answer is from the threshold system's root.
    pay = (game.utilities - tau) @ pi
    thresholds = game.beta + pay
    residual = float(np.max(np.abs(system.residual(thresholds))))
    logits = np.where(
        game.agent.support, (game.agent.utility + tau.sum(axis=0)) / game.beta, -np.inf
    )
    k = int(np.argmax(logits))
    agent_payoff = float(game.beta * (logits[k] - log_softmax(logits)[k]))
    # Say what was reached: the stopping rule is on the policy's movement, not the residual.
    reached = (
        f"the policy moved by {history[-1]:.2e} in sweep {nit} (tol {tol:.1e}); "
        f"threshold-system residual {residual:.2e}"
    )
    if status == 0:
        message = f"Policy settled: {reached}."
        if residual > tol:
            message += (
                " The residual is above tol: the conic solver's accuracy (about 1e-8) limits it;"
                " use method='newton' for a tighter equilibrium."
            )
    else:
        message = f"Iteration limit reached before the policy settled: {reached}."
    return EquilibriumResult(
        message=message,
        success=status == 0,
        status=status,
        method="diagonalization",
        residual=residual,
        nit=nit,
        nfev=nfev,
        policy=pi,
        transfers=tau,
        thresholds=thresholds,
        payoffs=pay,
        agent_payoff=agent_payoff,
        params={"tol": tol, "max_iter": max_iter, "x0": x0, "solver": solver or "CLARABEL"},
        history=history,
        game=game,
    )
