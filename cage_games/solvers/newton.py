"""Safeguarded Newton method on the threshold system (the fast path).

Algorithm (in units of ``beta``; the derivation is in docs/model.rst):

1. Start from ``x0`` or from "nobody pays" (``c_i = max_a u_i(a)``).
2. Newton direction for the residual in log form, ``F_i = log s_i - log(1 + o_i)`` with
   ``s_i = E[(c_i - u_i)_+] / beta`` and ``o_i`` the expected surplus above the cap, which has
   the same roots as ``G`` (``1 + G_i = s_i - o_i``; see
   :meth:`ThresholdSystem.evaluate_log`): ``d = -F'(c)^{-1} F(c)`` with the analytic
   Jacobian (least squares if singular). Where a principal pays for a dominant action ``G_i``
   is flat near ``-1`` and grows like an exponential, so Newton on ``G`` creeps by about one
   unit of ``beta`` per step; on ``F`` it does not.
3. Globalisation by backtracking on the merit ``||F||_2`` (Armijo-type sufficient decrease,
   Nocedal and Wright, *Numerical Optimization*, 2nd ed., section 11.2), the step first
   shortened to stay inside the existence box ``[min u_i, max u_i + beta]``, which contains a
   root (design note fact 3). Truncating instead of projecting keeps ``d`` a descent
   direction; backing off the boundary keeps the iterate off the lower face, where a principal
   pays on every action and ``J`` is singular.
4. If the line search fails (a kink of the piecewise-smooth system), or accepted only steps
   shorter than 1/64 three times in a row (creeping), take one nonlinear Gauss-Seidel sweep
   instead: exact bracketed 1-D roots per principal (best responses in
   threshold form), which cannot leave the box.
5. If that direct run has not converged after ``direct_iter`` steps, restart with a
   **temperature continuation**: solve the game at a large temperature (where it is well
   conditioned), then divide the temperature by 4 at each stage, warm-starting Newton from
   the previous thresholds, down to the game's own ``beta`` (``v`` held fixed along the path).
   This is what makes small temperatures robust: there several principals can pay for the
   same dominant action, only the sum of their thresholds is well determined at first order
   (the free-riding degeneracy of menu auctions) and ``J`` can have a condition number of
   ``1e9``, which defeats any line search started far away.

The run stops when the residual is below ``tol / 100`` or stops improving (the floating-point
floor); ``success`` means residual ``<= tol``.
"""

from __future__ import annotations

import numpy as np

from cage_games.result import EquilibriumResult
from cage_games.solvers._common import build_result, gauss_seidel_sweep, initial_point
from cage_games.thresholds import Evaluation, ThresholdSystem

__all__ = ["solve_newton"]

_ARMIJO = 1e-4
_MAX_HALVINGS = 40
_TO_BOUNDARY = 0.995
_DIRECT_ITER = 30
_TINY_STEP = 1.0 / 64  # a step this short ...
_TINY_STEPS = 3  # ... this many times in a row counts as a failed line search
_STAGE_TOL = 1e-6
_STAGE_RATIO = 4.0


