"""Batched evaluation of the threshold system and the batched safeguarded Newton loop.

Everything here works on already validated tensors of one working dtype (float32 or float64)
on one device. The iterate is the scaled threshold ``gamma = c / beta`` (B, m); utilities stay
in utility units so that no (B, m, n) rescaling pass is needed.

Residual. Newton runs on the threshold system in log form (the numpy solver's
:meth:`cage_games.ThresholdSystem.evaluate_log`): with ``s_i = E_pi[(gamma_i - r_i)_+]`` and
``o_i = E_pi[(r_i - gamma_i - kappa_i)_+]``, ``G_i = s_i - o_i - 1`` and
``F_i = log rho_i`` (``rho_i = s_i / (1 + o_i) < 1``) or ``rho_i - 1`` (above), which has the
same roots. Where a principal pays for a dominant action ``G_i`` is flat near ``-1`` and
Newton on ``G`` creeps by about one unit of ``beta`` per step; on ``F`` it does not. The
residual reported and tested against ``tol`` is always ``max_i |G_i|``.

Cost model. One evaluation needs a log-sum-exp over the ``n`` actions and ``5 m + 2 m^2``
expectations (:func:`cage_games.torch._native.n_moments`). On a CPU with a C++ compiler they
come from one fused pass over the (B, m, n) utilities (:mod:`cage_games.torch._native`);
elsewhere from a handful of torch operations (:func:`_moments_torch`). Everything after the
moments is (B, m, m)-sized.

The loop is a per-row state machine: every iteration evaluates one trial point per running row
and every decision (accept, halve the step, start or continue a Gauss-Seidel sweep, change the
continuation temperature, freeze a converged row) is a ``torch.where`` on per-row masks. With
``fixed_iters`` it never reads a tensor on the host (CUDA-graph capturable); with tolerance
stopping it reads a few flags per iteration, skips the blocks no row needs and restricts the
work to the rows still running.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from cage_games._newton_spec import SPEC, Code
from cage_games.torch import _native

# Every constant of the method is in SPEC (cage_games._newton_spec), shared by all backends.
_DIRECT_ITER = SPEC.direct_iter
# Below this the unpaid mass s_i enters F linearly (log s_min + s / s_min - 1) instead of as
# a logarithm: the fused kernel resolves s_i down to about exp(-60) (float32) below the
# largest weight, so smaller values are not trusted in a logarithm. Only the path to the
# root depends on it (rho_i = 1 there).
_S_MIN = {torch.float32: 1e-20, torch.float64: 1e-250}
# A one-pass evaluation whose shift exceeds the true maximum of the log-weights by more than
# this is redone with the exact maximum (two passes), so that nothing relevant underflows.
_GAP = {torch.float32: 20.0, torch.float64: 200.0}


class Data(NamedTuple):
    """The numbers defining B games (one per row), validated and in the working dtype.

    With the fused kernel, ``u`` and ``v`` are the caller's full tensors and ``idx`` says which
    of their rows these games are (sub-batches cost no copy); otherwise they are the rows
    themselves and ``idx`` is ``None``.
    """

    u: Tensor  # (B0, m, N) principals' utilities, utility units
    v: Tensor  # (B0, N) agent utility, -inf on masked actions
    idx: Tensor | None  # (B,) int64 rows of u and v (fused kernel only)
    beta: Tensor  # (B, 1) temperatures, > 0
    cap: Tensor | None  # (B, m) caps in utility units (inf = uncapped); None if no row is capped
    umin: Tensor  # (B, m) min over allowed actions of u_i (lower face of the box, times beta)
    umax: Tensor  # (B, m) max over allowed actions of u_i
    beta_start: Tensor  # (B, 1) first temperature of the continuation, >= beta
    kern: _native.Kernels | None  # the fused kernels, or None (torch operations)
    ib: Tensor | None = None  # (B,) 1 / beta, contiguous (fused kernel only)
    kap: Tensor | None = None  # (B, m) cap / beta, contiguous (fused kernel with caps only)
    mom0: Tensor | None = None  # (B, 1 + m) float64 set-up moments (fused kernel only)
    vmax0: Tensor | None = None  # (B,) float64 max_a v / beta (fused kernel only)
    ws: dict | None = None  # buffers of _moments_torch (torch operations only)

    def rows(self, idx: Tensor) -> Data:
        """The sub-batch of rows ``idx``."""
        if self.kern is not None:
            assert self.idx is not None
            big = (self.u, self.v, self.idx.index_select(0, idx))
        else:
            big = (self.u.index_select(0, idx), self.v.index_select(0, idx), None)
        small = [
            None if x is None else x.index_select(0, idx)
            for x in (self.beta, self.cap, self.umin, self.umax, self.beta_start)
        ]
        extra = [
            None if x is None else x.index_select(0, idx)
            for x in (self.ib, self.kap, self.mom0, self.vmax0)
        ]
        return Data(*big, *small, self.kern, *extra, self.ws)


class Ev(NamedTuple):
    """One evaluation: residuals, Jacobian of ``F``, and the normaliser of the policy."""

    G: Tensor  # (B, m) scaled residual G / beta
    F: Tensor  # (B, m) log-form residual
    J: Tensor | None  # (B, m, m) dF / dgamma
    lse: Tensor  # (B, 1) log sum_a exp(x_a) (log-weights x at the stage temperature)
    xmax: Tensor  # (B, 1) max_a x_a


def box(data: Data, beta: Tensor) -> tuple[Tensor, Tensor]:
    """The existence box in units of ``beta`` (design note fact 3)."""
    return data.umin / beta, data.umax / beta + 1.0


def setup(
    u: Tensor, v: Tensor, beta: Tensor, cap: Tensor | None, allowed: Tensor | None,
    fused: bool = True,
) -> tuple[Data, Tensor | None, Tensor | None]:
    """Games, existence box and continuation start; starting point (scaled units).

    ``v`` has ``-inf`` on masked actions; ``allowed`` is ``v > -inf`` if the caller has it.
    The start is ``gamma_i = E_{p0}[u_i] / beta + 1`` with ``p0 = softmax(v / beta)``, the
    exact root when nobody pays, projected into the box. With the fused kernel it is formed
    by :func:`_start` from the set-up moments kept in ``data`` and the second result is
    ``None``. The third result is, with the fused kernel, (B,) int32 flags (bit 0: the row of
    ``u`` has a NaN or infinite entry, bit 1: the row of ``v`` has a NaN or ``+inf``), else
    ``None``.
    """
    B, m, _ = u.shape
    beta = beta.contiguous()
    kern = None
    if u.device.type == "cpu" and fused:
        kern = _native.kernels(u.dtype, m, cap is not None)
    if kern is not None:
        idx = torch.arange(B, device=u.device)
        ib = (1.0 / beta).reshape(B).contiguous()
        mom0, vmax0, umin, umax, flags = kern.setup(u, v, idx, ib)
        spread = (umax - umin).amax(-1, keepdim=True)
        kap = None if cap is None else (cap / beta).contiguous()
        data = Data(u, v, idx, beta, cap, umin, umax, torch.maximum(beta, spread), kern)
        return data._replace(ib=ib, kap=kap, mom0=mom0, vmax0=vmax0), None, flags
    if allowed is None and bool((v == -math.inf).any()):
        allowed = v > -math.inf
    if allowed is not None:
        a = allowed.unsqueeze(1)
        umin = torch.where(a, u, math.inf).amin(-1)
        umax = torch.where(a, u, -math.inf).amax(-1)
    else:
        umin, umax = u.amin(-1), u.amax(-1)
    p0 = torch.softmax(v / beta, dim=-1)
    eu = torch.bmm(u, p0.unsqueeze(-1)).squeeze(-1)
    spread = (umax - umin).amax(-1, keepdim=True)
    data = Data(u, v, None, beta, cap, umin, umax, torch.maximum(beta, spread), None, ws={})
    lo, hi = box(data, beta)
    gamma0 = torch.minimum(torch.maximum(eu / beta + 1.0, lo), hi)
    return data, gamma0, None


def _workspace(data: Data, B: int, rows: int, cols: int) -> dict[str, Tensor]:
    """(B, ., N) buffers for :func:`_moments_torch`, allocated once per solve and shared by
    its sub-batches (leading rows): on a CPU the first touch of fresh memory (page faults)
    costs several times the arithmetic of a pass."""
    ws = data.ws
    assert ws is not None
    u = data.u
    m, N = u.shape[1], u.shape[2]
    if "d" not in ws or ws["d"].shape[0] < B:
        kw = {"dtype": u.dtype, "device": u.device}
        ws.clear()
        ws.update(
            d=torch.empty(B, m, N, **kw),
            tmp=torch.empty(B, m, N, **kw),
            left=torch.empty(B, rows, N, **kw),
            right=torch.empty(B, cols, N, **kw),
            x=torch.empty(B, N, **kw),
        )
    return {k: x[:B] for k, x in ws.items()}


def _moments_torch(
    data: Data, beta: Tensor, gamma: Tensor, jac: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """The moments of :func:`cage_games.torch._native.n_moments` with torch operations.

    Returns ``(moments (B, K), shift (B,), xmax (B,))`` with the moments relative to
    ``exp(shift)``, ``shift = xmax`` the maximum of the log-weights. About eight passes over
    the (B, m, n) utilities, in preallocated buffers: ``d = u / beta - gamma``, ``tau`` and
    its sum, ``g`` (and ``h``), the indicator columns, and one batched matrix product of
    ``[g; 1; h]`` with ``[e A, e 1[d < 0], e 1[h > 0], e]`` that yields every sum.
    """
    u, B, m = data.u, gamma.shape[0], gamma.shape[1]
    caps = data.cap is not None
    rows = 2 * m + 1 if caps else m + 1
    cols = 3 * m + 1 if caps else 2 * m + 1
    ws = _workspace(data, B, rows, cols)
    d, left, right, x = ws["d"], ws["left"], ws["right"], ws["x"]
    ib = 1.0 / beta
    torch.addcmul(-gamma.unsqueeze(-1), u, ib.unsqueeze(-1), out=d)  # r - gamma
    tau = left[:, :m]
    kap = None
    if caps:
        kap = (data.cap / beta).unsqueeze(-1)
        torch.clamp(d, min=torch.zeros_like(kap), max=kap, out=tau)
    else:
        torch.clamp(d, min=0.0, out=tau)
    torch.sum(tau, 1, out=x)
    x.addcmul_(data.v, ib)
    xmax = x.amax(-1)
    e = x.sub_(xmax.unsqueeze(-1)).exp_()  # (B, N), in place; 0 on masked actions
    if kap is None:
        tau.sub_(d)  # g = tau - d = (gamma - r)_+
    else:
        torch.neg(d, out=left[:, :m]).clamp_min_(0.0)
        torch.sub(d, kap, out=left[:, m + 1 :]).clamp_min_(0.0)  # h = (r - gamma - kappa)_+
    left[:, m] = 1.0
    ee = e.unsqueeze(1)
    right[:, -1] = e
    if jac:
        # indicators written as 0./1. floats and scaled in place (much faster on a CPU than
        # boolean masks with torch.where)
        ea = torch.gt(d, 0.0, out=right[:, :m])
        if kap is not None:
            ea.mul_(torch.lt(d, kap, out=ws["tmp"]))
        ea.mul_(ee)
        torch.lt(d, 0.0, out=right[:, m : 2 * m]).mul_(ee)
        if kap is not None:
            torch.gt(d, kap, out=right[:, 2 * m : 3 * m]).mul_(ee)
        prod = torch.bmm(left, right.transpose(1, 2))  # (B, rows, cols)
    else:
        prod = torch.bmm(left, right[:, -1:].transpose(1, 2))  # (B, rows, 1)
    zero = gamma.new_zeros(B, m)
    mm = gamma.new_zeros(B, m * m)
    Z, S = prod[:, m, -1:], prod[:, :m, -1]
    Osum = prod[:, m + 1 :, -1] if caps else zero
    if jac:
        GA = prod[:, :m, :m] * (1.0 - torch.eye(m, dtype=u.dtype, device=u.device))
        parts = [Z, S, Osum, prod[:, m, m : 2 * m], prod[:, m, :m], GA.reshape(B, m * m)]
        if caps:
            parts += [prod[:, m, 2 * m : 3 * m], prod[:, m + 1 :, :m].reshape(B, m * m)]
        else:
            parts += [zero, mm]
    else:
        parts = [Z, S, Osum, zero, zero, mm, zero, mm]
    return torch.cat(parts, -1), xmax, xmax


def _form(mom: Tensor, m: int, caps: bool, jac: bool, s_min: float):
    """``G``, ``F`` and ``dF/dgamma`` from the moments (see the module docstring)."""
    Z = mom[:, :1]
    q = mom / Z
    s, o = q[:, 1 : 1 + m], q[:, 1 + m : 1 + 2 * m]
    G = s - o - 1.0
    s_eff = s.clamp_min(s_min)
    lr = s_eff.log() + (s - s_eff) / s_eff
    if caps:
        lr = lr - torch.log1p(o)
    above = lr > 0.0
    F = torch.where(above, torch.expm1(lr.clamp_max(80.0)), lr)
    if not jac:
        return G, F, None
    B = q.shape[0]
    ea = q[:, 1 + 3 * m : 1 + 4 * m]
    ga = q[:, 1 + 4 * m : 1 + 4 * m + m * m].reshape(B, m, m)
    # d log s_i / d gamma_j = delta_ij P(unpaid_i) / s_i - E[g_i A_j] / s_i + E[A_j]
    # (with s_eff for s below s_min: the derivative of the linear extension)
    J = (s / s_eff).unsqueeze(-1) * ea.unsqueeze(1) - ga / s_eff.unsqueeze(-1)
    unpaid = q[:, 1 + 2 * m : 1 + 3 * m]  # P(r_i < gamma_i), summed directly (it can be tiny)
    if caps:
        h = q[:, 1 + 4 * m + m * m : 1 + 5 * m + m * m]
        ha = q[:, 1 + 5 * m + m * m :].reshape(B, m, m)
        opo = (1.0 + o).unsqueeze(-1)
        # - d log(1 + o_i) / d gamma_j = [delta_ij P(h_i > 0) + E[h_i A_j] - o_i E[A_j]] / (1+o_i)
        J = J + (ha - o.unsqueeze(-1) * ea.unsqueeze(1)) / opo
        diag = unpaid / s_eff + h / opo.squeeze(-1)
    else:
        diag = unpaid / s_eff
    J = J + torch.diag_embed(diag)
    J = torch.where(above.unsqueeze(-1), J * (1.0 + F).unsqueeze(-1), J)
    return G, F, J


def evaluate(
    data: Data, beta: Tensor, gamma: Tensor, jac: bool = True, shift: Tensor | None = None
) -> Ev:
    """``G``, ``F`` and (with ``jac``) ``dF/dgamma`` at ``gamma``, temperature ``beta``.

    Same mathematics as :meth:`cage_games.ThresholdSystem.evaluate_log`, batched, at
    temperature ``beta`` (B, 1) (the game's own, or a continuation stage's with ``v`` held
    fixed): ``tau = clip(u - c, 0, cap)``, ``x = (v + sum_i tau_i) / beta``,
    ``pi = softmax(x)``. ``shift`` (B,) is an optional upper bound of ``max_a x_a`` per row
    (NaN = unknown) that lets the fused kernel do one pass instead of two.
    """
    dt = gamma.dtype
    B, m = gamma.shape
    caps = data.cap is not None
    if data.kern is not None:
        assert data.idx is not None
        ib, kap = _kernel_scales(data, beta, B)
        if shift is None:
            shift = torch.full((B,), math.nan, dtype=dt)
        G, F, J, lse, xmax, _ = data.kern.eval(
            data.u, data.v, data.idx, gamma.contiguous(), ib, kap, shift.contiguous(), jac,
            _S_MIN[dt], _GAP[dt],
        )  # fmt: skip
        return Ev(G, F, J, lse.unsqueeze(-1), xmax.unsqueeze(-1))
    mom, sh, xmax = _moments_torch(data, beta, gamma, jac)
    G, F, J = _form(mom, m, caps, jac, _S_MIN[dt])
    lse = (sh + mom[:, 0].log()).unsqueeze(-1)
    return Ev(G, F, J, lse, xmax.unsqueeze(-1))


def _kernel_scales(data: Data, beta: Tensor, B: int) -> tuple[Tensor, Tensor | None]:
    """``1 / beta`` (B,) and the scaled caps (B, m) the fused kernel takes; the precomputed
    ones when ``beta`` is the game's own temperature (not a continuation stage)."""
    if beta is data.beta and data.ib is not None:
        return data.ib, data.kap
    ib = (1.0 / beta).reshape(B).contiguous()
    kap = (data.cap / beta).contiguous() if data.cap is not None else None
    return ib, kap


