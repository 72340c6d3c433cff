"""The fused GPU kernel: the whole per-step solve in one Triton launch per batch.

One Triton program solves one row (one game): it loads the row's agent log-weights and the
principals' utilities in chunks of ``BLOCK_N`` actions, and runs the safeguarded Newton method
of :mod:`cage_games.solvers.newton_spec` on the threshold system in log form with every
decision taken per row in scalar code (no masks over the batch, no host read, no second
launch): start point, Newton direction (a pivoted elimination on the ``m x m`` Jacobian,
Levenberg-Marquardt where it is singular), step to the box, Armijo backtracking, the
Gauss-Seidel sweep fallback, the temperature continuation restart, and the log policy. In
target-KL mode the same program also searches the strength: a safeguarded secant (Illinois)
iteration in ``log(1 / beta)`` on ``log KL - log target``, each trial solve warm-started from
the previous thresholds in utility units.

The mathematics is that of :mod:`cage_games.torch._kernel` (scaled units ``gamma = c / beta``):
with ``d_ia = r_ia - gamma_i`` (``r = u / beta``), the transfers are
``t_ia = clip(d_ia, 0, kappa_i)``, the log-weights ``x_a + sum_i t_ia`` and, from the moments of
the policy, ``G_i = s_i - o_i - 1`` with ``s_i = E[(gamma_i - r_i)_+]`` and
``o_i = E[(r_i - gamma_i - kappa_i)_+]``, ``F_i = log(s_i / (1 + o_i))`` below 1 and
``s_i / (1 + o_i) - 1`` above, and the analytic Jacobian of ``F``. Sums over actions are
accumulated chunk by chunk with an online maximum (the log-sum-exp trick of a streaming
softmax), so any ``n`` works; a row of ``n <= BLOCK_N`` actions is one chunk.

The agent's log-weights at a temperature ``bs`` are ``x = (vs / bs) * lp`` and the scaled
utilities ``r = u / bs``: with ``lp = v`` and ``vs = 1`` that is :func:`solve_batch`'s game,
with ``lp = log p0`` and ``vs = beta`` the KL-regularised game of :func:`solve_batch_kl`; a
continuation stage changes ``bs`` with ``v`` held fixed, the strength search changes ``beta``
(``vs = bs = beta``).

Under ``TRITON_INTERPRET=1`` the kernel runs on CPU tensors (slowly): that is how the tests
check it without a GPU.
"""

from __future__ import annotations

import math
import os

import torch
from torch import Tensor

try:  # triton ships with every CUDA build of torch; on CPU it is optional (tests install it)
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised where triton is missing
    triton = None
    tl = None

from cage_games._newton_spec import SPEC
from cage_games.torch._klsearch import KL_SEARCH

__all__ = ["available", "solve"]

# Below this the unpaid mass enters F linearly (as in cage_games.torch._kernel).
_S_MIN = {torch.float32: 1e-20, torch.float64: 1e-250}



def available(device: torch.device | None = None) -> bool:
    """Whether the Triton kernel can run on ``device`` (CUDA, or any device when the Triton
    interpreter is on: ``TRITON_INTERPRET=1``)."""
    if triton is None:
        return False
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        return True
    return device is not None and device.type == "cuda"


