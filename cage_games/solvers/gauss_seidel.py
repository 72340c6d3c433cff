"""Nonlinear Gauss-Seidel on the thresholds: a bracketed 1-D root per principal, sweeping.

Each principal in turn solves its own equation ``G_i(c_i; c_{-i}) = 0`` exactly (safeguarded
Newton inside the existence bracket ``[min u_i, max u_i + beta]``, where ``G_i`` changes sign
whatever the others do). Without caps ``G_i`` is strictly increasing in ``c_i`` on the box
interior, so that root is principal ``i``'s unique best response: the method is best-response
dynamics in threshold form. Robust, but its convergence is linear and can be slow for small
``beta`` (design note fact 7).
"""

from __future__ import annotations

import numpy as np

from cage_games.result import EquilibriumResult
from cage_games.solvers._common import build_result, gauss_seidel_sweep, initial_point
from cage_games.thresholds import ThresholdSystem

__all__ = ["solve_gauss_seidel"]


def solve_gauss_seidel(
    system: ThresholdSystem, *, tol: float, max_iter: int, x0: np.ndarray | None = None
) -> EquilibriumResult:
    """Sweep exact 1-D threshold roots until ``max_i |G_i| <= tol`` or ``max_iter`` sweeps."""
    gamma = initial_point(system, x0)
    G = system.evaluate(gamma, jacobian=False).G
    nfev = 1
    history = [float(np.max(np.abs(G)))]
    status, nit = 1, 0
    while nit < max_iter:
        if history[-1] <= tol:
            status = 0
            break
        nit += 1
        new, k = gauss_seidel_sweep(system, gamma, ftol=0.1 * tol)
        G = system.evaluate(new, jacobian=False).G
        nfev += k + 1
        history.append(float(np.max(np.abs(G))))
        if np.array_equal(new, gamma):
            status = 0 if history[-1] <= tol else 2
            break
        gamma = new
    else:
        if history[-1] <= tol:
            status = 0
    return build_result(
        system,
        gamma,
        status=status,
        method="gauss-seidel",
        nit=nit,
        nfev=nfev,
        tol=tol,
        params={"tol": tol, "max_iter": max_iter, "x0": x0},
        history=history,
    )