def log_policy(data: Data, beta: Tensor, gamma: Tensor, lse: Tensor) -> Tensor:
    """``log pi`` (B, n) at ``gamma`` and temperature ``beta``, given its normaliser ``lse``."""
    B = gamma.shape[0]
    if data.kern is not None:
        assert data.idx is not None
        ib, kap = _kernel_scales(data, beta, B)
        out = torch.empty(B, data.v.shape[-1], dtype=gamma.dtype, device=gamma.device)
        l0 = lse.reshape(B).contiguous()
        return data.kern.policy(data.u, data.v, data.idx, gamma.contiguous(), ib, kap, l0, out)
    d = data.u / beta.unsqueeze(-1) - gamma.unsqueeze(-1)
    tau = d.clamp_min(0.0)
    if data.cap is not None:
        tau = torch.minimum(tau, (data.cap / beta).unsqueeze(-1))
    return data.v / beta + tau.sum(1) - lse


def _shift_bound(st: State, trial: Tensor, data: Data) -> Tensor:
    """Upper bound of the log-weights at ``trial`` from their maximum at ``st.gamma``.

    Lowering ``gamma_i`` by ``delta`` raises ``tau_i / beta`` by at most
    ``min(delta, kappa_i)`` on any action, and raising it never raises ``tau_i``. NaN where
    the current maximum is unknown (a fresh continuation stage)."""
    drop = (st.gamma - trial).clamp_min(0.0)
    if data.cap is not None:
        drop = torch.minimum(drop, data.cap / st.bs)
    return st.xmax.squeeze(-1) + drop.sum(-1)