def _step_to_box(gamma: np.ndarray, d: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Largest ``t <= 1`` keeping ``gamma + t d`` in the box, backed off from the boundary.

    A step that starts on a face and points out of it gets ``t = 1`` and is projected.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        room = np.where(d < 0, (gamma - lower) / -d, np.where(d > 0, (upper - gamma) / d, np.inf))
    t_box = float(np.min(room))
    if t_box >= 1.0 or t_box <= 1e-12:
        return 1.0
    return _TO_BOUNDARY * t_box


def _newton_run(
    system: ThresholdSystem, gamma: np.ndarray, tol: float, max_iter: int
) -> tuple[np.ndarray, int, int, int, list[float], int, Evaluation]:
    """Newton iterations on ``F`` from ``gamma``.

    Returns (gamma, status, nit, nfev, history, fallbacks, evaluation at gamma); ``history``
    holds ``max |G|``.
    """
    ev = system.evaluate_log(gamma)
    nfev = 1
    norm = float(np.linalg.norm(ev.F))
    history = [float(np.max(np.abs(ev.G)))]
    status, nit, fallbacks, tiny = 1, 0, 0, 0
    tol_stop = 0.01 * tol
    while True:
        if history[-1] <= tol_stop or (
            history[-1] <= tol and len(history) > 1 and history[-1] > 0.5 * history[-2]
        ):
            status = 0  # polished, or within tol and no longer improving (rounding floor)
            break
        if nit >= max_iter:
            break
        nit += 1
        with np.errstate(invalid="ignore", over="ignore"):
            try:
                d = np.linalg.solve(ev.JF, -ev.F)
            except np.linalg.LinAlgError:
                d = np.linalg.lstsq(ev.JF, -ev.F, rcond=None)[0]
        accepted = False
        if np.all(np.isfinite(d)) and np.isfinite(norm):
            t = _step_to_box(gamma, d, system.lower, system.upper)
            for _ in range(_MAX_HALVINGS):
                trial = np.clip(gamma + t * d, system.lower, system.upper)
                ev_trial = system.evaluate_log(trial, jacobian=False)
                nfev += 1
                norm_trial = float(np.linalg.norm(ev_trial.F))
                if norm_trial <= (1.0 - _ARMIJO * t) * norm:
                    accepted = True
                    break
                t *= 0.5
            tiny = tiny + 1 if accepted and t < _TINY_STEP else 0
            if tiny >= _TINY_STEPS:  # creeping: Newton's model is poor here, sweep instead
                accepted, tiny = False, 0
        if not accepted:
            if history[-1] <= tol:
                status = 0  # at the floating-point floor, already within tolerance
                break
            fallbacks += 1
            trial, k = gauss_seidel_sweep(system, gamma, ftol=tol_stop)
            nfev += k + 1
            if np.array_equal(trial, gamma):
                status = 2
                break
            ev_trial = system.evaluate_log(trial, jacobian=False)
            norm_trial = float(np.linalg.norm(ev_trial.F))
        gamma, ev, norm = trial, system.add_log_jacobian(ev_trial), norm_trial
        history.append(float(np.max(np.abs(ev.G))))
    return gamma, status, nit, nfev, history, fallbacks, ev


def solve_newton(
    system: ThresholdSystem,
    *,
    tol: float,
    max_iter: int,
    x0: np.ndarray | None = None,
    direct_iter: int = _DIRECT_ITER,
) -> EquilibriumResult:
    """Solve ``G(c) = 0`` by safeguarded Newton; see the module docstring for the steps."""
    gamma0 = initial_point(system, x0)
    nfev0 = 0
    if gamma0.size == 1:
        # One principal: the system is scalar and the safeguarded 1-D Newton of the
        # Gauss-Seidel sweep solves it directly (no m x m algebra, same iteration).
        gamma0, nfev0 = gauss_seidel_sweep(system, gamma0, ftol=0.01 * tol)
    gamma, status, nit, nfev, history, fallbacks, ev = _newton_run(
        system, gamma0, tol, min(max_iter, direct_iter)
    )
    nfev += nfev0
    nit += int(nfev0 > 0)  # the scalar solve counts as one iteration
    stages: list[float] = []
    if status != 0 and nit < max_iter:
        gamma, status, nit2, nfev2, hist2, fb2, stages = _continuation(
            system, x0, tol, max_iter - nit
        )
        nit, nfev, fallbacks = nit + nit2, nfev + nfev2, fallbacks + fb2
        history += hist2
    return build_result(
        system,
        gamma,
        evaluation=ev if ev.gamma is gamma else None,
        status=status,
        method="newton",
        nit=nit,
        nfev=nfev,
        tol=tol,
        params={
            "tol": tol,
            "max_iter": max_iter,
            "x0": x0,
            "gauss_seidel_fallbacks": fallbacks,
            "continuation_betas": tuple(stages),
        },
        history=history,
    )


def _continuation(system: ThresholdSystem, x0: np.ndarray | None, tol: float, budget: int):
    """Temperature continuation down to ``system.beta``; returns the final Newton run."""
    beta = system.beta
    spread = float(np.max(np.ptp(system.r[:, system.support], axis=1))) * beta
    b = max(beta, spread)
    c = None if x0 is None else np.asarray(x0, dtype=float)
    nit = nfev = fallbacks = 0
    history: list[float] = []
    stages: list[float] = []
    while True:
        final = b <= beta
        stage = system if final else ThresholdSystem(system.game, beta=b)
        start = initial_point(stage, c)
        gamma, status, k, f, hist, fb, _ = _newton_run(
            stage, start, tol if final else max(tol, _STAGE_TOL), max(1, budget - nit)
        )
        nit, nfev, fallbacks = nit + k, nfev + f, fallbacks + fb
        history += hist if final else []
        stages.append(b)
        c = gamma * b
        if final or nit >= budget:
            if not final:
                gamma, status = initial_point(system, c), 1
            return gamma, status, nit, nfev, history, fallbacks, stages
        b = max(beta, b / _STAGE_RATIO)
