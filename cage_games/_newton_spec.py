"""The one specification of the safeguarded Newton method on the threshold system.

Every backend that solves ``G(c) = 0`` (design note facts 2-4) follows this module: the numpy
solver (:mod:`cage_games.solvers.newton`), the batched torch loop
(:mod:`cage_games.torch._kernel`), the fused C++ kernel (``cage_games/torch/cg_kernel.cpp``,
which receives :data:`SPEC` in a struct at every call) and the GPU kernel. The constants live
in one frozen dataclass, :class:`NewtonSpec`; the decisions are the numbered steps of the
state machine below; the per-iteration decision codes are :class:`Code`. Nothing here is
retyped elsewhere: backends import :data:`SPEC` and :class:`Code` (the C++ side gets the
values from Python at run time and checks the struct's version and size).

State machine (one row = one game; every iteration evaluates exactly one trial point)
------------------------------------------------------------------------------------
Units: the iterate is ``gamma = c / bs``, the thresholds in units of the *stage temperature*
``bs`` (the game's own ``beta`` outside continuation). The box is
``[lo, hi] = [min_a u_i / bs, max_a u_i / bs + 1]`` over the allowed actions (fact 3). ``F`` is
the log-form residual (:meth:`cage_games.ThresholdSystem.evaluate_log`), ``J = dF/dgamma``,
``f = ||F||_2^2``, ``res = max_i |G_i|``. A row is *running* until it is converged or stalled.

S0. Start (one evaluation, not counted in ``nit``). ``gamma_i = E_p0[u_i] / beta + 1`` with
    ``p0 = softmax(v / beta)`` (the exact root when nobody pays), projected into the box, or
    the caller's ``x0 / beta`` projected. ``converged`` if ``res <= tol``, ``stalled`` if ``res``
    is not finite; otherwise ``p`` = direction (D), ``alpha = 1``, ``halvings = 0``, mode
    NEWTON, ``bs = beta``.
S1. Trial. NEWTON: ``t = alpha * t_box(gamma, p)`` with ``t_box`` the largest step ``<= 1``
    keeping ``gamma + t p`` in the box times ``to_boundary`` (1 when that is ``>= 1`` or
    ``<= box_tiny``); ``trial = clip(gamma + t p, lo, hi)``. SWEEP on principal ``k``:
    ``trial = gamma`` with ``trial_k = x`` (the 1-D iterate).
S2. Evaluate ``G, F, J`` at the trial; ``nit += 1``. ``ok``: finite and ``res_t <= tol_s``,
    with ``tol_s = tol`` at the game's temperature and ``max(tol, stage_tol)`` at a
    continuation stage.
S3. NEWTON decision. *Accept* if finite and (``f_t <= (1 - armijo * t) f`` or ``ok``): the
    Armijo test on ``||F||^2`` (Nocedal and Wright, *Numerical Optimization*, sec. 3.1).
    Otherwise *reject*: ``halvings += 1``; if ``halvings > max_halvings`` the line search
    *fails* (FALLBACK -> S5 at the current point), else ``alpha /= 2`` (BACKTRACK). An
    accepted step with ``t < tiny_step`` increments ``creep`` (any other accepted step
    resets it); when ``creep >= tiny_steps`` and the trial is not ``ok``, that creeping step
    is *not* taken and a sweep starts at the current point (CREEP -> S5).
S4. SWEEP decision (a bracketed 1-D Newton on ``F_k``, whose sign is that of ``G_k``:
    rtsafe, Press et al., *Numerical Recipes*, 3rd ed., sec. 9.4). The 1-D root is *found*
    when the trial is not finite, ``|G_k| <= gtol``, the bracket is narrower than
    ``4 eps max(1, |x|)``, or ``gs_evals`` trials had been spent on it before this one.
    Found (or ``ok``): the trial is taken. The bracket ``[a, b]`` is updated by the sign
    of ``G_k`` and the next ``x`` is the Newton step ``x - F_k / J_kk`` if ``J_kk > 0`` and
    it lands strictly inside, else the midpoint. After principal ``m - 1`` (SWEEP_END) or on
    ``ok`` the row returns to NEWTON with a fresh direction; a sweep that ends without
    lowering ``res`` below its value at the sweep's start counts a failure; ``gs_fails``
    failures in a row mark the row STALLED at the game's temperature, and end a
    continuation stage (STAGE, S8) above it.
S5. Start a sweep (FALLBACK or CREEP): ``k = 0``, ``[a, b] = [lo_0, hi_0]``,
    ``x = gamma_0``, ``gtol = max(tol_s, gs_tol * res)``, ``gres = res``
    (``gs_tol = 0``: exact 1-D roots).
S6. Taken point: ``gamma, G, F, J, f`` become the trial's; in NEWTON mode a new direction
    (D) is computed there and ``alpha = 1``, ``halvings = 0``.
S7. Converged: a taken point with ``ok`` at the game's own temperature (CONVERGED). Floor
    rule, for a caller that asks for more than it needs (``floor_tol > tol``; the numpy
    solver polishes to ``tol / 100`` with ``floor_tol = tol``): at the game's temperature, a
    NEWTON-mode row with ``res <= floor_tol`` also converges when its accepted step lowered
    ``res`` by less than half, or instead of a FALLBACK or CREEP (rounding floor). The
    batched backends run with ``floor_tol = tol``, where the rule never applies.
S8. Continuation. RESTART: a running row that is not in continuation yet, has done
    ``nit >= direct_iter`` iterations, did not converge or stall in this one, and whose
    ``beta_start = max(beta, max_i (max_a u_i - min_a u_i)) > beta``, restarts at
    ``bs = beta_start`` from "nobody pays" (``gamma = hi - 1``). STAGE: a taken point with
    ``ok`` at ``bs > beta`` moves to ``bs' = max(beta, bs / stage_ratio)`` carrying the
    thresholds (``gamma' = clip(gamma bs / bs')``); so does a stage that stalls (S4). Both
    make the new point *fresh*:
    ``f = inf``, ``p = 0``, mode NEWTON, counters reset, so the next trial is the point
    itself and is always accepted (its evaluation counts in ``nit``).
D.  Direction: ``p = -J^{-1} F`` (LU with partial pivoting); where ``J`` is exactly
    singular or ``p`` is not finite, Levenberg-Marquardt
    ``p = -(J^T J + mu I)^{-1} J^T F`` with ``mu = lm_mu * tr(J^T J) / m``, non-finite
    entries set to 0.

A row stops when converged or stalled, or when ``nit = max_iter``. ``nit`` counts trial
evaluations (S2), the unit every backend can count identically; it does not count the start.

Trace format
------------
With tracing on, a backend records for every row one :class:`Code` per iteration, in order:
an int8 array ``(B, nit_max)`` padded with ``Code.IDLE`` (0) after a row stopped (numpy: a
list of ints per game). ``trace[b, :nit[b]]`` are row ``b``'s decisions, so
``nit[b] == count_nonzero(trace[b])``. The code of an iteration is its *last* decision in
this order of precedence (the first that applies): CONVERGED, STAGE, RESTART, STALLED,
FALLBACK, CREEP, SWEEP_END, SWEEP_NEXT, SWEEP, ACCEPT, BACKTRACK.

Examples
--------
>>> from cage_games._newton_spec import SPEC, Code
>>> SPEC.max_halvings, SPEC.direct_iter
(40, 30)
>>> Code.ACCEPT.name, int(Code.CONVERGED)
('ACCEPT', 10)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["SPEC", "Code", "NewtonSpec", "trace_rows"]


@dataclass(frozen=True)
class NewtonSpec:
    """The constants of the state machine (module docstring), one set for every backend.

    Attributes
    ----------
    armijo : float
        Sufficient-decrease constant of the Armijo test on ``||F||^2`` (S3).
    max_halvings : int
        Halvings of one direction before its line search counts as failed (S3): a direction
        gets at most ``max_halvings + 1`` trials.
    to_boundary : float
        Fraction of the distance to the box boundary a Newton step may travel (S1).
    box_tiny : float
        Box-limited step lengths at or below this are replaced by 1 (then projected) (S1).
    tiny_step : float
        Accepted steps shorter than this count as creeping (S3).
    tiny_steps : int
        Creeping steps in a row that start a Gauss-Seidel sweep (S3); 0 disables the test.
    lm_mu : float
        Levenberg-Marquardt damping relative to ``tr(J^T J) / m`` (D).
    gs_tol : float
        1-D tolerance of a sweep relative to the residual at its start (S5).
    gs_evals : int
        1-D trials per principal and sweep (S4).
    gs_fails : int
        Sweeps in a row without progress before a row is stalled (S4).
    direct_iter : int
        Iterations (``nit``) before a row restarts with temperature continuation (S8).
    stage_ratio : float
        Ratio between consecutive continuation temperatures (S8).
    stage_tol : float
        Residual that solves a continuation stage (at least ``tol``) (S2).
    version : int
        Version of this state machine, bumped with any change of a step or field; the C++
        kernel states the version it implements (``CG_SPEC_VERSION``) and refuses any
        other.
    """

    armijo: float = 1e-4
    max_halvings: int = 40
    to_boundary: float = 0.995
    box_tiny: float = 1e-12
    tiny_step: float = 1.0 / 64
    tiny_steps: int = 3
    lm_mu: float = 1e-3
    gs_tol: float = 0.0
    gs_evals: int = 40
    gs_fails: int = 3
    direct_iter: int = 30
    stage_ratio: float = 4.0
    stage_tol: float = 1e-6
    version: int = 2


SPEC = NewtonSpec()


class Code(enum.IntEnum):
    """Decision codes of the trace, one per iteration (module docstring, "Trace format")."""

    IDLE = 0  #: no iteration (the row had stopped): padding
    ACCEPT = 1  #: S3, Newton trial accepted
    BACKTRACK = 2  #: S3, Newton trial rejected, step halved
    FALLBACK = 3  #: S3 -> S5, line search failed, a sweep starts
    SWEEP = 4  #: S4, 1-D trial, root not found yet
    SWEEP_NEXT = 5  #: S4, 1-D root found, next principal
    SWEEP_END = 6  #: S4, sweep finished, back to Newton
    STALLED = 7  #: S4, the gs_fails-th sweep in a row without progress
    RESTART = 8  #: S8, restart with temperature continuation
    STAGE = 9  #: S8, continuation stage solved, lower temperature
    CONVERGED = 10  #: S7
    CREEP = 11  #: S3 -> S5, tiny_steps creeping steps, a sweep starts


def trace_rows(trace) -> list[list[int]]:
    """Per-row lists of codes from a ``(B, T)`` trace (any array-like), padding removed."""
    rows = []
    for row in trace.tolist() if hasattr(trace, "tolist") else trace:
        rows.append([int(c) for c in row if int(c) != Code.IDLE])
    return rows
