"""Safeguarded Newton method on the threshold system (the fast path), numpy reference.

This is the scalar (one game) implementation of the state machine specified in
:mod:`cage_games._newton_spec` (steps S0-S8 and D there; the constants are
:data:`cage_games._newton_spec.SPEC`). In short, in units of ``beta``:

1. Start from ``x0`` or from the "nobody pays" root ``E_p0[u_i] / beta + 1`` in the box.
2. Newton direction for the residual in log form, ``F_i = log s_i - log(1 + o_i)`` with
   ``s_i = E[(c_i - u_i)_+] / beta`` and ``o_i`` the expected surplus above the cap, which has
   the same roots as ``G`` (``1 + G_i = s_i - o_i``; see
   :meth:`ThresholdSystem.evaluate_log`): ``d = -F'(c)^{-1} F(c)`` with the analytic
   Jacobian (Levenberg-Marquardt if singular). Where a principal pays for a dominant action
   ``G_i`` is flat near ``-1`` and grows like an exponential, so Newton on ``G`` creeps by
   about one unit of ``beta`` per step; on ``F`` it does not.
3. Globalisation by backtracking on ``||F||_2^2`` (Armijo), the step first shortened to stay
   inside the existence box ``[min u_i, max u_i + beta]``, which contains a root (design note
   fact 3). Truncating instead of projecting keeps ``d`` a descent direction; backing off the
   boundary keeps the iterate off the lower face, where a principal pays on every action and
   ``J`` is singular.
4. If the line search fails (a kink of the piecewise-smooth system), or accepted only short
   steps several times in a row (creeping), one nonlinear Gauss-Seidel sweep: a bracketed
   1-D root per principal (best responses in threshold form), which cannot leave the box.
5. A run not converged after ``SPEC.direct_iter`` iterations restarts with a **temperature
   continuation**: solve the game at a large temperature (where it is well conditioned), then
   divide the temperature by ``SPEC.stage_ratio`` at each stage, warm-starting from the
   previous thresholds, down to the game's own ``beta`` (``v`` held fixed along the path).
   This is what makes small temperatures robust: there several principals can pay for the
   same dominant action, only the sum of their thresholds is well determined at first order
   (the free-riding degeneracy of menu auctions) and ``J`` can have a condition number of
   ``1e9``, which defeats any line search started far away.

Each iteration evaluates one trial point; ``nit`` counts them. The machine is asked for
``tol / 100`` (a polished answer); ``success`` means residual ``<= tol``, so a run that stalls
at the floating-point floor below ``tol`` succeeds.
"""

from __future__ import annotations

import numpy as np

from cage_games._newton_spec import SPEC, Code, NewtonSpec
from cage_games.result import EquilibriumResult
from cage_games.solvers._common import build_result, initial_point
from cage_games.thresholds import ThresholdSystem, log_softmax

__all__ = ["newton_machine", "solve_newton"]

_POLISH = 0.01  # the machine runs to tol * _POLISH; success is judged against tol


def _step_to_box(
    gamma: np.ndarray, d: np.ndarray, lower: np.ndarray, upper: np.ndarray, spec: NewtonSpec
) -> float:
    """Largest ``t <= 1`` keeping ``gamma + t d`` in the box, backed off from the boundary (S1).

    A step that starts on a face and points out of it gets ``t = 1`` and is projected.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        room = np.where(d < 0, (gamma - lower) / -d, np.where(d > 0, (upper - gamma) / d, np.inf))
    t_box = float(np.min(room))
    if t_box >= 1.0 or t_box <= spec.box_tiny:
        return 1.0
    return spec.to_boundary * t_box


def direction(J: np.ndarray, F: np.ndarray, spec: NewtonSpec = SPEC) -> np.ndarray:
    """Newton direction ``-J^{-1} F``, Levenberg-Marquardt where ``J`` is singular (step D)."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        try:
            p = np.linalg.solve(J, -F)
            if np.all(np.isfinite(p)):
                return p
        except np.linalg.LinAlgError:
            pass
        h = J.T @ J
        g = J.T @ F
        scale = max(float(np.trace(h)) / F.size, np.finfo(float).tiny)
        try:
            p = np.linalg.solve(h + spec.lm_mu * scale * np.eye(F.size), -g)
        except np.linalg.LinAlgError:
            p = np.zeros_like(F)
    return np.nan_to_num(p, nan=0.0, posinf=0.0, neginf=0.0)