def _direction(J: Tensor, G: Tensor, sync: bool, kern: _native.Kernels | None = None) -> Tensor:
    """Newton direction ``-J^{-1} G``; where ``J`` is singular, the Levenberg-Marquardt
    direction ``-(J^T J + mu I)^{-1} J^T G`` with ``mu = 1e-3 tr(J^T J) / m``.

    ``solve_ex`` (or the fused library's small solver, on the CPU) reports singular rows in a
    tensor; with ``sync`` one boolean is read to skip the Levenberg-Marquardt solve when no
    row needs it, otherwise it is always computed."""
    m = G.shape[-1]
    if kern is not None:
        newton, ok = kern.solve(J, G)
    else:
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
    lm, _ = torch.linalg.solve_ex(h + (SPEC.lm_mu * scale)[:, None, None] * eye, -g.unsqueeze(-1))
    lm = torch.nan_to_num(lm.squeeze(-1), nan=0.0, posinf=0.0, neginf=0.0)
    return torch.where(ok.unsqueeze(-1), newton, lm)


def _step_length(gamma: Tensor, p: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """Largest ``t <= 1`` keeping ``gamma + t p`` in the box, backed off the boundary.

    A step that starts on a face and points out of it gets ``t = 1`` (and is projected)."""
    room = torch.where(p < 0, (gamma - lo) / -p, (hi - gamma) / p)
    room = torch.where(p == 0, torch.inf, room)
    t = room.amin(-1)
    return torch.where((t >= 1.0) | (t <= SPEC.box_tiny), 1.0, SPEC.to_boundary * t)


class State(NamedTuple):
    gamma: Tensor  # (B, m) current point, in units of the stage temperature bs
    G: Tensor  # (B, m) residual G / beta at gamma (what tol is checked against)
    F: Tensor  # (B, m) log-form residual at gamma
    J: Tensor  # (B, m, m) dF / dgamma at gamma
    lse: Tensor  # (B, 1) log normaliser of the policy at gamma
    xmax: Tensor  # (B, 1) largest log-weight at gamma (NaN: unknown)
    f: Tensor  # (B,) ||F||^2 (inf: the point is new and must be evaluated first)
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
    creep: Tensor  # (B,) int, accepted steps shorter than SPEC.tiny_step in a row


def _start_native(data: Data, tol: Tensor) -> tuple[State, dict[str, Tensor]]:
    """:func:`_start` in one call of the fused library, from the set-up moments.

    Also returns the log-weights buffer ``xout`` (B, n) and ``xok`` (B,) ("``xout`` holds
    the final log-weights of the row"), which :func:`_fast_native` keeps up to date."""
    assert data.kern is not None and data.idx is not None
    assert data.mom0 is not None and data.vmax0 is not None
    beta = data.beta
    B = beta.shape[0]
    dt = beta.dtype
    d = data.kern.start(
        data.u, data.v, data.idx, data.ib, data.kap, tol.contiguous(), data.mom0, data.vmax0,
        data.umin, data.umax, _S_MIN[dt], _GAP[dt],
    )  # fmt: skip
    out = {"xout": d.pop("xout"), "xok": d.pop("xok")}
    zeros = beta.new_zeros(B)
    izeros = torch.zeros(B, dtype=torch.int64)
    false = torch.zeros(B, dtype=torch.bool)
    # alpha, halvings and nit are fresh tensors: _fast_native updates them in place
    return State(
        **d, alpha=torch.ones(B, dtype=dt), halvings=torch.zeros(B, dtype=torch.int64), gs=false,
        gk=izeros, ga=zeros, gb=zeros, gx=zeros, gn=izeros, gtol=zeros, gres=zeros,
        gfail=izeros, bs=beta, cont=false, nit=torch.zeros(B, dtype=torch.int64),
        creep=torch.zeros(B, dtype=torch.int64),
    ), out  # fmt: skip


def _start(data: Data, gamma: Tensor, tol: Tensor, sync: bool) -> State:
    beta = data.beta
    ev = evaluate(data, beta, gamma)
    assert ev.J is not None
    B = gamma.shape[0]
    zeros = torch.zeros(B, dtype=gamma.dtype, device=gamma.device)
    izeros = torch.zeros(B, dtype=torch.int64, device=gamma.device)
    false = torch.zeros(B, dtype=torch.bool, device=gamma.device)
    res = ev.G.abs().amax(-1)
    return State(
        gamma=gamma,
        G=ev.G,
        F=ev.F,
        J=ev.J,
        lse=ev.lse,
        xmax=ev.xmax,
        f=(ev.F * ev.F).sum(-1),
        p=_direction(ev.J, ev.F, sync, data.kern),
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
        creep=izeros,
    )


def _pick(x: Tensor, k: Tensor) -> Tensor:
    """``x[b, k[b]]`` for every row."""
    return x.gather(-1, k.unsqueeze(-1)).squeeze(-1)


def _step(
    data: Data, st: State, tol: Tensor, continuation: bool, sync: bool, gs_on: bool
) -> tuple[State, Tensor]:
    """One iteration of the state machine of :mod:`cage_games._newton_spec` (steps S1-S8):
    one trial evaluation for every running row.

    A row is either in Newton mode (trial = projected, backtracked Newton step on ``F``,
    accepted on sufficient decrease of ``||F||^2``) or in a Gauss-Seidel sweep (trial = the
    current point with one threshold replaced by the iterate of a bracketed 1-D
    Newton/bisection on that principal's own equation, whose sign is monotone in its
    threshold). A Newton row whose line search fails or creeps starts a sweep; a finished
    sweep returns to Newton.

    With ``sync`` (tolerance mode) two flags are read on the host to skip the sweep and
    continuation bookkeeping when no row needs it; ``gs_on`` says whether any row is in a
    sweep and ``continuation`` whether a row may restart or advance a stage (the caller
    knows: no row restarts before ``SPEC.direct_iter`` iterations). Without ``sync`` every
    block runs (no host read). Returns the new state and the (B,) int8 decision codes
    (:class:`cage_games._newton_spec.Code`; ``IDLE`` for rows not running).
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
    ev = evaluate(data, st.bs, trial, shift=_shift_bound(st, trial, data))
    Gt, Ft, Jt = ev.G, ev.F, ev.J
    assert Jt is not None
    ft = (Ft * Ft).sum(-1)
    res_t = Gt.abs().amax(-1)
    finite = torch.isfinite(ft) & torch.isfinite(res_t)
    final = (st.bs <= data.beta).squeeze(-1)
    tol_s = torch.where(final, tol, torch.clamp_min(tol, SPEC.stage_tol))
    ok = finite & (res_t <= tol_s)
    nit = st.nit + running.to(st.nit.dtype)

    # S3, Newton rows: Armijo backtracking on ||F||^2; creeping test.
    newt = running & ~st.gs
    accept = newt & finite & ((ft <= (1.0 - SPEC.armijo * t) * st.f) | ok)
    reject = newt & ~accept
    halvings = torch.where(reject, st.halvings + 1, 0)
    creep = torch.where(accept, torch.where(t < SPEC.tiny_step, st.creep + 1, 0), st.creep)
    creep_fail = accept & ~ok & (creep >= SPEC.tiny_steps) if SPEC.tiny_steps > 0 else None
    fail = reject & (halvings > SPEC.max_halvings)
    alpha = torch.where(reject & ~fail, 0.5 * st.alpha, 1.0)
    take = accept
    code = torch.where(accept, Code.ACCEPT, torch.where(reject, Code.BACKTRACK, 0))
    if creep_fail is not None:
        take = accept & ~creep_fail  # the creeping step is not taken: sweep from gamma
        fail = fail | creep_fail
    fail_code = (
        torch.where(creep_fail, Code.CREEP, Code.FALLBACK) if creep_fail is not None else None
    )
    stall_now = torch.zeros_like(running)
    if gs_on:
        # S4, Gauss-Seidel rows: safeguarded 1-D Newton on F_k (rtsafe, Numerical Recipes
        # 9.4); F_k has the sign of G_k, whose bracket the sweep keeps.
        sweep = running & st.gs
        g = _pick(Gt, st.gk)
        tiny = 4 * torch.finfo(g.dtype).eps * st.gx.abs().clamp_min(1.0)
        width = st.gb - st.ga
        root = sweep & (~finite | (g.abs() <= st.gtol) | (width <= tiny) | (st.gn >= SPEC.gs_evals))
        take = take | (sweep & (root | ok))
    # Rows with a new point keep its Jacobian (a new direction is computed there).
    need_j = take & ~(ok & final)
    J = torch.where(need_j[:, None, None], Jt, st.J)

    tk = take.unsqueeze(-1)
    gamma = torch.where(tk, trial, st.gamma)
    G = torch.where(tk, Gt, st.G)
    F = torch.where(tk, Ft, st.F)
    lse = torch.where(tk, ev.lse, st.lse)
    xmax = torch.where(tk, ev.xmax, st.xmax)
    f = torch.where(take, ft, st.f)
    done = st.done | (take & ok & final)
    gs, k_new, ga, gb, gx, gn = st.gs, st.gk, st.ga, st.gb, st.gx, st.gn
    gtol, gres, gfail, stalled = st.gtol, st.gres, st.gfail, st.stalled
    renew = accept
    if sync:
        any_fail = bool(fail.any())
    else:
        any_fail = True
    if gs_on or any_fail:
        res = G.abs().amax(-1)
        if gs_on:
            ga = torch.where(sweep & (g < 0), st.gx, st.ga)
            gb = torch.where(sweep & (g >= 0), st.gx, st.gb)
            dg = _pick(torch.diagonal(Jt, dim1=1, dim2=2), st.gk)  # dF_k/dgamma_k at the trial
            xn = st.gx - _pick(Ft, st.gk) / dg
            good = (dg > 0) & torch.isfinite(xn) & (xn > ga) & (xn < gb)
            gx = torch.where(good, xn, 0.5 * (ga + gb))
            gn = st.gn + sweep.to(st.gn.dtype)
            last = root & (st.gk == m - 1)
            nxt = root & ~last
            leave = last | (sweep & ok)
            progress = res_t < st.gres
            gfail = torch.where(last, torch.where(progress, 0, st.gfail + 1), st.gfail)
            stall_now = last & (gfail >= SPEC.gs_fails)
            # a stage that stalls moves on (S8); at the game's temperature the row stops
            stalled = stalled | (stall_now & final)
            code = torch.where(
                sweep,
                torch.where(
                    stall_now,
                    Code.STALLED,
                    torch.where(
                        leave, Code.SWEEP_END, torch.where(nxt, Code.SWEEP_NEXT, Code.SWEEP)
                    ),
                ),
                code,
            )
        else:
            nxt = leave = torch.zeros_like(fail)
        # S5: start a sweep where the line search failed or crept; next principal; end.
        gs = (st.gs | fail) & ~leave
        k_new = torch.where(fail, 0, torch.where(nxt, st.gk + 1, st.gk)).clamp_max(m - 1)
        reset = fail | nxt
        lo_k, hi_k = _pick(lo, k_new), _pick(hi, k_new)
        ga = torch.where(reset, lo_k, ga)
        gb = torch.where(reset, hi_k, gb)
        gx = torch.where(reset, torch.minimum(torch.maximum(_pick(gamma, k_new), lo_k), hi_k), gx)
        gn = torch.where(reset, 0, gn)
        gtol = torch.where(fail, torch.maximum(tol_s, SPEC.gs_tol * res), gtol)
        gres = torch.where(fail, res, gres)
        alpha = torch.where(leave | fail, 1.0, alpha)
        halvings = torch.where(leave | fail, 0, halvings)
        creep = torch.where(leave | fail, 0, creep)
        renew = renew | leave
        if fail_code is not None:
            code = torch.where(fail, fail_code, code)
        else:
            code = torch.where(fail, Code.FALLBACK, code)
    p = torch.where((renew & ~done).unsqueeze(-1), _direction(J, F, sync, data.kern), st.p)
    code = torch.where(done & ~st.done, Code.CONVERGED, code)

    bs, cont = st.bs, st.cont
    if continuation:
        # S8: restart a row still not done after direct_iter evaluations at a high
        # temperature; a solved (or stalled) stage moves on to a lower one (thresholds
        # carried over in utility units). Either way the new point is evaluated first
        # (f = inf, p = 0).
        restart = running & ~st.cont & ~done & ~stalled & (nit >= SPEC.direct_iter)
        restart = restart & (data.beta_start > data.beta).squeeze(-1)
        advance = ((take & ok) | stall_now) & ~final
        fresh = restart | advance
        any_fresh = bool(fresh.any()) if sync else True
    else:
        any_fresh = False
    if any_fresh:
        bs_next = torch.where(
            advance.unsqueeze(-1),
            torch.maximum(data.beta, st.bs / SPEC.stage_ratio),
            torch.where(restart.unsqueeze(-1), data.beta_start, st.bs),
        )
        lo_n, hi_n = box(data, bs_next)
        carried = torch.where(restart.unsqueeze(-1), hi_n - 1.0, gamma * st.bs / bs_next)
        carried = torch.minimum(torch.maximum(carried, lo_n), hi_n)
        fr = fresh.unsqueeze(-1)
        gamma = torch.where(fr, carried, gamma)
        xmax = torch.where(fr, math.nan, xmax)  # the log-weights change with the temperature
        f = torch.where(fresh, torch.inf, f)
        p = torch.where(fr, 0.0, p)
        gs = gs & ~fresh
        alpha = torch.where(fresh, 1.0, alpha)
        halvings = torch.where(fresh, 0, halvings)
        creep = torch.where(fresh, 0, creep)
        gfail = torch.where(fresh, 0, gfail)
        bs, cont = bs_next, cont | restart
        code = torch.where(restart, Code.RESTART, torch.where(advance, Code.STAGE, code))
    code = torch.where(running, code, 0).to(torch.int8)
    return State(
        gamma, G, F, J, lse, xmax, f, p, alpha, halvings, gs, k_new, ga, gb, gx, gn, gtol,
        gres, gfail, bs, cont, done, stalled, nit, creep,
    ), code  # fmt: skip


def _fast(
    data: Data,
    st: State,
    tol: Tensor,
    n_iter: int,
    compact: bool,
    out: dict | None = None,
    trace: list | None = None,
) -> tuple[State, int]:
    """Up to ``n_iter`` iterations of :func:`_step` specialised to rows in Newton mode at their
    own temperature (tolerance mode only), with a fraction of its small-tensor operations.

    It makes exactly the decisions :func:`_step` makes (same trial points, acceptance,
    halvings, creeping test, directions) and stops before the first iteration in which a
    row's line search fails or creeps (that iteration is left to :func:`_step`, which starts
    a Gauss-Seidel sweep there). Returns the state and the number of iterations done; with a
    ``trace`` list, appends each iteration's (B,) int8 decision codes.
    """
    if data.kern is not None:
        assert out is not None
        return _fast_native(data, st, tol, n_iter, out, trace)
    B = st.gamma.shape[0]
    full, idx = st, None
    sub, sub_data, sub_tol = st, data, tol
    running = ~(st.done | st.stalled)
    n_run = int(running.sum())
    k = 0
    caps = data.cap is not None
    while k < n_iter and n_run > 0:
        if compact and 2 * n_run <= running.shape[0]:
            full = sub if idx is None else _scatter_state(full, sub, idx)
            keep = running.nonzero().squeeze(1)
            idx = keep if idx is None else idx.index_select(0, keep)
            sub = _gather_state(sub, keep)
            sub_data, sub_tol = data.rows(idx), tol.index_select(0, idx)
            running = running.index_select(0, keep)
        beta = sub_data.beta
        lo, hi = box(sub_data, beta)
        t = sub.alpha * _step_length(sub.gamma, sub.p, lo, hi)
        trial = torch.minimum(torch.maximum(sub.gamma + t.unsqueeze(-1) * sub.p, lo), hi)
        trial = torch.where(running.unsqueeze(-1), trial, sub.gamma)
        drop = (sub.gamma - trial).clamp_min(0.0)
        if caps:
            drop = torch.minimum(drop, sub_data.cap / beta)
        ev = evaluate(sub_data, beta, trial, shift=sub.xmax.squeeze(-1) + drop.sum(-1))
        assert ev.J is not None
        ft = (ev.F * ev.F).sum(-1)
        res_t = ev.G.abs().amax(-1)
        finite = torch.isfinite(ft) & torch.isfinite(res_t)
        ok = finite & (res_t <= sub_tol)
        accept = running & finite & ((ft <= (1.0 - SPEC.armijo * t) * sub.f) | ok)
        reject = running & ~accept
        halvings = torch.where(reject, sub.halvings + 1, 0)
        creep = torch.where(accept, torch.where(t < SPEC.tiny_step, sub.creep + 1, 0), sub.creep)
        fail = reject & (halvings > SPEC.max_halvings)
        if SPEC.tiny_steps > 0:
            fail = fail | (accept & ~ok & (creep >= SPEC.tiny_steps))
        done = sub.done | (accept & ok)
        running_new = ~(done | sub.stalled)
        any_fail, n_run = torch.stack([fail.any(), running_new.sum()]).tolist()
        if any_fail:
            break  # _step redoes this iteration (same trial) and starts the sweeps
        if trace is not None:
            code = torch.where(
                accept,
                torch.where(ok, Code.CONVERGED, Code.ACCEPT),
                torch.where(reject, Code.BACKTRACK, 0),
            ).to(torch.int8)
            _record(trace, code, idx, B)
        tk = accept.unsqueeze(-1)
        J = torch.where((accept & ~ok)[:, None, None], ev.J, sub.J)
        F = torch.where(tk, ev.F, sub.F)
        p = torch.where((accept & ~done).unsqueeze(-1), _direction(J, F, True, data.kern), sub.p)
        sub = sub._replace(
            gamma=torch.where(tk, trial, sub.gamma),
            G=torch.where(tk, ev.G, sub.G),
            F=F,
            J=J,
            lse=torch.where(tk, ev.lse, sub.lse),
            xmax=torch.where(tk, ev.xmax, sub.xmax),
            f=torch.where(accept, ft, sub.f),
            p=p,
            alpha=torch.where(reject, 0.5 * sub.alpha, 1.0),
            halvings=halvings,
            done=done,
            nit=sub.nit + running.to(sub.nit.dtype),
            creep=creep,
        )
        running = running_new
        k += 1
    return (sub if idx is None else _scatter_state(full, sub, idx)), k


def _record(trace: list | None, code: Tensor, idx: Tensor | None, B: int) -> None:
    """Append one iteration's codes of the rows ``idx`` (all if ``None``) as a (B,) int8."""
    if trace is None:
        return
    if idx is None:
        trace.append(code.to(torch.int8))
    else:
        full = torch.zeros(B, dtype=torch.int8, device=code.device)
        trace.append(full.index_copy_(0, idx, code.to(torch.int8)))


