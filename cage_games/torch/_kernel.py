"""Batched evaluation of the threshold system and the batched safeguarded Newton loop.

Everything here works on already validated tensors of one working dtype (float32 or float64)
on one device. The iterate is the scaled threshold ``gamma = c / beta`` (B, m); utilities stay
in utility units so that no (B, m, n) rescaling pass is needed.

The loop is written as a per-row state machine in which every iteration costs exactly one
evaluation of ``G`` and its Jacobian for every row, and every decision (accept a trial, halve
the step, switch to a Levenberg-Marquardt direction, freeze a converged row) is a
``torch.where`` on per-row masks. With ``fixed_iters`` the loop therefore never reads a tensor
on the host and can be captured in a CUDA graph; with tolerance stopping it reads one boolean
per iteration (``done.all()``) and compacts the batch to the rows still running.
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
    vm: Tensor  # (B, N) agent utility, -inf on masked actions
    beta: Tensor  # (B, 1) temperatures, > 0
    cap: Tensor | None  # (B, m) caps in utility units (inf = uncapped); None if no row is capped
    umin: Tensor  # (B, m) min over allowed actions of u_i (lower face of the box, times beta)
    umax: Tensor  # (B, m) max over allowed actions of u_i
    beta_start: Tensor  # (B, 1) first temperature of the continuation, >= beta

    def rows(self, idx: Tensor) -> Data:
        """The sub-batch of rows ``idx``."""
        return Data(*(None if x is None else x.index_select(0, idx) for x in self))


class Eval(NamedTuple):
    G: Tensor  # (B, m) scaled residual G / beta
    J: Tensor | None  # (B, m, m) dG/dgamma
    logp: Tensor  # (B, N) log policy (-inf on masked actions)


def box(data: Data, beta: Tensor) -> tuple[Tensor, Tensor]:
    """The existence box in units of ``beta`` (design note fact 3)."""
    return data.umin / beta, data.umax / beta + 1.0


def evaluate(data: Data, beta: Tensor, gamma: Tensor, jacobian: bool = True) -> Eval:
    """``G(gamma)``, its Jacobian and the agent's log policy for every row at once.

    Same mathematics as :meth:`cage_games.ThresholdSystem.evaluate`, batched, at temperature
    ``beta`` (B, 1) (the game's own, or a continuation stage's with ``v`` held fixed):
    ``tau = clip(u - c, 0, cap)``, ``log pi = log_softmax((v + sum_i tau_i) / beta)``,
    ``w = u - tau - c``, ``G = -1 - E[w] / beta`` and
    ``J = diag(1 - E[A]) + Cov(w / beta, A)`` with ``A_j = 1[0 < u_j - c_j < cap_j]``.
    """
    c = gamma * beta
    d = data.u - c.unsqueeze(-1)
    if data.cap is None:
        tau = d.clamp_min(0.0)
    else:
        tau = torch.minimum(d.clamp_min(0.0), data.cap.unsqueeze(-1))
    s = (data.vm + tau.sum(1)) / beta
    logz = torch.logsumexp(s, dim=-1, keepdim=True)
    logp = s - logz
    p = logp.exp()
    w = d.sub_(tau)  # (u - tau - c), in place: d is not needed any more
    ew = torch.bmm(w, p.unsqueeze(-1)).squeeze(-1) / beta  # E[w] / beta, (B, m)
    G = -1.0 - ew
    if not jacobian:
        return Eval(G, None, logp)
    if data.cap is None:
        a = torch.sign(tau)  # 1 where 0 < u - c, else 0 (tau >= 0)
    else:
        a = ((tau > 0) & (tau < data.cap.unsqueeze(-1))).to(tau.dtype)
    pa = a.mul_(p.unsqueeze(1))  # pi * A, (B, m, N); A itself is not needed any more
    ea = pa.sum(-1)  # E[A], (B, m)
    ewa = torch.bmm(w, pa.transpose(1, 2)) / beta.unsqueeze(-1)  # E[w_i A_j] / beta
    J = ewa - ew.unsqueeze(-1) * ea.unsqueeze(1) + torch.diag_embed(1.0 - ea)
    return Eval(G, J, logp)


def _direction(J: Tensor, G: Tensor) -> Tensor:
    """Newton direction ``-J^{-1} G``; where ``J`` is singular, the Levenberg-Marquardt
    direction ``-(J^T J + mu I)^{-1} J^T G`` with ``mu = 1e-3 tr(J^T J) / m``.
    No host synchronisation (``solve_ex`` reports singular rows in a tensor)."""
    m = G.shape[-1]
    newton, info = torch.linalg.solve_ex(J, -G.unsqueeze(-1))
    newton = newton.squeeze(-1)
    ok = (info == 0) & torch.isfinite(newton).all(-1)
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
    big = torch.full_like(gamma, torch.inf)
    room = torch.where(p < 0, (gamma - lo) / -p, torch.where(p > 0, (hi - gamma) / p, big))
    t = room.amin(-1)
    return torch.where((t >= 1.0) | (t <= 1e-12), torch.ones_like(t), _TO_BOUNDARY * t)


class State(NamedTuple):
    gamma: Tensor  # (B, m) current point, in units of the stage temperature bs
    G: Tensor  # (B, m)
    J: Tensor  # (B, m, m)
    logp: Tensor  # (B, N)
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


def _start(data: Data, gamma: Tensor, tol: Tensor) -> State:
    beta = data.beta
    ev = evaluate(data, beta, gamma, True)
    assert ev.J is not None
    B = gamma.shape[0]
    zeros = torch.zeros(B, dtype=gamma.dtype, device=gamma.device)
    izeros = torch.zeros(B, dtype=torch.int64, device=gamma.device)
    false = torch.zeros(B, dtype=torch.bool, device=gamma.device)
    res = ev.G.abs().amax(-1)
    return State(
        gamma=gamma,
        G=ev.G,
        J=ev.J,
        logp=ev.logp,
        f=(ev.G * ev.G).sum(-1),
        p=_direction(ev.J, ev.G),
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


def _step(data: Data, st: State, tol: Tensor, continuation: bool) -> State:
    """One iteration of the per-row state machine: one trial evaluation for every row.

    A row is either in Newton mode (trial = projected, backtracked Newton step, accepted on
    sufficient decrease of ``||G||^2``) or in a Gauss-Seidel sweep (trial = the current point
    with one threshold replaced by the iterate of a bracketed 1-D Newton/bisection on that
    principal's own equation, which is monotone in its threshold). A Newton row whose line
    search fails starts a sweep; a finished sweep returns to Newton.
    """
    running = ~(st.done | st.stalled)
    lo, hi = box(data, st.bs)
    m = st.gamma.shape[-1]
    onehot = torch.nn.functional.one_hot(st.gk, m).to(torch.bool)
    t = st.alpha * _step_length(st.gamma, st.p, lo, hi)
    trial_n = torch.minimum(torch.maximum(st.gamma + t.unsqueeze(-1) * st.p, lo), hi)
    trial_g = torch.where(onehot, st.gx.unsqueeze(-1), st.gamma)
    trial = torch.where(st.gs.unsqueeze(-1), trial_g, trial_n)
    trial = torch.where(running.unsqueeze(-1), trial, st.gamma)
    ev = evaluate(data, st.bs, trial, True)
    assert ev.J is not None
    ft = (ev.G * ev.G).sum(-1)
    res_t = ev.G.abs().amax(-1)
    finite = torch.isfinite(ft)
    final = (st.bs <= data.beta).squeeze(-1)
    tol_s = torch.where(final, tol, torch.clamp_min(tol, _STAGE_TOL))
    ok = finite & (res_t <= tol_s)
    nit = st.nit + running.to(st.nit.dtype)

    # Newton rows: Armijo backtracking on ||G||^2.
    newt = running & ~st.gs
    accept = newt & finite & ((ft <= (1.0 - _ARMIJO * t) * st.f) | ok)
    reject = newt & ~accept
    halvings = torch.where(reject, st.halvings + 1, torch.zeros_like(st.halvings))
    fail = reject & (halvings > _HALVINGS)
    alpha = torch.where(reject & ~fail, 0.5 * st.alpha, torch.ones_like(st.alpha))

    # Gauss-Seidel rows: safeguarded 1-D Newton on G_k (rtsafe, Numerical Recipes 9.4).
    sweep = running & st.gs
    g = _pick(ev.G, st.gk)
    dg = _pick(torch.diagonal(ev.J, dim1=1, dim2=2), st.gk)
    width = st.gb - st.ga
    tiny = 4 * torch.finfo(g.dtype).eps * st.gx.abs().clamp_min(1.0)
    root = sweep & (~finite | (g.abs() <= st.gtol) | (width <= tiny) | (st.gn >= _GS_EVALS))
    ga = torch.where(sweep & (g < 0), st.gx, st.ga)
    gb = torch.where(sweep & (g >= 0), st.gx, st.gb)
    xn = st.gx - g / dg
    good = (dg > 0) & torch.isfinite(xn) & (xn > ga) & (xn < gb)
    gx = torch.where(good, xn, 0.5 * (ga + gb))
    gn = st.gn + sweep.to(st.gn.dtype)
    last = root & (st.gk == m - 1)
    nxt = root & ~last

    # The point moves on an accepted Newton trial, an ok point, or a finished 1-D root.
    take = accept | (sweep & (root | ok))
    tk = take.unsqueeze(-1)
    gamma = torch.where(tk, trial, st.gamma)
    G = torch.where(tk, ev.G, st.G)
    J = torch.where(tk.unsqueeze(-1), ev.J, st.J)
    logp = torch.where(tk, ev.logp, st.logp)
    f = torch.where(take, ft, st.f)
    res = G.abs().amax(-1)

    # Start a sweep where the line search failed; move to the next principal; end a sweep.
    start = fail
    progress = res_t < st.gres
    gfail = torch.where(last, torch.where(progress, 0, st.gfail + 1), st.gfail)
    stalled = st.stalled | (last & (gfail >= _GS_FAILS))
    leave = last | (sweep & ok)
    gs = (st.gs | start) & ~leave
    k_new = torch.where(start, torch.zeros_like(st.gk), torch.where(nxt, st.gk + 1, st.gk))
    k_new = k_new.clamp_max(m - 1)
    reset = start | nxt
    lo_k, hi_k = _pick(lo, k_new), _pick(hi, k_new)
    ga = torch.where(reset, lo_k, ga)
    gb = torch.where(reset, hi_k, gb)
    gx = torch.where(reset, _pick(gamma, k_new).clamp(min=lo_k, max=hi_k), gx)
    gn = torch.where(reset, torch.zeros_like(gn), gn)
    gtol = torch.where(start, torch.maximum(tol_s, _GS_TOL * res), st.gtol)
    gres = torch.where(start, res, st.gres)
    alpha = torch.where(leave | start, torch.ones_like(alpha), alpha)
    halvings = torch.where(leave | start, torch.zeros_like(halvings), halvings)
    done = st.done | (take & ok & final)
    p = torch.where((accept | leave).unsqueeze(-1), _direction(J, G), st.p)

    bs, cont = st.bs, st.cont
    if continuation:
        # Restart a row that is still not done after _DIRECT_ITER evaluations at a high
        # temperature; a solved stage moves on to a lower one (thresholds carried over in
        # utility units). Either way the new point is evaluated first (f = inf, p = 0).
        restart = running & ~st.cont & ~done & (nit >= _DIRECT_ITER)
        restart = restart & (data.beta_start > data.beta).squeeze(-1)
        advance = take & ok & ~final
        fresh = restart | advance
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
        f = torch.where(fresh, torch.full_like(f, torch.inf), f)
        p = torch.where(fr, torch.zeros_like(p), p)
        gs = gs & ~fresh
        alpha = torch.where(fresh, torch.ones_like(alpha), alpha)
        halvings = torch.where(fresh, torch.zeros_like(halvings), halvings)
        gfail = torch.where(fresh, torch.zeros_like(gfail), gfail)
        bs, cont = bs_next, cont | restart
    return State(
        gamma,
        G,
        J,
        logp,
        f,
        p,
        alpha,
        halvings,
        gs,
        k_new,
        ga,
        gb,
        gx,
        gn,
        gtol,
        gres,
        gfail,
        bs,
        cont,
        done,
        stalled,
        nit,
    )


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
) -> State:
    """Batched safeguarded Newton from ``gamma0`` (already inside the box).

    With ``fixed_iters`` exactly that many iterations run with no host synchronisation.
    Otherwise it stops when every row has converged or stalled, or after ``max_iter``
    iterations, reading one integer per iteration; with ``compact`` the evaluations run on
    the rows still iterating only.
    """
    st = _start(data, gamma0, tol)
    if fixed_iters is not None:
        for _ in range(fixed_iters):
            st = _step(data, st, tol, continuation)
        return st
    full, idx = st, None  # idx: rows of ``full`` that ``sub`` holds (None = all of them)
    sub, sub_data, sub_tol = st, data, tol
    for _ in range(max_iter):
        running = ~(sub.done | sub.stalled)
        n_run = int(running.sum())  # the one host read per iteration
        if n_run == 0:
            break
        if compact and n_run < running.shape[0]:
            full = sub if idx is None else _scatter_state(full, sub, idx)
            keep = running.nonzero().squeeze(1)
            idx = keep if idx is None else idx.index_select(0, keep)
            sub = _gather_state(sub, keep)
            sub_data, sub_tol = data.rows(idx), tol.index_select(0, idx)
        sub = _step(sub_data, sub, sub_tol, continuation)
    return sub if idx is None else _scatter_state(full, sub, idx)


def finish(data: Data, st: State, sync: bool) -> tuple[Tensor, Tensor, Tensor]:
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
    ev = evaluate(data, data.beta, gamma, jacobian=False)
    G = torch.where(final, st.G, ev.G)
    logp = torch.where(final, st.logp, ev.logp)
    return torch.where(final, c, gamma * data.beta), G, logp