def start_point(system: ThresholdSystem) -> np.ndarray:
    """The "nobody pays" start (S0): ``E_p0[r_i] + 1`` projected into the box."""
    p0 = np.exp(log_softmax(system.nu))
    return np.clip(
        system.r[:, system.support] @ p0[system.support] + 1.0, system.lower, system.upper
    )


def newton_machine(
    system: ThresholdSystem,
    gamma: np.ndarray,
    tol: float,
    max_iter: int,
    spec: NewtonSpec = SPEC,
    trace: list | None = None,
    floor_tol: float | None = None,
):
    """Run the state machine of :mod:`cage_games._newton_spec` on one game from ``gamma``.

    Returns ``(gamma, status, nit, evaluation, history, stats)`` with ``gamma`` in units of
    the game's ``beta``, ``status`` 0 (converged to ``tol``), 1 (iteration limit) or 2
    (stalled), the evaluation at ``gamma`` at the game's temperature (or ``None``), ``history``
    the residual ``max |G|`` at every taken point and ``stats`` a dict of counts. With a
    ``trace`` list, one :class:`~cage_games._newton_spec.Code` per iteration is appended.
    """
    beta = system.beta
    spread = float(np.max(np.ptp(system.r[:, system.support], axis=1))) * beta
    beta_start = max(beta, spread)
    stages: dict[float, ThresholdSystem] = {beta: system}

    def at(b: float) -> ThresholdSystem:
        if b not in stages:
            stages[b] = ThresholdSystem(system.game, beta=b)
        return stages[b]

    floor_tol = tol if floor_tol is None else max(floor_tol, tol)
    m = gamma.size
    eps4 = 4 * np.finfo(float).eps
    bs, sysb = beta, system
    ev = sysb.evaluate_log(gamma)
    res = float(np.max(np.abs(ev.G)))
    history = [res]
    f = float(ev.F @ ev.F)
    stats = {"fallbacks": 0, "creeps": 0, "restarts": 0, "stages": [], "nfev": 1}
    if res <= tol:
        return gamma, 0, 0, ev, history, stats
    if not np.isfinite(res):
        return gamma, 2, 0, ev, history, stats
    p = direction(ev.JF, ev.F, spec)
    alpha, halvings, creep = 1.0, 0, 0
    gs, k, ga, gb, gx, gn, gtol, gres, gfail = False, 0, 0.0, 0.0, 0.0, 0, 0.0, 0.0, 0
    cont = False
    nit, status = 0, 1
    while nit < max_iter:
        lo, hi = sysb.lower, sysb.upper
        final = bs <= beta
        tol_s = tol if final else max(tol, spec.stage_tol)
        # S1: trial
        t = 1.0
        if gs:
            trial = gamma.copy()
            trial[k] = gx
        else:
            t = alpha * _step_to_box(gamma, p, lo, hi, spec)
            trial = np.clip(gamma + t * p, lo, hi)
        # S2: evaluate
        evt = sysb.evaluate_log(trial)
        stats["nfev"] += 1
        nit += 1
        ft = float(evt.F @ evt.F)
        res_t = float(np.max(np.abs(evt.G)))
        finite = bool(np.isfinite(ft) and np.isfinite(res_t))
        ok = finite and res_t <= tol_s
        code = Code.IDLE
        fail = creep_fail = leave = nxt = last = False
        if not gs:  # S3
            accept = finite and (ft <= (1.0 - spec.armijo * t) * f or ok)
            take = accept
            if accept:
                code = Code.ACCEPT
                creep = creep + 1 if t < spec.tiny_step else 0
                creep_fail = spec.tiny_steps > 0 and creep >= spec.tiny_steps and not ok
                if creep_fail:
                    take = False  # the creeping step is not taken: sweep from gamma
            else:
                halvings += 1
                fail = halvings > spec.max_halvings
                code = Code.BACKTRACK
                if not fail:
                    alpha *= 0.5
        else:  # S4
            g = float(evt.G[k])
            root = (
                not finite
                or abs(g) <= gtol
                or gb - ga <= eps4 * max(abs(gx), 1.0)
                or gn >= spec.gs_evals
            )
            take = root or ok
            if g < 0:
                ga = gx
            else:
                gb = gx
            dg = float(evt.JF[k, k])
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                xn = gx - float(evt.F[k]) / dg
            gx = xn if (dg > 0 and np.isfinite(xn) and ga < xn < gb) else 0.5 * (ga + gb)
            gn += 1
            last = root and k == m - 1
            nxt = root and not last
            leave = last or ok
            code = Code.SWEEP_END if leave else (Code.SWEEP_NEXT if nxt else Code.SWEEP)
            if last:
                gfail = 0 if res_t < gres else gfail + 1
                if gfail >= spec.gs_fails:
                    code = Code.STALLED
        newton_mode = not gs
        res_prev = res
        if take:  # S6
            gamma, ev, f, res = trial, evt, ft, res_t
            history.append(res)
        done = take and ok and final  # S7
        if final and not done and res <= floor_tol and newton_mode:
            # S7, floor: within floor_tol and Newton no longer gains a factor 2 (rounding)
            done = (take and res > 0.5 * res_prev) or fail or creep_fail
            fail, creep_fail = fail and not done, creep_fail and not done
        stall = code == Code.STALLED
        if stall and final:
            status = 2
        fail = fail or creep_fail
        if fail:  # S5
            code = Code.CREEP if creep_fail else Code.FALLBACK
            stats["creeps" if creep_fail else "fallbacks"] += 1
            gs, k = True, 0
        elif leave:
            gs = False
        elif nxt:
            k += 1
        if fail or nxt:
            ga, gb = float(lo[k]), float(hi[k])
            gx = float(np.clip(gamma[k], ga, gb))
            gn = 0
        if fail:
            gtol, gres = max(tol_s, spec.gs_tol * res), res
        if leave or fail:
            alpha, halvings, creep = 1.0, 0, 0
        if (code == Code.ACCEPT or creep_fail or leave) and not done:
            p = direction(ev.JF, ev.F, spec)
            alpha, halvings = 1.0, 0
        if done:
            code, status = Code.CONVERGED, 0
        # S8: continuation
        restart = (
            not cont and not done and status != 2 and nit >= spec.direct_iter and beta_start > beta
        )
        advance = ((take and ok) or stall) and not final
        if restart or advance:
            bs_next = max(beta, bs / spec.stage_ratio) if advance else beta_start
            nsys = at(bs_next)
            carried = nsys.upper - 1.0 if restart else gamma * bs / bs_next
            gamma = np.clip(carried, nsys.lower, nsys.upper)
            if advance:
                stats["stages"].append(bs)
            else:
                stats["restarts"] += 1
            bs, sysb, cont = bs_next, nsys, cont or restart
            code = Code.RESTART if restart else Code.STAGE
            f, p = np.inf, np.zeros(m)
            gs, alpha, halvings, creep, gfail = False, 1.0, 0, 0, 0
        if trace is not None:
            trace.append(int(code))
        if done or status == 2:
            break
    if bs > beta:  # stopped during continuation: back to the game's own temperature
        gamma = np.clip(gamma * bs / beta, system.lower, system.upper)
        ev = None
        status = 1
    return gamma, status, nit, ev, history, stats


def solve_newton(
    system: ThresholdSystem,
    *,
    tol: float,
    max_iter: int,
    x0: np.ndarray | None = None,
    trace: list | None = None,
) -> EquilibriumResult:
    """Solve ``G(c) = 0`` by the safeguarded Newton state machine of
    :mod:`cage_games._newton_spec` (see the module docstring for the steps).

    ``trace``, a list, receives one decision code per iteration.
    """
    gamma0 = start_point(system) if x0 is None else initial_point(system, x0)
    gamma, status, nit, ev, history, stats = newton_machine(
        system, gamma0, _POLISH * tol, max_iter, SPEC, trace, floor_tol=tol
    )
    stages = tuple(stats["stages"])
    if stats["restarts"]:
        stages += (system.beta,)
    return build_result(
        system,
        gamma,
        evaluation=ev,
        status=0 if status == 2 else status,
        method="newton",
        nit=nit,
        nfev=stats["nfev"],
        tol=tol,
        params={
            "tol": tol,
            "max_iter": max_iter,
            "x0": x0,
            "gauss_seidel_fallbacks": stats["fallbacks"] + stats["creeps"],
            "continuation_betas": stages,
        },
        history=history,
    )