def stack_trace(trace: list[Tensor], B: int) -> Tensor:
    """The (B, T) int8 trace (:mod:`cage_games._newton_spec`) from per-iteration codes."""
    if not trace:
        return torch.zeros(B, 0, dtype=torch.int8)
    return torch.stack([c.cpu() for c in trace], 1)


def _fast_native(
    data: Data,
    st: State,
    tol: Tensor,
    n_iter: int,
    out: dict[str, Tensor],
    trace: list | None = None,
) -> tuple[State, int]:
    """:func:`_fast` as one call of the fused library (same decisions, no per-iteration
    torch operations; rows that finish drop out of the evaluations without any copy).

    It updates the tensors of ``st`` in place: ``st`` must come from :func:`_start_native`."""
    assert data.kern is not None and data.idx is not None
    fields = ("gamma", "G", "F", "J", "lse", "xmax", "f", "p", "alpha", "halvings", "done", "nit")
    # updated in place: the tensors of a state from _start_native are fresh and contiguous
    state = {k: getattr(st, k) for k in (*fields, "stalled", "creep")}
    state.update(out)
    assert all(x.is_contiguous() for x in state.values())
    dt = st.gamma.dtype
    codes = None
    if trace is not None:
        codes = torch.zeros(st.gamma.shape[0], max(n_iter, 1), dtype=torch.int8)
    k, _ = data.kern.newton(
        data.u, data.v, data.idx, data.ib, data.beta, data.umin, data.umax, data.kap,
        tol.contiguous(), _S_MIN[dt], _GAP[dt], n_iter, state, codes,
    )  # fmt: skip
    if codes is not None:
        trace.extend(codes[:, i].clone() for i in range(k))
    return st, k


