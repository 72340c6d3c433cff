"""Batched evaluation of the threshold system and the batched safeguarded Newton loop.

Everything here works on already validated tensors of one working dtype (float32 or float64)
on one device. The iterate is the scaled threshold ``gamma = c / beta`` (B, m); utilities stay
in utility units so that no (B, m, n) rescaling pass is needed.

Cost model. On a CPU the (B, m, n) passes dominate, and so does the first touch of freshly
allocated memory (page faults cost several times the arithmetic), so every large intermediate
lives in a :class:`Work` buffer allocated once per solve and written with ``out=`` / in-place
operations. One evaluation of ``G`` and its Jacobian is four passes over the utilities (a
clamp, a sum over principals, a comparison scaled by the policy, one batched matrix product)
plus a log-sum-exp over (B, n).

The loop is a per-row state machine: every iteration evaluates one trial point per running row
and every decision (accept, halve the step, start or continue a Gauss-Seidel sweep, change the
continuation temperature, freeze a converged row) is a ``torch.where`` on per-row masks. With
``fixed_iters`` it never reads a tensor on the host (CUDA-graph capturable); with tolerance
stopping it reads a few flags per iteration, skips the blocks no row needs and restricts the
work to the rows still running.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

# Sufficient-decrease constant of the Armijo test on f = ||G||^2 (Nocedal & Wright, sec. 3.1).
_ARMIJO = 1e-4
# Step halvings before the line search counts as failed.
_HALVINGS = 4
# Fraction of the distance to the box boundary a Newton step may travel (interior back-off).
_TO_BOUNDARY = 0.995
# Levenberg-Marquardt damping for rows whose Jacobian is singular, relative to tr(J^T J)/m.
_MU = 1e-3
# Gauss-Seidel fallback: 1-D tolerance relative to the residual at the sweep's start, 1-D
# evaluation cap per principal, and sweeps without progress before a row counts as stalled.
_GS_TOL = 1e-2
_GS_EVALS = 40
_GS_FAILS = 3
# Temperature continuation: ratio between stages and the residual required before moving on.
_STAGE_RATIO = 4.0
_STAGE_TOL = 1e-6
# Direct Newton iterations before a row restarts with temperature continuation.
_DIRECT_ITER = 30


class Data(NamedTuple):
    """The numbers defining B games (one per row), validated and in the working dtype."""

    u: Tensor  # (B, m, N) principals' utilities, utility units
    vmu: Tensor  # (B, N) v + sum_i u_i, -inf on masked actions
    beta: Tensor  # (B, 1) temperatures, > 0
    cap: Tensor | None  # (B, m) caps in utility units (inf = uncapped); None if no row is capped
    umin: Tensor  # (B, m) min over allowed actions of u_i (lower face of the box, times beta)
    umax: Tensor  # (B, m) max over allowed actions of u_i
    beta_start: Tensor  # (B, 1) first temperature of the continuation, >= beta

    def rows(self, idx: Tensor) -> Data:
        """The sub-batch of rows ``idx``."""
        return Data(*(None if x is None else x.index_select(0, idx) for x in self))


class Work(NamedTuple):
    """Preallocated (B, ., N) buffers reused by every evaluation of a solve."""

    wx: Tensor  # (B, m + 1, N): rows :m hold u - tau, row m is all ones
    pa: Tensor  # (B, m + 1, N): rows :m hold pi * A (also scratch), row m holds pi
    a2: Tensor | None  # (B, m, N): second mask for caps
    s: Tensor  # (B, N): sum_i (u_i - tau_i)
    lp: Tensor  # (B, N): log policy at the last evaluation

    @staticmethod
    def like(data: Data) -> Work:
        B, m, N = data.u.shape
        kw = {"dtype": data.u.dtype, "device": data.u.device}
        wx = torch.empty(B, m + 1, N, **kw)
        wx[:, m] = 1.0
        return Work(
            wx=wx,
            pa=torch.empty(B, m + 1, N, **kw),
            a2=None if data.cap is None else torch.empty(B, m, N, **kw),
            s=torch.empty(B, N, **kw),
            lp=torch.empty(B, N, **kw),
        )

    def head(self, k: int) -> Work:
        """Buffers for the first ``k`` rows (contiguous views)."""
        return Work(*(None if x is None else x[:k] for x in self))


def box(data: Data, beta: Tensor) -> tuple[Tensor, Tensor]:
    """The existence box in units of ``beta`` (design note fact 3)."""
    return data.umin / beta, data.umax / beta + 1.0


def evaluate(data: Data, ws: Work, beta: Tensor, gamma: Tensor) -> tuple[Tensor, Tensor]:
    """``G(gamma)`` and its Jacobian ``dG/dgamma`` for every row; leaves ``log pi`` in ``ws.lp``.

    Same mathematics as :meth:`cage_games.ThresholdSystem.evaluate`, batched, at temperature
    ``beta`` (B, 1) (the game's own, or a continuation stage's with ``v`` held fixed):
    ``tau = clip(u - c, 0, cap)``, ``log pi = log_softmax((v + sum_i tau_i) / beta)``,
    ``G = -1 - E[u - tau - c] / beta`` and
    ``J = diag(1 - E[A]) + Cov(u - tau, A) / beta`` with ``A_j = 1[0 < u_j - c_j < cap_j]``
    (design note facts 2 and 4).

    Four passes over the (B, m, n) utilities: ``u - tau = min(u, c) + (u - c - cap)_+`` is
    written once, ``sum_i tau_i = sum_i u_i - sum_i (u_i - tau_i)`` needs no ``tau``, and one
    batched matrix product of ``[u - tau; 1]`` with ``[pi A; pi]`` yields ``E[u - tau]``,
    ``E[A]`` and ``E[(u - tau) A^T]`` together.
    """
    m = gamma.shape[-1]
    c = gamma * beta
    cc = c.unsqueeze(-1)
    wt = ws.wx[:, :m]
    pa = ws.pa[:, :m]
    p = ws.pa[:, m]
    torch.clamp(data.u, max=cc, out=wt)
    if data.cap is not None:
        over = torch.sub(data.u, cc + data.cap.unsqueeze(-1), out=pa).clamp_min_(0.0)
        wt.add_(over)
    torch.sum(wt, 1, out=ws.s)
    # log-sum-exp stabilised softmax without temporaries: p = exp(s - max) / sum(...)
    lp = torch.sub(data.vmu, ws.s, out=ws.lp).div_(beta)
    top = lp.amax(-1, keepdim=True)
    torch.sub(lp, top, out=p).exp_()
    z = p.sum(-1, keepdim=True)
    p.div_(z)
    lp.sub_(top + z.log())
    torch.gt(data.u, cc, out=pa)
    if data.cap is not None:
        assert ws.a2 is not None
        pa.mul_(torch.lt(data.u, cc + data.cap.unsqueeze(-1), out=ws.a2))
    pa.mul_(p.unsqueeze(1))
    prod = torch.bmm(ws.wx, ws.pa.transpose(1, 2))  # (B, m + 1, m + 1)
    ew = prod[:, :m, m]  # E[u - tau]
    ea = prod[:, m, :m]  # E[A]
    G = -1.0 - (ew - c) / beta
    cov = prod[:, :m, :m] - ew.unsqueeze(-1) * ea.unsqueeze(1)
    return G, torch.diag_embed(1.0 - ea) + cov / beta.unsqueeze(-1)


def _direction(J: Tensor, G: Tensor, sync: bool) -> Tensor:
    """Newton direction ``-J^{-1} G``; where ``J`` is singular, the Levenberg-Marquardt
    direction ``-(J^T J + mu I)^{-1} J^T G`` with ``mu = 1e-3 tr(J^T J) / m``.

    ``solve_ex`` reports singular rows in a tensor; with ``sync`` one boolean is read to skip
    the Levenberg-Marquardt solve when no row needs it, otherwise it is always computed."""
    m = G.shape[-1]
    newton, info = torch.linalg.solve_ex(J, -G.unsqueeze(-1))
    newton = newton.squeeze(-1)
    ok = (info == 0) & torch.isfinite(newton).all(-1)
    if sync and bool(ok.all()):
        return newton
    jt = J.transpose(1, 2)
    h = jt @ J
    g = (jt @ G.unsqueeze(-1)).squeeze(-1)
    scale = torch.diagonal(h, dim1=1, dim2=2).mean(-1).clamp_min(torch.finfo(G.dtype).tiny)
    eye = torch.eye(m, dtype=G.dtype, device=G.device)
    lm, _ = torch.linalg.solve_ex(h + (_MU * scale)[:, None, None] * eye, -g.unsqueeze(-1))
    lm = torch.nan_to_num(lm.squeeze(-1), nan=0.0, posinf=0.0, neginf=0.0)
    return torch.where(ok.unsqueeze(-1), newton, lm)


def _step_length(gamma: Tensor, p: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """Largest ``t <= 1`` keeping ``gamma + t p`` in the box, backed off the boundary.

    A step that starts on a face and points out of it gets ``t = 1`` (and is projected)."""
    room = torch.where(p < 0, (gamma - lo) / -p, (hi - gamma) / p)
    room = torch.where(p == 0, torch.inf, room)
    t = room.amin(-1)
    return torch.where((t >= 1.0) | (t <= 1e-12), 1.0, _TO_BOUNDARY * t)


class State(NamedTuple):
    gamma: Tensor  # (B, m) current point, in units of the stage temperature bs
    G: Tensor  # (B, m)
    J: Tensor  # (B, m, m)
    logp: Tensor  # (B, N) log policy at gamma (updated in place)
    f: Tensor  # (B,) ||G||^2 (inf: the point is new and must be evaluated first)
    p: Tensor  # (B, m) current Newton direction
    alpha: Tensor  # (B,) current step multiplier
    halvings: Tensor  # (B,) int, halvings of the current direction so far
    gs: Tensor  # (B,) bool, the row is in a Gauss-Seidel sweep
    gk: Tensor  # (B,) int, the principal whose 1-D root the sweep is solving
    ga: Tensor  # (B,) lower end of that 1-D bracket (G_k < 0 there)
    gb: Tensor  # (B,) upper end (G_k >= 0 there)
    gx: Tensor  # (B,) current 1-D iterate
    gn: Tensor  # (B,) int, evaluations spent on this 1-D root
    gtol: Tensor  # (B,) 1-D tolerance of this sweep
    gres: Tensor  # (B,) residual when the sweep started
    gfail: Tensor  # (B,) int, consecutive sweeps that did not lower the residual
    bs: Tensor  # (B, 1) stage temperature (== data.beta outside continuation)
    cont: Tensor  # (B,) bool, the row has switched to temperature continuation
    done: Tensor  # (B,) bool, converged at the game's own temperature
    stalled: Tensor  # (B,) bool, no progress possible any more
    nit: Tensor  # (B,) int, trial evaluations so far


def _start(data: Data, ws: Work, gamma: Tensor, tol: Tensor, sync: bool) -> State:
    beta = data.beta
    G, J = evaluate(data, ws, beta, gamma)
    B = gamma.shape[0]
    zeros = torch.zeros(B, dtype=gamma.dtype, device=gamma.device)
    izeros = torch.zeros(B, dtype=torch.int64, device=gamma.device)
    false = torch.zeros(B, dtype=torch.bool, device=gamma.device)
    res = G.abs().amax(-1)
    return State(
        gamma=gamma,
        G=G,
        J=J,
        logp=ws.lp.clone(),
        f=(G * G).sum(-1),
        p=_direction(J, G, sync),
        alpha=torch.ones_like(zeros),
        halvings=izeros,
        gs=false,
        gk=izeros,
        ga=zeros,
        gb=zeros,
        gx=zeros,
        gn=izeros,
        gtol=zeros,
        gres=zeros,
        gfail=izeros,
        bs=beta,
        cont=false,
        done=res <= tol,
        stalled=~torch.isfinite(res),
        nit=izeros,
    )


def _pick(x: Tensor, k: Tensor) -> Tensor:
    """``x[b, k[b]]`` for every row."""
    return x.gather(-1, k.unsqueeze(-1)).squeeze(-1)


def _step(
    data: Data, ws: Work, st: State, tol: Tensor, continuation: bool, sync: bool, gs_on: bool
) -> State:
    """One iteration of the per-row state machine: one trial evaluation for every row.

    A row is either in Newton mode (trial = projected, backtracked Newton step, accepted on
    sufficient decrease of ``||G||^2``) or in a Gauss-Seidel sweep (trial = the current point
    with one threshold replaced by the iterate of a bracketed 1-D Newton/bisection on that
    principal's own equation, which is monotone in its threshold). A Newton row whose line
    search fails starts a sweep; a finished sweep returns to Newton.

    With ``sync`` (tolerance mode) two flags are read on the host to skip the sweep and
    continuation bookkeeping when no row needs it; ``gs_on`` says whether any row is in a
    sweep and ``continuation`` whether a row may restart or advance a stage (the caller
    knows: no row restarts before ``_DIRECT_ITER`` iterations). Without ``sync`` every block
    runs (no host read).
    """
    running = ~(st.done | st.stalled)
    lo, hi = box(data, st.bs)
    m = st.gamma.shape[-1]
    t = st.alpha * _step_length(st.gamma, st.p, lo, hi)
    trial = torch.minimum(torch.maximum(st.gamma + t.unsqueeze(-1) * st.p, lo), hi)
    if gs_on:
        # (not F.one_hot: it validates its input on the host, which breaks graph capture)
        onehot = torch.arange(m, device=st.gk.device) == st.gk.unsqueeze(-1)
        trial_g = torch.where(onehot, st.gx.unsqueeze(-1), st.gamma)
        trial = torch.where(st.gs.unsqueeze(-1), trial_g, trial)
    trial = torch.where(running.unsqueeze(-1), trial, st.gamma)
    Gt, Jt = evaluate(data, ws, st.bs, trial)
    ft = (Gt * Gt).sum(-1)
    res_t = Gt.abs().amax(-1)
    finite = torch.isfinite(ft)
    final = (st.bs <= data.beta).squeeze(-1)
    tol_s = torch.where(final, tol, torch.clamp_min(tol, _STAGE_TOL))
    ok = finite & (res_t <= tol_s)
    nit = st.nit + running.to(st.nit.dtype)

    # Newton rows: Armijo backtracking on ||G||^2.
    newt = running & ~st.gs
    accept = newt & finite & ((ft <= (1.0 - _ARMIJO * t) * st.f) | ok)
    reject = newt & ~accept
    halvings = torch.where(reject, st.halvings + 1, 0)
    fail = reject & (halvings > _HALVINGS)
    alpha = torch.where(reject & ~fail, 0.5 * st.alpha, 1.0)
    take = accept
    if gs_on:
        # Gauss-Seidel rows: safeguarded 1-D Newton on G_k (rtsafe, Numerical Recipes 9.4).
        sweep = running & st.gs
        g = _pick(Gt, st.gk)
        tiny = 4 * torch.finfo(g.dtype).eps * st.gx.abs().clamp_min(1.0)
        width = st.gb - st.ga
        root = sweep & (~finite | (g.abs() <= st.gtol) | (width <= tiny) | (st.gn >= _GS_EVALS))
        take = take | (sweep & (root | ok))
    # Rows with a new point keep its Jacobian (a new direction is computed there).
    need_j = take & ~(ok & final)
    if continuation:
        restart = running & ~st.cont & ~(take & ok & final) & (nit >= _DIRECT_ITER)
        restart = restart & (data.beta_start > data.beta).squeeze(-1)
        advance = take & ok & ~final
        fresh = restart | advance
    if sync:
        any_fresh_t = fresh.any() if continuation else fail.any()
        any_fail, any_fresh = torch.stack([fail.any(), any_fresh_t]).tolist()
    else:
        any_fail = any_fresh = True
    J = torch.where(need_j[:, None, None], Jt, st.J)

    tk = take.unsqueeze(-1)
    gamma = torch.where(tk, trial, st.gamma)
    G = torch.where(tk, Gt, st.G)
    torch.where(tk, ws.lp, st.logp, out=st.logp)
    f = torch.where(take, ft, st.f)
    done = st.done | (take & ok & final)
    gs, k_new, ga, gb, gx, gn = st.gs, st.gk, st.ga, st.gb, st.gx, st.gn
    gtol, gres, gfail, stalled = st.gtol, st.gres, st.gfail, st.stalled
    renew = accept
    if gs_on or any_fail:
        res = G.abs().amax(-1)
        if gs_on:
            ga = torch.where(sweep & (g < 0), st.gx, st.ga)
            gb = torch.where(sweep & (g >= 0), st.gx, st.gb)
            dg = _pick(torch.diagonal(Jt, dim1=1, dim2=2), st.gk)  # dG_k/dgamma_k at the trial
            xn = st.gx - g / dg
            good = (dg > 0) & torch.isfinite(xn) & (xn > ga) & (xn < gb)
            gx = torch.where(good, xn, 0.5 * (ga + gb))
            gn = st.gn + sweep.to(st.gn.dtype)
            last = root & (st.gk == m - 1)
            nxt = root & ~last
            leave = last | (sweep & ok)
            progress = res_t < st.gres
            gfail = torch.where(last, torch.where(progress, 0, st.gfail + 1), st.gfail)
            stalled = stalled | (last & (gfail >= _GS_FAILS))
        else:
            nxt = leave = torch.zeros_like(fail)
        # Start a sweep where the line search failed; move to the next principal; end a sweep.
        gs = (st.gs | fail) & ~leave
        k_new = torch.where(fail, 0, torch.where(nxt, st.gk + 1, st.gk)).clamp_max(m - 1)
        reset = fail | nxt
        lo_k, hi_k = _pick(lo, k_new), _pick(hi, k_new)
        ga = torch.where(reset, lo_k, ga)
        gb = torch.where(reset, hi_k, gb)
        gx = torch.where(reset, torch.minimum(torch.maximum(_pick(gamma, k_new), lo_k), hi_k), gx)
        gn = torch.where(reset, 0, gn)
        gtol = torch.where(fail, torch.maximum(tol_s, _GS_TOL * res), gtol)
        gres = torch.where(fail, res, gres)
        alpha = torch.where(leave | fail, 1.0, alpha)
        halvings = torch.where(leave | fail, 0, halvings)
        renew = renew | leave
    p = torch.where((renew & ~done).unsqueeze(-1), _direction(J, G, sync), st.p)

    bs, cont = st.bs, st.cont
    if continuation and any_fresh:
        # Restart a row still not done after _DIRECT_ITER evaluations at a high temperature;
        # a solved stage moves on to a lower one (thresholds carried over in utility units).
        # Either way the new point is evaluated first (f = inf, p = 0).
        bs_next = torch.where(
            advance.unsqueeze(-1),
            torch.maximum(data.beta, st.bs / _STAGE_RATIO),
            torch.where(restart.unsqueeze(-1), data.beta_start, st.bs),
        )
        lo_n, hi_n = box(data, bs_next)
        carried = torch.where(restart.unsqueeze(-1), hi_n - 1.0, gamma * st.bs / bs_next)
        carried = torch.minimum(torch.maximum(carried, lo_n), hi_n)
        fr = fresh.unsqueeze(-1)
        gamma = torch.where(fr, carried, gamma)
        f = torch.where(fresh, torch.inf, f)
        p = torch.where(fr, 0.0, p)
        gs = gs & ~fresh
        alpha = torch.where(fresh, 1.0, alpha)
        halvings = torch.where(fresh, 0, halvings)
        gfail = torch.where(fresh, 0, gfail)
        bs, cont = bs_next, cont | restart
    return State(
        gamma, G, J, st.logp, f, p, alpha, halvings, gs, k_new, ga, gb, gx, gn, gtol, gres,
        gfail, bs, cont, done, stalled, nit,
    )  # fmt: skip


def _scatter_state(full: State, part: State, idx: Tensor) -> State:
    return State(*(a.index_copy(0, idx, b) for a, b in zip(full, part, strict=True)))


def _gather_state(st: State, idx: Tensor) -> State:
    return State(*(a.index_select(0, idx) for a in st))


def newton(
    data: Data,
    gamma0: Tensor,
    tol: Tensor,
    *,
    max_iter: int,
    fixed_iters: int | None,
    continuation: bool = True,
    compact: bool = True,
) -> tuple[State, Work]:
    """Batched safeguarded Newton from ``gamma0`` (already inside the box).

    With ``fixed_iters`` exactly that many iterations run with no host synchronisation.
    Otherwise it stops when every row has converged or stalled, or after ``max_iter``
    iterations, reading a few flags per iteration; with ``compact`` the evaluations run on
    the rows still iterating only (once at most half of them are).
    """
    ws = Work.like(data)
    st = _start(data, ws, gamma0, tol, fixed_iters is None)
    if fixed_iters is not None:
        for _ in range(fixed_iters):
            st = _step(data, ws, st, tol, continuation, sync=False, gs_on=True)
        return st, ws
    full, idx = st, None  # idx: rows of ``full`` that ``sub`` holds (None = all of them)
    sub, sub_data, sub_tol, sub_ws = st, data, tol, ws
    # Compacting costs a gather of every state tensor: worth it for long rows only.
    compact = compact and data.u.shape[1] * data.u.shape[2] >= 4096
    for k in range(max_iter):
        running = ~(sub.done | sub.stalled)
        n_run, n_gs, n_cont = torch.stack([running.sum(), sub.gs.sum(), sub.cont.sum()]).tolist()
        if n_run == 0:
            break
        rows = running.shape[0]
        if compact and 2 * n_run <= rows:
            full = sub if idx is None else _scatter_state(full, sub, idx)
            keep = running.nonzero().squeeze(1)
            idx = keep if idx is None else idx.index_select(0, keep)
            sub = _gather_state(sub, keep)
            sub_data, sub_tol, sub_ws = data.rows(idx), tol.index_select(0, idx), ws.head(n_run)
        cont_on = continuation and (n_cont > 0 or k + 1 >= _DIRECT_ITER)
        sub = _step(sub_data, sub_ws, sub, sub_tol, cont_on, sync=True, gs_on=n_gs > 0)
    return (sub if idx is None else _scatter_state(full, sub, idx)), ws


def finish(data: Data, ws: Work, st: State, sync: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Thresholds (utility units), residual vector and log policy at the game's temperature.

    A row stopped during temperature continuation (fixed iterations, or the iteration cap) is
    re-evaluated at its own temperature, so the residual always belongs to the thresholds
    returned. With ``sync`` this extra evaluation is skipped when no row needs it.
    """
    c = st.gamma * st.bs
    final = st.bs <= data.beta
    if sync and bool(final.all()):
        return c, st.G, st.logp
    lo, hi = box(data, data.beta)
    gamma = torch.minimum(torch.maximum(c / data.beta, lo), hi)
    G, _ = evaluate(data, ws, data.beta, gamma)
    G = torch.where(final, st.G, G)
    logp = torch.where(final, st.logp, ws.lp)
    return torch.where(final, c, gamma * data.beta), G, logp