if triton is not None:

    @triton.jit
    def _setup(LP, U, row, n, m, sl, su, sm, a0, M: tl.constexpr, BN: tl.constexpr):
        """One pass: log-sum-exp of ``a0 * lp``, ``E_p0[u_i]``, ``min u_i``, ``max u_i`` over the
        allowed actions (``lp > -inf``)."""
        ri = tl.arange(0, M)
        ci = tl.arange(0, BN)
        rv = ri < m
        mx = tl.max(tl.full([BN], -float("inf"), tl.float32), axis=0).to(LP.dtype.element_ty)
        z = tl.sum(tl.zeros([BN], LP.dtype.element_ty), axis=0)
        eu = tl.zeros([M], LP.dtype.element_ty)
        umin = tl.full([M], float("inf"), LP.dtype.element_ty)
        umax = tl.full([M], -float("inf"), LP.dtype.element_ty)
        for n0 in range(0, n, BN):
            cols = n0 + ci
            cv = cols < n
            lp = tl.load(LP + row * sl + cols, mask=cv, other=-float("inf"))
            ok = lp > -float("inf")
            u = tl.load(U + row * su + ri[:, None] * sm + cols[None, :],
                        mask=rv[:, None] & cv[None, :], other=0.0)
            x = a0 * lp
            cm = tl.max(x, axis=0)
            nm = tl.maximum(mx, cm)
            sc = tl.where(nm == -float("inf"), 1.0, tl.exp(mx - nm))
            e = tl.where(ok, tl.exp(x - nm), 0.0)
            z = z * sc + tl.sum(e, axis=0)
            eu = eu * sc + tl.sum(u * e[None, :], axis=1)
            okm = ok[None, :] & rv[:, None]
            umin = tl.minimum(umin, tl.min(tl.where(okm, u, float("inf")), axis=1))
            umax = tl.maximum(umax, tl.max(tl.where(okm, u, -float("inf")), axis=1))
            mx = nm
        umin = tl.where(rv, umin, 0.0)
        umax = tl.where(rv, umax, 0.0)
        return mx + tl.log(z), eu / z, umin, umax

    @triton.jit
    def _chunk(LP, U, row, n, m, sl, su, sm, n0, gamma, b, kap,
               M: tl.constexpr, BN: tl.constexpr, CAPPED: tl.constexpr):
        """Actions ``n0 .. n0 + BN`` of a row: ``lp`` (``-inf`` where masked or past ``n``),
        ``d = b u - gamma`` (M, BN) and the total transfer ``sum_i clip(d_i, 0, kap_i)``."""
        ri = tl.arange(0, M)
        rv = ri < m
        cols = n0 + tl.arange(0, BN)
        cv = cols < n
        lp = tl.load(LP + row * sl + cols, mask=cv, other=-float("inf"))
        u = tl.load(U + row * su + ri[:, None] * sm + cols[None, :],
                    mask=rv[:, None] & cv[None, :], other=0.0)
        d = b * u - gamma[:, None]
        if CAPPED:
            t = tl.minimum(tl.maximum(d, 0.0), kap[:, None])
        else:
            t = tl.maximum(d, 0.0)
        t = tl.where(rv[:, None], t, 0.0)
        return lp, d, tl.sum(t, axis=0)

    @triton.jit
    def _evaluate(LP, U, row, n, m, sl, su, sm, gamma, a, b, kap, smin,
                  M: tl.constexpr, BN: tl.constexpr, CAPPED: tl.constexpr):
        """``G``, ``F``, ``dF/dgamma``, the log normaliser and ``E_pi[sum_i t_i]`` at ``gamma``
        (log-weights ``a * lp + sum_i t_i``, scaled utilities ``b * u``, scaled caps ``kap``)."""
        ri = tl.arange(0, M)
        rv = ri < m
        dt = LP.dtype.element_ty
        mx = tl.max(tl.full([BN], -float("inf"), tl.float32), axis=0).to(dt)
        z = tl.sum(tl.zeros([BN], dt), axis=0)
        et = z
        ss = tl.zeros([M], dt)
        oo = tl.zeros([M], dt)
        pu = tl.zeros([M], dt)
        po = tl.zeros([M], dt)
        ea = tl.zeros([M], dt)
        ga = tl.zeros([M, M], dt)
        ha = tl.zeros([M, M], dt)
        for n0 in range(0, n, BN):
            lp, d, tsum = _chunk(LP, U, row, n, m, sl, su, sm, n0, gamma, b, kap, M, BN, CAPPED)
            ok = lp > -float("inf")
            x = tl.where(ok, a * lp + tsum, -float("inf"))
            cm = tl.max(x, axis=0)
            nm = tl.maximum(mx, cm)
            sc = tl.where(nm == -float("inf"), 1.0, tl.exp(mx - nm))
            e = tl.where(ok, tl.exp(x - nm), 0.0)
            g = tl.where(rv[:, None], tl.maximum(-d, 0.0), 0.0)
            if CAPPED:
                act = (d > 0.0) & (d < kap[:, None]) & rv[:, None]
                h = tl.where(rv[:, None], tl.maximum(d - kap[:, None], 0.0), 0.0)
                over = (d > kap[:, None]) & rv[:, None]
            else:
                act = (d > 0.0) & rv[:, None]
            eA = tl.where(act, e[None, :], 0.0)
            z = z * sc + tl.sum(e, axis=0)
            et = et * sc + tl.sum(e * tsum, axis=0)
            ss = ss * sc + tl.sum(g * e[None, :], axis=1)
            pu = pu * sc + tl.sum(tl.where((d < 0.0) & rv[:, None], e[None, :], 0.0), axis=1)
            ea = ea * sc + tl.sum(eA, axis=1)
            ga = ga * sc + tl.sum(g[:, None, :] * eA[None, :, :], axis=2)
            if CAPPED:
                oo = oo * sc + tl.sum(h * e[None, :], axis=1)
                po = po * sc + tl.sum(tl.where(over, e[None, :], 0.0), axis=1)
                ha = ha * sc + tl.sum(h[:, None, :] * eA[None, :, :], axis=2)
            mx = nm
        s = ss / z
        o = oo / z
        eaq = ea / z
        gaq = ga / z
        G = tl.where(rv, s - o - 1.0, 0.0)
        s_eff = tl.maximum(s, smin)
        lr = tl.log(s_eff) + (s - s_eff) / s_eff
        if CAPPED:
            lr = lr - tl.log(1.0 + o)
        above = lr > 0.0
        F = tl.where(above, tl.exp(tl.minimum(lr, 80.0)) - 1.0, lr)
        F = tl.where(rv, F, 0.0)
        J = (s / s_eff)[:, None] * eaq[None, :] - gaq / s_eff[:, None]
        diag = (pu / z) / s_eff
        if CAPPED:
            opo = 1.0 + o
            J = J + (ha / z - o[:, None] * eaq[None, :]) / opo[:, None]
            diag = diag + (po / z) / opo
        eye = ri[:, None] == ri[None, :]
        J = J + tl.where(eye, diag[:, None], 0.0)
        J = tl.where(above[:, None], J * (1.0 + F)[:, None], J)
        valid = rv[:, None] & rv[None, :]
        J = tl.where(valid, J, tl.where(eye, 1.0, 0.0))
        lse = mx + tl.log(z)
        return G, F, J, lse, et / z

    @triton.jit
    def _linsolve(A, rhs, M: tl.constexpr):
        """``A x = rhs`` for an ``M x M`` tile by elimination with partial pivoting; also
        returns whether a pivot was zero or the result is not finite."""
        ri = tl.arange(0, M)
        bad = tl.sum(ri * 0, axis=0) != 0
        for k in tl.static_range(M):
            colk = tl.sum(tl.where(ri[None, :] == k, A, 0.0), axis=1)
            cand = tl.where(ri >= k, tl.abs(colk), -1.0)
            p = tl.argmax(cand, axis=0)
            rowk = tl.sum(tl.where(ri[:, None] == k, A, 0.0), axis=0)
            rowp = tl.sum(tl.where(ri[:, None] == p, A, 0.0), axis=0)
            A = tl.where(ri[:, None] == k, rowp[None, :],
                         tl.where(ri[:, None] == p, rowk[None, :], A))
            bk = tl.sum(tl.where(ri == k, rhs, 0.0), axis=0)
            bp = tl.sum(tl.where(ri == p, rhs, 0.0), axis=0)
            rhs = tl.where(ri == k, bp, tl.where(ri == p, bk, rhs))
            piv = tl.sum(tl.where(ri == k, rowp, 0.0), axis=0)
            bad = bad | (piv == 0.0)
            colk = tl.sum(tl.where(ri[None, :] == k, A, 0.0), axis=1)
            f = tl.where(ri > k, colk / tl.where(piv == 0.0, 1.0, piv), 0.0)
            A = A - f[:, None] * rowp[None, :]
            rhs = rhs - f * bp
        x = rhs * 0.0
        for kk in tl.static_range(M):
            k = M - 1 - kk
            rowk = tl.sum(tl.where(ri[:, None] == k, A, 0.0), axis=0)
            akk = tl.sum(tl.where(ri == k, rowk, 0.0), axis=0)
            sk = tl.sum(tl.where(ri == k, rhs, 0.0), axis=0) - tl.sum(rowk * x, axis=0)
            x = tl.where(ri == k, sk / tl.where(akk == 0.0, 1.0, akk), x)
        fin = tl.sum(tl.where(x == x, 0, 1), axis=0) == 0
        fin = fin & (tl.max(tl.abs(x), axis=0) < float("inf"))
        return x, bad | (~fin)

    @triton.jit
    def _direction(J, F, m, mu, M: tl.constexpr):
        """Newton direction ``-J^{-1} F``; Levenberg-Marquardt where ``J`` is singular."""
        d, bad = _linsolve(J, -F, M)
        if bad:
            ri = tl.arange(0, M)
            rv = ri < m
            H = tl.sum(J[:, :, None] * J[:, None, :], axis=0)
            g = tl.sum(J * F[:, None], axis=0)
            eye = ri[:, None] == ri[None, :]
            tr = tl.sum(tl.where(eye & rv[:, None], H, 0.0), axis=1)
            scale = tl.maximum(tl.sum(tr, axis=0) / m, 1e-30)
            H = H + tl.where(eye, mu * scale, 0.0)
            d, _bad = _linsolve(H, -g, M)
            d = tl.where(d == d, d, 0.0)
            d = tl.where(tl.abs(d) < float("inf"), d, 0.0)
        return d

    @triton.jit
    def _step_to_box(gamma, d, lo, hi, m, to_boundary, box_tiny, M: tl.constexpr):
        """S1: the largest ``t <= 1`` keeping ``gamma + t d`` in the box, backed off it."""
        ri = tl.arange(0, M)
        rv = ri < m
        room = tl.where(d < 0.0, (gamma - lo) / tl.where(d < 0.0, -d, 1.0),
                        (hi - gamma) / tl.where(d > 0.0, d, 1.0))
        room = tl.where((d == 0.0) | (~rv), float("inf"), room)
        t = tl.min(room, axis=0)
        return tl.where((t >= 1.0) | (t <= box_tiny), 1.0, to_boundary * t)

    @triton.jit
    def _solve_row(LP, U, CAP, row, n, m, sl, su, sm, vs, beta, tol, budget, gstart, warm,
                   smin, TR, tr_off, tr_len, nit0, lse0, eu, umin, umax,
                   M: tl.constexpr, BN: tl.constexpr, CAPPED: tl.constexpr,
                   TRACE: tl.constexpr, ARMIJO: tl.constexpr, HALVINGS: tl.constexpr,
                   TO_BOUNDARY: tl.constexpr, BOX_TINY: tl.constexpr,
                   TINY_STEP: tl.constexpr, TINY_STEPS: tl.constexpr, MU: tl.constexpr,
                   GS_TOL: tl.constexpr, GS_EVALS: tl.constexpr, GS_FAILS: tl.constexpr,
                   DIRECT_ITER: tl.constexpr, STAGE_RATIO: tl.constexpr,
                   STAGE_TOL: tl.constexpr, EPS: tl.constexpr, SCALE_TOL: tl.constexpr,
                   CAP_REL: tl.constexpr):
        """The game at temperature ``beta`` (agent log-weights ``vs / bs * lp``, scaled utilities
        ``u / bs`` at the stage temperature ``bs``), by the state machine of
        :mod:`cage_games._newton_spec` (steps S0-S8 and D, one trial evaluation per
        iteration). ``gstart`` (utility units) replaces the no-transfer start when ``warm``.
        ``lse0, eu, umin, umax`` are :func:`_setup`'s at ``vs / beta`` (the caller's: the
        strength search reuses one set-up for all its solves).
        Trace codes are written from position ``nit0`` of the row's trace."""
        ri = tl.arange(0, M)
        rv = ri < m
        if CAPPED:
            capv = tl.load(CAP + row * m + ri, mask=rv, other=float("inf"))
            if CAP_REL:  # caps given in units of the game's temperature
                capv = capv * beta
        else:
            capv = tl.full([M], float("inf"), LP.dtype.element_ty)
        if SCALE_TOL:  # the rounding floor of G: 16 eps max |u| / beta
            big = tl.max(tl.where(rv, tl.maximum(tl.abs(umin), tl.abs(umax)), 0.0), axis=0)
            tol = tl.maximum(tol, 16.0 * EPS * big / beta)
        spread = tl.max(tl.where(rv, umax - umin, 0.0), axis=0)
        beta_start = tl.maximum(beta, spread)
        # S0: start
        bs = beta
        b = 1.0 / bs
        lo = umin * b
        hi = umax * b + 1.0
        g0 = tl.where(warm, gstart * b, eu * b + 1.0)
        gamma = tl.where(rv, tl.minimum(tl.maximum(g0, lo), hi), 0.0)
        G, F, J, lse, et = _evaluate(LP, U, row, n, m, sl, su, sm, gamma, vs * b, b, capv * b,
                                     smin, M, BN, CAPPED)
        f = tl.sum(F * F, axis=0)
        res = tl.max(tl.abs(G), axis=0)
        done = res <= tol
        stalled = ~(res < float("inf"))
        p = _direction(J, F, m, MU, M)
        alpha = res * 0.0 + 1.0
        zero = tl.sum(ri * 0, axis=0)
        halvings = zero
        creep = zero
        gs = res != res  # False
        cont = res != res
        gk = zero
        ga = res * 0.0
        gb = res * 0.0
        gx = res * 0.0
        gn = zero
        gtol = res * 0.0
        gres = res * 0.0
        gfail = zero
        nit = zero
        while (~(done | stalled)) & (nit < budget):
            b = 1.0 / bs
            lo = umin * b
            hi = umax * b + 1.0
            kap = capv * b
            onek = ri == gk
            # S1: the trial
            t = alpha * _step_to_box(gamma, p, lo, hi, m, TO_BOUNDARY, BOX_TINY, M)
            trial = tl.minimum(tl.maximum(gamma + t * p, lo), hi)
            trial = tl.where(gs, tl.where(onek, gx, gamma), trial)
            trial = tl.where(rv, trial, 0.0)
            # S2: evaluate
            Gt, Ft, Jt, lset, ett = _evaluate(LP, U, row, n, m, sl, su, sm, trial, vs * b, b,
                                              kap, smin, M, BN, CAPPED)
            nit += 1
            ft = tl.sum(Ft * Ft, axis=0)
            res_t = tl.max(tl.abs(Gt), axis=0)
            finite = (ft < float("inf")) & (res_t < float("inf"))
            final = bs <= beta
            tol_s = tl.where(final, tol, tl.maximum(tol, STAGE_TOL))
            ok = finite & (res_t <= tol_s)
            code = zero
            # S3: Newton decision (Armijo on ||F||^2), creeping test
            newt = ~gs
            accept = newt & finite & ((ft <= (1.0 - ARMIJO * t) * f) | ok)
            reject = newt & ~accept
            halvings = tl.where(reject, halvings + 1, zero)
            creep = tl.where(accept, tl.where(t < TINY_STEP, creep + 1, zero), creep)
            creep_fail = accept & (~ok) & (TINY_STEPS > 0) & (creep >= TINY_STEPS)
            fail = reject & (halvings > HALVINGS)
            alpha = tl.where(reject & ~fail, 0.5 * alpha, 1.0)
            take = accept & ~creep_fail  # a creeping step is not taken: sweep from gamma
            code = tl.where(accept, 1, tl.where(reject, 2, zero))
            fail_code = tl.where(creep_fail, 11, 3)
            fail = fail | creep_fail
            # S4: sweep decision (safeguarded 1-D Newton on F_k inside G_k's bracket)
            sweep = gs
            g = tl.sum(tl.where(onek, Gt, 0.0), axis=0)
            fk = tl.sum(tl.where(onek, Ft, 0.0), axis=0)
            dg = tl.sum(tl.sum(tl.where(onek[:, None] & onek[None, :], Jt, 0.0), axis=1),
                        axis=0)
            tinyw = 4.0 * EPS * tl.maximum(tl.abs(gx), 1.0)
            root = sweep & ((~finite) | (tl.abs(g) <= gtol) | (gb - ga <= tinyw)
                            | (gn >= GS_EVALS))
            take = take | (sweep & (root | ok))
            # S6: the taken point
            gamma = tl.where(take, trial, gamma)
            G = tl.where(take, Gt, G)
            F = tl.where(take, Ft, F)
            J = tl.where(take, Jt, J)
            lse = tl.where(take, lset, lse)
            et = tl.where(take, ett, et)
            f = tl.where(take, ft, f)
            conv = take & ok & final
            was_done = done
            done = done | conv
            res = tl.max(tl.abs(G), axis=0)
            ga_new = tl.where(sweep & (g < 0.0), gx, ga)
            gb_new = tl.where(sweep & (g >= 0.0), gx, gb)
            ga = ga_new
            gb = gb_new
            xn = gx - fk / tl.where(dg != 0.0, dg, 1.0)
            good = (dg > 0.0) & (xn == xn) & (tl.abs(xn) < float("inf")) & (xn > ga) & (xn < gb)
            gx = tl.where(sweep, tl.where(good, xn, 0.5 * (ga + gb)), gx)
            gn = tl.where(sweep, gn + 1, gn)
            last = root & (gk == m - 1)
            nxt = root & ~last
            leave = last | (sweep & ok)
            progress = res_t < gres
            gfail = tl.where(last, tl.where(progress, zero, gfail + 1), gfail)
            stall_now = last & (gfail >= GS_FAILS)
            stalled = stalled | (stall_now & final)  # a stage that stalls moves on (S8)
            code = tl.where(sweep, tl.where(stall_now, 7, tl.where(
                leave, 6, tl.where(nxt, 5, 4))), code)
            # S5: start a sweep where the line search failed or crept; next principal
            gs = (gs | fail) & ~leave
            gk = tl.where(fail, zero, tl.where(nxt, gk + 1, gk))
            gk = tl.minimum(gk, m - 1)
            onek = ri == gk
            reset = fail | nxt
            lo_k = tl.sum(tl.where(onek, lo, 0.0), axis=0)
            hi_k = tl.sum(tl.where(onek, hi, 0.0), axis=0)
            gam_k = tl.sum(tl.where(onek, gamma, 0.0), axis=0)
            ga = tl.where(reset, lo_k, ga)
            gb = tl.where(reset, hi_k, gb)
            gx = tl.where(reset, tl.minimum(tl.maximum(gam_k, lo_k), hi_k), gx)
            gn = tl.where(reset, zero, gn)
            gtol = tl.where(fail, tl.maximum(tol_s, GS_TOL * res), gtol)
            gres = tl.where(fail, res, gres)
            alpha = tl.where(leave | fail, 1.0, alpha)
            halvings = tl.where(leave | fail, zero, halvings)
            creep = tl.where(leave | fail, zero, creep)
            code = tl.where(fail, fail_code, code)
            renew = (accept | leave) & ~done
            if renew:
                p = _direction(J, F, m, MU, M)
            code = tl.where(done & ~was_done, 10, code)
            # S8: continuation (restart at a high temperature; a solved or stalled stage
            # moves on to a lower one)
            restart = (~cont) & (~done) & (~stalled) & (nit >= DIRECT_ITER) & (beta_start > beta)
            advance = ((take & ok) | stall_now) & ~final
            fresh = restart | advance
            if fresh:
                bs_next = tl.where(advance, tl.maximum(beta, bs / STAGE_RATIO), beta_start)
                bn = 1.0 / bs_next
                lo_n = umin * bn
                hi_n = umax * bn + 1.0
                carried = tl.where(restart, hi_n - 1.0, gamma * bs * bn)
                gamma = tl.where(rv, tl.minimum(tl.maximum(carried, lo_n), hi_n), 0.0)
                f = f * 0.0 + float("inf")
                p = p * 0.0
                gs = gs & ~fresh
                alpha = alpha * 0.0 + 1.0
                halvings = zero
                gfail = zero
                creep = zero
                bs = bs_next
                cont = cont | restart
            code = tl.where(restart, 8, tl.where(advance, 9, code))
            if TRACE:
                pos = nit0 + nit - 1
                if pos < tr_len:
                    tl.store(TR + tr_off + pos, code.to(tl.int8))
        status = tl.where(done, 0, tl.where(stalled, 2, 1))
        if bs > beta:
            # stopped during the continuation: report the thresholds at the game's temperature
            b = 1.0 / beta
            gamma = tl.where(rv, tl.minimum(tl.maximum(gamma * bs * b, umin * b), umax * b + 1.0),
                             0.0)
            G, F, J, lse, et = _evaluate(LP, U, row, n, m, sl, su, sm, gamma, vs * b, b,
                                         capv * b, smin, M, BN, CAPPED)
            bs = beta
        b = 1.0 / bs
        return gamma, G, lse, et, nit, status, capv * b, vs * b, b, lse0, bs, tol

    @triton.jit
    def _kernel(LP, U, CAP, VS, BETA, TOL, TARGET, HINT,
                OUT_LP, OUT_C, OUT_RES, OUT_NIT, OUT_STATUS, OUT_BETA, OUT_KL, OUT_TOL, TR,
                n, m, sl, su, sm, budget, tr_len, kl_iters,
                M: tl.constexpr, BN: tl.constexpr, CAPPED: tl.constexpr,
                TARGET_MODE: tl.constexpr, TRACE: tl.constexpr,
                ARMIJO: tl.constexpr, HALVINGS: tl.constexpr, TO_BOUNDARY: tl.constexpr,
                BOX_TINY: tl.constexpr, TINY_STEP: tl.constexpr, TINY_STEPS: tl.constexpr,
                MU: tl.constexpr, GS_TOL: tl.constexpr, GS_EVALS: tl.constexpr,
                GS_FAILS: tl.constexpr, DIRECT_ITER: tl.constexpr, STAGE_RATIO: tl.constexpr,
                STAGE_TOL: tl.constexpr, EPS: tl.constexpr, SCALE_TOL: tl.constexpr,
                KL_SPAN: tl.constexpr, KL_WEAK: tl.constexpr, KL_MIN_RANGE: tl.constexpr,
                KL_SAFE: tl.constexpr, KL_SLOPE: tl.constexpr, KL_MIN_STEP: tl.constexpr,
                KL_RTOL: tl.constexpr, LOG_SMIN: tl.constexpr, KL_ZERO_REL: tl.constexpr,
                KL_ZERO_EPS: tl.constexpr, CAP_REL: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        ri = tl.arange(0, M)
        rv = ri < m
        # s_min in the working dtype (1e-250 is no float32 constant: formed as an exponential)
        smin = tl.sum(tl.exp(tl.zeros([2], LP.dtype.element_ty) + LOG_SMIN), axis=0) * 0.5
        kl_rtol = KL_RTOL
        tol = tl.load(TOL + row)
        beta = tl.load(BETA + row)
        tr_off = row * tr_len
        nanv = tl.full([M], float("nan"), LP.dtype.element_ty)
        if not TARGET_MODE:
            vs = tl.load(VS + row)
            lse0, eu, umin, umax = _setup(LP, U, row, n, m, sl, su, sm, vs / beta, M, BN)
            gamma, G, lse, et, nit, status, kap, a, b, lse0, bs, tol_u = _solve_row(
                LP, U, CAP, row, n, m, sl, su, sm, vs, beta, tol, budget, nanv, False, smin,
                TR, tr_off, tr_len, 0, lse0, eu, umin, umax,
                M, BN, CAPPED, TRACE, ARMIJO, HALVINGS, TO_BOUNDARY,
                BOX_TINY, TINY_STEP, TINY_STEPS, MU, GS_TOL, GS_EVALS, GS_FAILS, DIRECT_ITER,
                STAGE_RATIO, STAGE_TOL, EPS, SCALE_TOL, CAP_REL)
            kl = et - lse + lse0
            reached = True
        else:
            # Strength search (cage_games.torch._klsearch): x = log(1 / beta),
            # f(x) = log KL(x) - log target, increasing in x. Start at the row's hint (NaN:
            # none) or weak (beta = weak * R, R the largest spread of a principal's utility);
            # slope steps towards the target until bracketed, then Illinois false position.
            # Each solve is warm-started from the last thresholds.
            target = tl.load(TARGET + row)
            hint = tl.load(HINT + row)
            ftar = tl.log(target)
            kl_floor = tl.maximum(KL_ZERO_REL * target, KL_ZERO_EPS * EPS)
            lse0, eu, umin, umax = _setup(LP, U, row, n, m, sl, su, sm, 1.0, M, BN)
            rng = tl.maximum(tl.max(tl.where(rv, umax - umin, 0.0), axis=0), KL_MIN_RANGE)
            x_lo = -tl.log(KL_WEAK * rng)
            x_max = x_lo + KL_SPAN
            x = tl.where(hint > 0.0, tl.minimum(tl.maximum(-tl.log(hint), x_lo), x_max), x_lo)
            beta = tl.exp(-x)
            gamma, G, lse, et, nit, status, kap, a, b, lse0, bs, tol_u = _solve_row(
                LP, U, CAP, row, n, m, sl, su, sm, beta, beta, tol, budget, nanv, False,
                smin, TR, tr_off, tr_len, 0, lse0, eu, umin, umax,
                M, BN, CAPPED, TRACE, ARMIJO, HALVINGS,
                TO_BOUNDARY, BOX_TINY, TINY_STEP, TINY_STEPS, MU, GS_TOL, GS_EVALS, GS_FAILS,
                DIRECT_ITER, STAGE_RATIO, STAGE_TOL, EPS, SCALE_TOL, CAP_REL)
            kl = et - lse + lse0
            f = tl.where(status == 0, tl.log(tl.maximum(kl, kl_floor)) - ftar, -60.0)
            bg, bG, blse, bkl, bst, bbeta, bf, bbs = gamma, G, lse, kl, status, beta, f, bs
            unknown = f * 0.0 + float("nan")
            xa = tl.where(f < 0.0, x, unknown)  # largest x known below the target
            fa = tl.where(f < 0.0, f, unknown)
            xb = tl.where(f < 0.0, unknown, x)  # smallest x known at or above it
            fb = tl.where(f < 0.0, unknown, f)
            side = 0
            it = 1
            going = tl.abs(f) > kl_rtol
            going = going & ~((f < 0.0) & (x >= x_max)) & ~((f >= 0.0) & (x <= x_lo))
            while going:
                if (fa == fa) & (fb == fb):
                    xn = xa + (xb - xa) * (-fa) / (fb - fa)
                    w = xb - xa
                    xn = tl.minimum(tl.maximum(xn, xa + KL_SAFE * w), xb - KL_SAFE * w)
                elif f < 0.0:
                    xn = tl.minimum(x + tl.maximum(-f / KL_SLOPE, KL_MIN_STEP), x_max)
                else:
                    xn = tl.maximum(x - tl.maximum(f / KL_SLOPE, KL_MIN_STEP), x_lo)
                beta = tl.exp(-xn)
                c_warm = gamma * bs
                gamma, G, lse, et, nit2, status, kap, a, b, lse0, bs, tol_u = _solve_row(
                    LP, U, CAP, row, n, m, sl, su, sm, beta, beta, tol, budget, c_warm, True,
                    smin, TR, tr_off, tr_len, nit, lse0, eu, umin, umax,
                    M, BN, CAPPED, TRACE, ARMIJO, HALVINGS,
                    TO_BOUNDARY, BOX_TINY, TINY_STEP, TINY_STEPS, MU, GS_TOL, GS_EVALS,
                    GS_FAILS, DIRECT_ITER, STAGE_RATIO, STAGE_TOL, EPS, SCALE_TOL, CAP_REL)
                nit += nit2
                kl = et - lse + lse0
                fn = tl.where(status == 0, tl.log(tl.maximum(kl, kl_floor)) - ftar, -60.0)
                if tl.abs(fn) < tl.abs(bf):
                    bg, bG, blse, bkl, bst, bbeta, bf, bbs = gamma, G, lse, kl, status, beta, fn, bs
                if fn < 0.0:
                    if side == -1:
                        fb = fb * 0.5
                    xa = xn
                    fa = fn
                    side = -1
                else:
                    if side == 1:
                        fa = fa * 0.5
                    xb = xn
                    fb = fn
                    side = 1
                x = xn
                f = fn
                it += 1
                if tl.abs(fn) <= kl_rtol:
                    going = False
                elif it >= kl_iters:
                    going = False
                elif (fb != fb) & (xn >= x_max):
                    going = False  # even the strongest tilt stays below the target
                elif (fa != fa) & (xn <= x_lo):
                    going = False  # even the weakest tilt is above the target
            gamma, G, lse, kl, status, beta, bs = bg, bG, blse, bkl, bst, bbeta, bbs
            b = 1.0 / bs
            a = beta * b
            if CAPPED:
                kap = tl.load(CAP + row * m + ri, mask=rv, other=float("inf")) * b
                if CAP_REL:
                    kap = kap * beta
            reached = (tl.abs(bf) <= kl_rtol) | (bf > 0.0)
        # log policy: a * lp + sum_i t_i - lse
        ci = tl.arange(0, BN)
        for n0 in range(0, n, BN):
            lp, _d, tsum = _chunk(LP, U, row, n, m, sl, su, sm, n0, gamma, b, kap, M, BN, CAPPED)
            out = tl.where(lp > -float("inf"), a * lp + tsum - lse, -float("inf"))
            cols = n0 + ci
            tl.store(OUT_LP + row * n + cols, out, mask=cols < n)
        tl.store(OUT_C + row * m + ri, gamma * bs, mask=rv)
        res = tl.max(tl.abs(G), axis=0)
        res = tl.where(res == res, res, float("inf"))
        tl.store(OUT_RES + row, res)
        tl.store(OUT_NIT + row, nit)
        tl.store(OUT_STATUS + row, status + tl.where(reached, 0, 8))
        tl.store(OUT_BETA + row, beta)
        tl.store(OUT_KL + row, tl.maximum(kl, 0.0))
        tl.store(OUT_TOL + row, tol_u)


def _num_warps(BN: int, M: int) -> int:
    """Warps per program: one for a row of candidates (every reduction is then a few warp
    shuffles, no barrier), more for chunks of a long row."""
    return 1 if BN * M <= 256 else (4 if BN * M <= 2048 else 8)


def _block_n(n: int, M: int) -> int:
    """Chunk width: the whole row when it is small, else a width whose ``M x M x BN``
    cross-moment tile stays within 8192 elements."""
    cap = max(16, 8192 // (M * M))
    cap = 1 << (cap.bit_length() - 1)
    return max(16, min(triton.next_power_of_2(max(n, 1)), cap))


def solve(
    lp: Tensor,
    u: Tensor,
    vs: Tensor,
    beta: Tensor,
    cap: Tensor | None,
    tol: Tensor,
    *,
    max_iter: int,
    scale_tol: bool = False,
    target_kl: Tensor | None = None,
    caps_relative: bool = False,
    beta_hint: Tensor | None = None,
    trace: int = 0,
    num_warps: int | None = None,
) -> dict[str, Tensor]:
    """Launch the kernel on validated, contiguous tensors of one dtype (float32 or float64).

    ``lp`` (B, n) with ``-inf`` on masked actions, ``u`` (B, m, n), ``vs``, ``beta`` and
    ``tol`` (B,), ``cap`` (B, m) or ``None``. ``scale_tol`` raises each row's tolerance to
    the rounding floor ``16 eps max |u| / beta``; with ``caps_relative`` the caps are in units of
    each row's temperature (``tau_i <= cap_i * beta``). ``target_kl`` (B,) switches on the strength
    search (then ``lp`` must be ``log p0``; ``vs`` and ``beta`` are ignored), started at
    ``beta_hint`` (B,) where it is given and positive (NaN: no hint). Returns a dict
    of tensors: ``log_policy``, ``thresholds`` (utility units), ``residual``, ``nit``,
    ``status`` (0 converged, 1 budget spent, 2 stalled; +8 when a target KL was not
    reached), ``beta``, ``kl`` (``KL(pi || softmax(vs / beta * lp))``), ``tol`` and, with
    ``trace > 0``, ``trace`` (B, trace) int8 decision codes
    (:class:`cage_games._newton_spec.Code`).
    """
    if triton is None:
        raise ImportError("the Triton backend needs the 'triton' package (pip install triton)")
    B, m, n = u.shape
    dev, dt = u.device, u.dtype
    M = max(2, triton.next_power_of_2(m))
    BN = _block_n(n, M)
    out = {
        "log_policy": torch.empty((B, n), dtype=dt, device=dev),
        "thresholds": torch.empty((B, m), dtype=dt, device=dev),
        "residual": torch.empty((B,), dtype=dt, device=dev),
        "nit": torch.empty((B,), dtype=torch.int32, device=dev),
        "status": torch.empty((B,), dtype=torch.int32, device=dev),
        "beta": torch.empty((B,), dtype=dt, device=dev),
        "kl": torch.empty((B,), dtype=dt, device=dev),
        "tol": torch.empty((B,), dtype=dt, device=dev),
    }
    tr = torch.zeros((B, max(trace, 1)), dtype=torch.int8, device=dev)
    capped = cap is not None
    capt = cap if capped else out["thresholds"]  # (never read without caps)
    tgt = target_kl if target_kl is not None else tol
    hint_t = beta_hint if beta_hint is not None else torch.full_like(tol, math.nan)
    _kernel[(B,)](
        lp, u, capt, vs, beta, tol, tgt, hint_t,
        out["log_policy"], out["thresholds"], out["residual"], out["nit"], out["status"],
        out["beta"], out["kl"], out["tol"], tr,
        n, m, lp.stride(0), u.stride(0), u.stride(1), int(max_iter), int(trace),
        int(KL_SEARCH.max_solves),
        M=M, BN=BN, CAPPED=capped, TARGET_MODE=target_kl is not None, TRACE=trace > 0,
        ARMIJO=SPEC.armijo, HALVINGS=SPEC.max_halvings, TO_BOUNDARY=SPEC.to_boundary,
        BOX_TINY=SPEC.box_tiny, TINY_STEP=SPEC.tiny_step, TINY_STEPS=SPEC.tiny_steps,
        MU=SPEC.lm_mu, GS_TOL=SPEC.gs_tol, GS_EVALS=SPEC.gs_evals, GS_FAILS=SPEC.gs_fails,
        DIRECT_ITER=SPEC.direct_iter, STAGE_RATIO=SPEC.stage_ratio, STAGE_TOL=SPEC.stage_tol,
        EPS=torch.finfo(dt).eps, SCALE_TOL=bool(scale_tol),
        KL_SPAN=math.log(KL_SEARCH.span), KL_WEAK=KL_SEARCH.weak, KL_MIN_RANGE=KL_SEARCH.min_range,
        KL_SAFE=KL_SEARCH.safeguard, KL_SLOPE=KL_SEARCH.slope, KL_MIN_STEP=KL_SEARCH.min_step,
        KL_RTOL=KL_SEARCH.rtol, LOG_SMIN=math.log(_S_MIN[dt]), KL_ZERO_REL=KL_SEARCH.zero_rel,
        KL_ZERO_EPS=KL_SEARCH.zero_eps, CAP_REL=bool(caps_relative),
        num_warps=num_warps or _num_warps(BN, M),
    )  # fmt: skip
    if trace:
        out["trace"] = tr
    return out