def _scatter_state(full: State, part: State, idx: Tensor) -> State:
    return State(*(a.index_copy(0, idx, b) for a, b in zip(full, part, strict=True)))


def _gather_state(st: State, idx: Tensor) -> State:
    return State(*(a.index_select(0, idx) for a in st))


def newton(
    data: Data,
    gamma0: Tensor | None,
    tol: Tensor,
    *,
    max_iter: int,
    fixed_iters: int | None,
    continuation: bool = True,
    compact: bool = True,
    trace: list | None = None,
) -> tuple[State, dict[str, Tensor] | None]:
    """Batched safeguarded Newton from ``gamma0`` (already inside the box).

    With ``fixed_iters`` exactly that many iterations run with no host synchronisation.
    Otherwise it stops when every row has converged or stalled, or after ``max_iter``
    iterations, reading a few flags per iteration; with ``compact`` the evaluations run on
    the rows still iterating only (once at most half of them are).

    The second result is, with the fused kernel, the log-weights buffer of
    :func:`_start_native` (used by :func:`finish`), else ``None``. With a ``trace`` list,
    every iteration appends its (B,) int8 decision codes (:mod:`cage_games._newton_spec`;
    :func:`stack_trace` makes the (B, T) trace).
    """
    out = None
    if data.kern is not None:
        st, out = _start_native(data, tol)
    else:
        assert gamma0 is not None
        st = _start(data, gamma0, tol, fixed_iters is None)
    if fixed_iters is not None:
        for _ in range(fixed_iters):
            st, code = _step(data, st, tol, continuation, sync=False, gs_on=True)
            _record(trace, code, None, code.shape[0])
        return st, None
    # Compacting costs a gather of every state tensor (and, without the fused kernel, of the
    # utilities): worth it for long rows only.
    compact = compact and (data.kern is not None or data.u.shape[1] * data.u.shape[2] >= 4096)
    n_fast = min(max_iter, _DIRECT_ITER - 1) if continuation else max_iter
    st, k0 = _fast(data, st, tol, n_fast, compact, out, trace)
    B = st.gamma.shape[0]
    full, idx = st, None  # idx: rows of ``full`` that ``sub`` holds (None = all of them)
    sub, sub_data, sub_tol = st, data, tol
    for k in range(k0, max_iter):
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
            sub_data, sub_tol = data.rows(idx), tol.index_select(0, idx)
        cont_on = continuation and (n_cont > 0 or k + 1 >= _DIRECT_ITER)
        sub, code = _step(sub_data, sub, sub_tol, cont_on, sync=True, gs_on=n_gs > 0)
        _record(trace, code, idx, B)
    return (sub if idx is None else _scatter_state(full, sub, idx)), out


