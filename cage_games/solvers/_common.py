"""Pieces shared by the threshold-system solvers: the 1-D safeguarded root and result assembly."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from cage_games.result import EquilibriumResult
from cage_games.thresholds import Evaluation, ThresholdSystem, log_softmax

STATUS_MESSAGES = {
    0: "Converged: the threshold-system residual is below tol.",
    1: "Iteration limit reached before the residual fell below tol.",
    2: "No further progress possible: the residual stagnated above tol (floating-point floor).",
    3: "Numerical failure: a step produced non-finite values.",
}


def root_1d(
    g: Callable[[float], tuple[float, float]], lo: float, hi: float, x0: float, ftol: float
) -> tuple[float, int]:
    """Safeguarded Newton (rtsafe) for ``g(x) = 0`` on ``[lo, hi]`` with ``g(lo) < 0 <= g(hi)``.

    Newton steps from the current point, falling back to bisection whenever a step leaves the
    current bracket or the derivative is not positive (Press et al., *Numerical Recipes*,
    3rd ed., section 9.4). Returns the root and the number of evaluations.
    """
    a, b = lo, hi
    x = min(max(x0, a), b)
    nfev = 0
    for _ in range(200):
        f, df = g(x)
        nfev += 1
        if abs(f) <= ftol:
            break
        if f < 0:
            a = x
        else:
            b = x
        if b - a <= 4 * np.finfo(float).eps * max(1.0, abs(x)):
            break
        step_ok = df > 0 and np.isfinite(df)
        x_new = x - f / df if step_ok else 0.5 * (a + b)
        if not (a < x_new < b):
            x_new = 0.5 * (a + b)
        x = x_new
    return x, nfev


def gauss_seidel_sweep(
    system: ThresholdSystem, gamma: np.ndarray, ftol: float
) -> tuple[np.ndarray, int]:
    """One nonlinear Gauss-Seidel sweep: an exact 1-D root of ``G_i`` per principal, in order."""
    gamma = gamma.copy()
    nfev = 0
    for i in range(gamma.size):
        gamma[i], k = root_1d(
            system.partial(i, gamma), system.lower[i], system.upper[i], gamma[i], ftol
        )
        nfev += k
    return gamma, nfev


def initial_point(system: ThresholdSystem, x0: np.ndarray | None) -> np.ndarray:
    """Scaled starting thresholds: the user's ``x0`` (utility units) or "nobody pays".

    "Nobody pays" puts each threshold at ``max_a u_i(a)``, where every principal is inactive
    (at ``u_i + beta``, its exact root, for a principal whose utility is constant).
    """
    if x0 is None:
        # max u_i is the lower face itself when u_i is constant on the support; such a
        # principal never pays, and its root is the upper face (c_i = u_i + beta).
        start = system.upper - 1.0
        return np.where(start > system.lower, start, system.upper)
    x0 = np.asarray(x0, dtype=float)
    if x0.shape != system.lower.shape or not np.isfinite(x0).all():
        raise ValueError(
            f"x0 must be {system.lower.size} finite thresholds (one per principal), got {x0!r}"
        )
    return np.clip(x0 / system.beta, system.lower, system.upper)


def build_result(
    system: ThresholdSystem,
    gamma: np.ndarray,
    *,
    status: int,
    method: str,
    nit: int,
    nfev: int,
    tol: float,
    params: Mapping[str, Any],
    history: list[float],
    message: str | None = None,
    evaluation: Evaluation | None = None,
) -> EquilibriumResult:
    """Assemble an :class:`EquilibriumResult` from scaled thresholds ``gamma``.

    The policy, transfers and payoffs are recomputed from ``gamma`` by the model's own
    definitions, so the record is self-consistent whatever the solver did (``evaluation``, if
    given, must be the system evaluated at this very ``gamma``: it saves one evaluation).
    """
    game = system.game
    beta = system.beta
    ev = evaluation if evaluation is not None else system.evaluate(gamma, jacobian=False)
    residual = float(np.max(np.abs(ev.G)))
    thresholds = beta * gamma
    transfers = system.transfers(thresholds)
    policy = ev.policy
    payoffs = (game.utilities - transfers) @ policy
    logits = system.nu + transfers.sum(axis=0) / beta
    agent_payoff = float(beta * (np.max(logits) - log_softmax(logits)[np.argmax(logits)]))
    if not np.all(np.isfinite(policy)) or not np.isfinite(residual):
        status = 3
    elif status == 1 and residual <= tol:
        status = 0  # the limit was hit while polishing an answer already within tolerance
    success = status == 0 and residual <= tol
    if status == 0 and not success:
        status = 2
    return EquilibriumResult(
        message=message or STATUS_MESSAGES[status],
        success=bool(success),
        status=int(status),
        method=method,
        residual=residual,
        nit=int(nit),
        nfev=int(nfev),
        policy=policy,
        transfers=transfers,
        thresholds=thresholds,
        payoffs=payoffs,
        agent_payoff=agent_payoff,
        params=dict(params),
        history=tuple(history),
        game=game,
    )