def finish(
    data: Data, st: State, sync: bool, out: dict[str, Tensor] | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Thresholds (utility units), residual vector and log policy at the game's temperature.

    A row stopped during temperature continuation (fixed iterations, or the iteration cap) is
    re-evaluated at its own temperature, so the residual always belongs to the thresholds
    returned. With ``sync`` this extra evaluation is skipped when no row needs it.
    """
    c = st.gamma * st.bs
    final = st.bs <= data.beta
    if sync and out is not None:
        # rows that converged in the fused Newton phase have their log-weights in xout already
        xok = out["xok"]
        n_ok, all_final = torch.stack([xok.sum(), final.all()]).tolist()
        if all_final and n_ok > 0:
            logp = torch.sub(out["xout"], st.lse, out=out["xout"])
            if n_ok < xok.shape[0]:
                rest = (~xok).nonzero().squeeze(1)
                sub = data.rows(rest)
                lp = log_policy(sub, sub.beta, st.gamma[rest], st.lse[rest])
                logp.index_copy_(0, rest, lp)
            return c, st.G, logp
    if sync and bool(final.all()):
        return c, st.G, log_policy(data, data.beta, st.gamma, st.lse)
    lo, hi = box(data, data.beta)
    gamma = torch.where(final, st.gamma, torch.minimum(torch.maximum(c / data.beta, lo), hi))
    ev = evaluate(data, data.beta, gamma, jac=False)
    G = torch.where(final, st.G, ev.G)
    lse = torch.where(final, st.lse, ev.lse)
    return gamma * data.beta, G, log_policy(data, data.beta, gamma, lse)
