"""Public entry points of the batched torch backend: validation, set-up, result record."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
from torch import Tensor

from cage_games.torch import _kernel as K
from cage_games.torch import _triton
from cage_games.torch._klsearch import KL_SEARCH

__all__ = ["BatchSolution", "solve_batch", "solve_batch_kl"]

_BACKENDS = ("auto", "triton", "native", "torch")
_DEFAULT_TOL = {torch.float64: 1e-11, torch.float32: 1e-5}
_UPCAST = {torch.float16: torch.float32, torch.bfloat16: torch.float32}


@dataclass(frozen=True, eq=False)
class BatchSolution:
    """Equilibria of ``B`` games solved together by :func:`solve_batch`.

    All tensors are on the device of the inputs, in the working dtype (float64 for float64
    inputs, float32 otherwise).

    Attributes
    ----------
    log_policy : Tensor, shape (B, n)
        Log of the agent's equilibrium policy, ``-inf`` on masked actions; each row's
        ``exp`` sums to 1.
    thresholds : Tensor, shape (B, m)
        Equilibrium thresholds ``c_i`` in utility units: principal ``i`` pays
        ``clip(u_i - c_i, 0, cap_i)`` and nets ``c_i - beta`` (uncapped case).
    residual : Tensor, shape (B,)
        ``max_i |G_i(c)| / beta`` at the returned thresholds, the same dimensionless residual
        as :func:`cage_games.solve` reports.
    nit : Tensor, shape (B,), int64
        Trial evaluations each row needed (Newton steps plus backtracking trials); 0 when the
        starting point already met ``tol``.
    success : Tensor, shape (B,), bool
        ``residual <= tol``.
    tol : Tensor, shape (B,)
        The tolerance each row was solved to (see ``tol`` in :func:`solve_batch`).
    mode : str
        ``"tolerance"`` (stopped when every row converged) or ``"fixed"`` (``fixed_iters``).
    backend : str
        The implementation that ran: ``"triton"``, ``"native"`` or ``"torch"``.
    beta : Tensor, shape (B,), optional
        :func:`solve_batch_kl` only: the temperature of each row (in target-KL mode, the
        strength found).
    kl : Tensor, shape (B,), optional
        :func:`solve_batch_kl` only: ``KL(pi || p0)`` of the equilibrium policy, in nats.
    kl_reached : Tensor of bool, shape (B,), optional
        Target-KL mode only: whether the row's KL is within the search's tolerance of the
        target (False where even the strongest allowed tilt stays below it, e.g. when every
        reward ties).
    """

    log_policy: Tensor
    thresholds: Tensor
    residual: Tensor
    nit: Tensor
    success: Tensor
    tol: Tensor
    mode: str
    backend: str = "torch"
    beta: Tensor | None = None
    kl: Tensor | None = None
    kl_reached: Tensor | None = None

    @property
    def policy(self) -> Tensor:
        """The equilibrium policy ``exp(log_policy)``, shape (B, n)."""
        return self.log_policy.exp()

    def __repr__(self) -> str:
        B, n = self.log_policy.shape
        ok = int(self.success.sum())
        worst = float(self.residual.max()) if self.residual.numel() else 0.0
        return (
            f"BatchSolution(B={B}, n={n}, m={self.thresholds.shape[1]}, success={ok}/{B}, "
            f"max residual={worst:.3g}, max nit={int(self.nit.max())}, "
            f"tol={float(self.tol.max()):.3g}, "
            f"mode={self.mode!r}, backend={self.backend!r}, device={self.log_policy.device}, "
            f"dtype={self.log_policy.dtype})"
        )


# -- validation ------------------------------------------------------------------------------
def _tensor(x: object, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x


def _check_finite(x: Tensor, name: str, allow_neg_inf: bool = False) -> None:
    if bool(torch.isnan(x).any()):
        raise ValueError(f"{name} contains NaN")
    bad = torch.isposinf(x) if allow_neg_inf else torch.isinf(x)
    if bool(bad.any()):
        extra = " (-inf is allowed and means 'masked')" if allow_neg_inf else ""
        raise ValueError(f"{name} must be finite{extra}; found infinite entries")


def _beta(beta: object, B: int, device: torch.device, dtype: torch.dtype, check: bool) -> Tensor:
    if isinstance(beta, Tensor):
        if not beta.is_floating_point():
            raise TypeError(f"beta must be a float or a floating-point tensor, got {beta.dtype}")
        if beta.device != device:
            raise ValueError(f"beta is on {beta.device} but v is on {device}; move it")
        if _UPCAST.get(beta.dtype, beta.dtype) != dtype:
            raise TypeError(
                f"beta has dtype {beta.dtype} but the utilities are {dtype}; give the same "
                "dtype (a float32 beta would silently change a float64 game)"
            )
        if beta.ndim == 0:
            beta = beta.reshape(1).expand(B)
        if beta.shape != (B,):
            raise ValueError(f"beta must be a scalar or have shape ({B},), got {tuple(beta.shape)}")
        beta = beta.to(dtype)
        if check:
            if not bool(torch.isfinite(beta).all()):
                raise ValueError("beta must be finite")
            if not bool((beta > 0).all()):
                raise ValueError(
                    "beta must be > 0 in every row (beta = 0 is a menu auction, which the "
                    "batched backend does not solve; use cage_games for it)"
                )
        return beta.reshape(B, 1)
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real):
        raise TypeError(f"beta must be a float or a tensor, got {type(beta).__name__}")
    b = float(beta)
    if not math.isfinite(b) or b <= 0:
        raise ValueError(
            f"beta must be a finite number > 0, got {b} (beta = 0 is a menu auction, which the "
            "batched backend does not solve)"
        )
    return torch.full((B, 1), b, dtype=dtype, device=device)


def _caps(
    caps: object, B: int, m: int, device: torch.device, dtype: torch.dtype, check: bool
) -> Tensor | None:
    if caps is None:
        return None
    if isinstance(caps, Tensor):
        if not caps.is_floating_point():
            raise TypeError(f"caps must be a floating-point tensor, got dtype {caps.dtype}")
        if caps.device != device:
            raise ValueError(f"caps is on {caps.device} but v is on {device}; move it")
        if _UPCAST.get(caps.dtype, caps.dtype) != dtype:
            raise TypeError(f"caps has dtype {caps.dtype} but the utilities are {dtype}")
        if caps.shape == (m,):
            caps = caps.unsqueeze(0).expand(B, m)
        elif caps.ndim == 0:
            caps = caps.reshape(1, 1).expand(B, m)
        elif caps.shape != (B, m):
            raise ValueError(
                f"caps must be a float or have shape ({m},) or ({B}, {m}), got {tuple(caps.shape)}"
            )
        caps = caps.to(dtype)
        if check:
            if bool(torch.isnan(caps).any()):
                raise ValueError("caps contains NaN (use inf for an uncapped principal)")
            if not bool((caps > 0).all()):
                raise ValueError("caps must be > 0 (use inf for an uncapped principal)")
            if not bool(torch.isfinite(caps).any()):
                return None
        return caps.contiguous()
    if isinstance(caps, bool) or not isinstance(caps, numbers.Real):
        raise TypeError(f"caps must be None, a float or a tensor, got {type(caps).__name__}")
    c = float(caps)
    if math.isnan(c) or c <= 0:
        raise ValueError(f"caps must be > 0 (inf = uncapped), got {c}")
    if math.isinf(c):
        return None
    return torch.full((B, m), c, dtype=dtype, device=device)


def _check_mask(mask: object, shape: tuple[int, int], device: torch.device, like: str) -> None:
    """``mask`` must be a bool tensor of ``shape`` on ``device`` (``like`` names the tensor)."""
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise TypeError("mask must be a torch.bool tensor (True = action allowed)")
    if mask.shape != shape:
        raise ValueError(f"mask must have shape {shape} like {like}, got {tuple(mask.shape)}")
    if mask.device != device:
        raise ValueError(f"mask is on {mask.device} but {like} is on {device}")


def _check_iters(max_iter: object, fixed_iters: object) -> None:
    if fixed_iters is not None and (isinstance(fixed_iters, bool) or int(fixed_iters) < 0):
        raise ValueError(f"fixed_iters must be None or an integer >= 0, got {fixed_iters!r}")
    if isinstance(max_iter, bool) or int(max_iter) < 0:
        raise ValueError(f"max_iter must be an integer >= 0, got {max_iter!r}")


def _backend(backend: object, device: torch.device) -> str:
    """The implementation ``backend`` names on ``device`` (``"auto"`` resolved)."""
    if not isinstance(backend, str) or backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    if backend == "auto":
        if device.type == "cuda" and _triton.available(device):
            return "triton"
        return "native" if device.type == "cpu" else "torch"
    if backend == "triton" and not _triton.available(device):
        why = (
            "the 'triton' package is not installed"
            if _triton.triton is None
            else f"the tensors are on {device} (use CUDA tensors, or set TRITON_INTERPRET=1 to "
            "run the kernel on the CPU in Triton's interpreter)"
        )
        raise ValueError(f"backend='triton' cannot run here: {why}")
    if backend == "native" and device.type != "cpu":
        raise ValueError(
            f"backend='native' is the CPU kernel; the tensors are on {device} (use 'triton' or "
            "'torch' there)"
        )
    return backend


# -- public API ------------------------------------------------------------------------------
def solve_batch(
    v: Tensor,
    utilities: Tensor,
    beta: float | Tensor,
    mask: Tensor | None = None,
    caps: float | Tensor | None = None,
    *,
    tol: float | None = None,
    max_iter: int = 100,
    fixed_iters: int | None = None,
    check_inputs: bool = True,
    backend: str = "auto",
) -> BatchSolution:
    """Solve ``B`` common-agency games at once by batched safeguarded Newton.

    Row ``b`` is the game with agent utility ``v[b]``, principals' utilities
    ``utilities[b]`` and temperature ``beta[b]``: the agent plays
    ``pi ∝ exp((v + sum_i tau_i) / beta)`` and at equilibrium every principal pays
    ``tau_i = clip(u_i - c_i, 0, cap_i)``, with thresholds ``c`` solving the threshold system
    ``G(c) = 0`` (design note, facts 2-4; :class:`cage_games.ThresholdSystem` is the
    single-game reference). No Python loop runs over the batch.

    Parameters
    ----------
    v : Tensor, shape (B, n)
        Agent utility in utility units. ``-inf`` entries are allowed and mean "masked" (the
        KL case ``v = beta * log p0`` has ``-inf`` where ``p0 = 0``); NaN and ``+inf`` are
        errors.
    utilities : Tensor, shape (B, m, n)
        Principals' utilities ``u_i`` (in alignment ``w_i * r_i``); finite everywhere, also
        on masked actions (their values there are ignored). Same dtype and device as ``v``.
    beta : float or Tensor of shape (B,)
        Temperatures, ``> 0``. (``beta = 0`` is a menu auction: not supported here.)
    mask : Tensor of bool, shape (B, n), optional
        ``True`` = the action is allowed, ``False`` = masked: a masked action gets probability
        0 and ``log_policy = -inf``, whatever the transfers. Combined (AND) with ``v > -inf``.
        Every row must allow at least one action.
    caps : float or Tensor of shape (m,) or (B, m), optional
        Upper bounds on transfers in utility units, ``> 0``; ``inf`` = uncapped (default).
    tol : float, optional
        Tolerance on the residual ``max_i |G_i| / beta``. Default: ``1e-11`` in float64 and
        ``1e-5`` in float32, raised for a row whose utilities are large compared with its
        temperature to ``16 eps max_i,a |u_i(a)| / beta`` (``eps`` the dtype's machine
        epsilon), the rounding floor of ``G`` in that dtype: in float32 that happens once
        ``max |u| > 5 beta``. A given ``tol`` is used as it is for every row.
    max_iter : int
        Iteration cap in tolerance mode (each iteration is one trial evaluation).
    fixed_iters : int, optional
        Run exactly this many iterations and never read a tensor on the host inside the loop
        (capturable in a CUDA graph; rows that converge earlier are frozen). ``None``
        (default) stops when every row has converged, reading one boolean per iteration.
    check_inputs : bool
        Validate values (NaN, ``+inf``, ``beta > 0``, caps, rows with every action masked).
        These checks read a few booleans on the host; pass ``False`` for graph capture. Shape,
        dtype and device checks always run (they cost nothing). Unchecked rows with every
        action masked come back with ``log_policy = -inf``, thresholds 0, residual ``inf`` and
        ``success = False`` rather than NaN.
    backend : {"auto", "triton", "native", "torch"}
        The implementation. ``"triton"``: one fused GPU kernel launch for the whole solve
        (:mod:`cage_games.torch._triton`; CUDA tensors, or CPU tensors under
        ``TRITON_INTERPRET=1``); ``"native"``: the fused C++ CPU kernel; ``"torch"``: plain
        torch operations (any device). ``"auto"`` (default) takes ``"triton"`` on CUDA when
        triton is installed, ``"native"`` on the CPU (which itself falls back to torch
        operations without a compiler) and ``"torch"`` elsewhere. All follow the one method
        of :mod:`cage_games._newton_spec`.

    Returns
    -------
    BatchSolution
        ``log_policy`` (B, n), ``thresholds`` (B, m), ``residual`` (B,), ``nit`` (B,),
        ``success`` (B,).

    Raises
    ------
    TypeError, ValueError
        Naming the offending argument: wrong types or shapes, mismatched devices or dtypes,
        NaN or infinite values, ``beta <= 0``, ``caps <= 0``, a row with every action masked.

    Notes
    -----
    Algorithm (scaled units ``gamma = c / beta``; every decision is a per-row mask, no Python
    loop runs over the batch; details and measurements in ``docs/torch_backend.rst``):

    1. Start at ``gamma_i = E_{p0}[u_i] / beta + 1`` with ``p0 = softmax(v / beta)``, the
       exact root when nobody pays, projected into the existence box
       ``[min u_i / beta, max u_i / beta + 1]`` (fact 3).
    2. Newton on the residual in log form, the numpy solver's
       :meth:`cage_games.ThresholdSystem.evaluate_log`: ``F_i = log(s_i / (1 + o_i))`` (or
       ``s_i / (1 + o_i) - 1`` above 1) with ``s_i = E_pi[(gamma_i - r_i)_+]`` and
       ``o_i = E_pi[(r_i - gamma_i - kappa_i)_+]``, which has the roots of ``G`` and does not
       creep where a principal pays for a dominant action (``G_i`` flat near ``-1``).
       Analytic Jacobian; a singular one gives a Levenberg-Marquardt direction.
    3. Step shortened to stay inside the box (backed off the faces), then projected, and
       accepted when ``||F||^2`` decreases by the Armijo factor (backtracking, Nocedal &
       Wright, *Numerical Optimization*, 2nd ed., sections 3.1 and 11.2).
    4. After 4 halvings a row runs a Gauss-Seidel sweep (bracketed 1-D roots, one principal at
       a time); a row not converged after 30 evaluations restarts with a temperature
       continuation from ``max(beta, spread of u)`` down to its ``beta``. Rows that meet
       ``tol`` are frozen; rows whose sweeps stop making progress are declared stalled.

    Each iteration evaluates one trial point per running row: a log-sum-exp over the ``n``
    actions and ``5 m + 2 m^2`` expectations. On a CPU with a C++ compiler they come from a
    fused kernel that reads the utilities once per evaluation, and the Newton phase runs
    inside that library (see :mod:`cage_games.torch._native`; it is compiled on first use, in
    about a second, per dtype, ``m`` and caps); elsewhere (GPU, or
    ``CAGE_GAMES_TORCH_FUSED=0``) from torch operations. In tolerance mode the loop reads a
    few flags per iteration and restricts the work to the rows still running. With
    ``fixed_iters`` it reads nothing on the host inside the loop.

    Examples
    --------
    >>> import torch
    >>> from cage_games.torch import solve_batch
    >>> v = torch.zeros(2, 3, dtype=torch.float64)
    >>> u = torch.tensor([[[0.0, 1.0, 2.0]], [[2.0, 0.0, 0.0]]], dtype=torch.float64)
    >>> sol = solve_batch(v, u, beta=1.0)
    >>> bool(sol.success.all()), tuple(sol.log_policy.shape)
    (True, (2, 3))
    """
    v = _tensor(v, "v")
    utilities = _tensor(utilities, "utilities")
    if v.ndim != 2:
        raise ValueError(f"v must have shape (B, n), got {tuple(v.shape)}")
    if utilities.ndim != 3:
        raise ValueError(f"utilities must have shape (B, m, n), got {tuple(utilities.shape)}")
    B, n = v.shape
    if utilities.shape[0] != B or utilities.shape[2] != n:
        raise ValueError(
            f"utilities has shape {tuple(utilities.shape)} but v has shape {(B, n)}: "
            "utilities must be (B, m, n) with the same B and n"
        )
    m = utilities.shape[1]
    if B == 0 or n == 0 or m == 0:
        raise ValueError(f"empty batch: B={B}, n={n}, m={m} must all be >= 1")
    if utilities.device != v.device:
        raise ValueError(f"utilities is on {utilities.device} but v is on {v.device}")
    if utilities.dtype != v.dtype:
        raise TypeError(
            f"utilities has dtype {utilities.dtype} but v has {v.dtype}; give both the same dtype"
        )
    dt = _UPCAST.get(v.dtype, v.dtype)
    if dt not in _DEFAULT_TOL:
        raise TypeError(f"v has unsupported dtype {v.dtype}; use float32 or float64")
    device = v.device
    if mask is not None:
        _check_mask(mask, (B, n), device, "v")
    _check_iters(max_iter, fixed_iters)
    default_tol = tol is None
    if tol is None:
        tol = _DEFAULT_TOL[dt]
    elif not (isinstance(tol, numbers.Real) and math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a finite number > 0, got {tol!r}")
    tol = float(tol)
    bk = _backend(backend, device)
    bt = _beta(beta, B, device, dt, check_inputs)
    cap = _caps(caps, B, m, device, dt, check_inputs)
    v = v.to(dt)
    u = utilities.to(dt).contiguous()
    allowed = None  # v > -inf (and mask), formed only where needed
    if mask is not None:
        allowed = (v > -math.inf) & mask
    if not check_inputs:
        # Rows without any allowed action are solved as if every action were allowed (finite
        # numbers, no NaN) and reported as failed below. No host read here: this mode must be
        # capturable in a CUDA graph.
        if allowed is None:
            allowed = v > -math.inf
        empty = ~allowed.any(-1)
        e = empty.unsqueeze(-1)
        allowed = allowed | e
        v = torch.where(e, 0.0, v)
    vm = v.contiguous() if allowed is None else torch.where(allowed, v, -math.inf)
    if bk == "triton":
        return _solve_triton(
            vm, u, torch.ones_like(bt.reshape(B)), bt.reshape(B), cap, tol, default_tol,
            fixed_iters if fixed_iters is not None else int(max_iter),
            "tolerance" if fixed_iters is None else "fixed", check_inputs, v, utilities, mask,
            None if check_inputs else empty,
        )  # fmt: skip
    data, gamma0, flags = K.setup(u, vm, bt, cap, allowed, fused=bk == "native")
    if check_inputs:
        if flags is None or mask is not None:  # (the kernel sees v only where allowed)
            vmax = v.amax(-1)  # NaN if the row has a NaN
            bad_v = ~(vmax < math.inf)
        else:
            bad_v = (flags & 2) != 0
        if flags is None:
            # (row sums: a NaN or an infinity in u makes them non-finite; an overflow only
            # triggers the exact scan below, which finds nothing)
            bad_u = ~torch.isfinite(u.sum(1)).all(-1)
        else:
            bad_u = (flags & 1) != 0
        if allowed is not None:
            empty = ~allowed.any(-1)
        elif flags is not None and data.vmax0 is not None:
            empty = data.vmax0 == -math.inf
        else:
            empty = vmax == -math.inf
        _raise_bad_values(v, utilities, empty, bad_v.any(), bad_u.any())
    tol_t = torch.full((B,), tol, dtype=dt, device=device)
    if default_tol:
        scale = torch.maximum(data.umax.abs(), data.umin.abs()).amax(-1) / bt.squeeze(-1)
        tol_t = torch.maximum(tol_t, 16 * torch.finfo(dt).eps * scale)
    st, out = K.newton(data, gamma0, tol_t, max_iter=int(max_iter), fixed_iters=fixed_iters)
    thresholds, G, log_policy = K.finish(data, st, sync=fixed_iters is None, out=out)
    residual = G.abs().amax(-1)
    if not check_inputs:
        e = empty.unsqueeze(-1)
        log_policy = torch.where(e, -math.inf, log_policy)
        thresholds = torch.where(e, 0.0, thresholds)
        residual = torch.where(empty, math.inf, residual)
    residual = torch.nan_to_num(residual, nan=math.inf)
    return BatchSolution(
        log_policy=log_policy,
        thresholds=thresholds,
        residual=residual,
        nit=st.nit,
        success=residual <= tol_t,
        tol=tol_t,
        mode="tolerance" if fixed_iters is None else "fixed",
        backend="native" if data.kern is not None else "torch",
    )


def _check_values(v: Tensor, utilities: Tensor, allowed: Tensor) -> None:
    """The value checks of :func:`solve_batch` with torch operations (a few host reads)."""
    bad_v = ~(v.amax(-1) < math.inf).all()
    bad_u = ~torch.isfinite(utilities.sum(1)).all()
    _raise_bad_values(v, utilities, ~allowed.any(-1), bad_v, bad_u)


def _raise_bad_values(v: Tensor, utilities: Tensor, empty: Tensor, bad_v: Tensor, bad_u: Tensor
                      ) -> None:
    """One host read of three flags; then the error that names the problem, if any."""
    any_v, any_empty, any_u = torch.stack([bad_v, empty.any(), bad_u]).tolist()
    if any_v:
        _check_finite(v, "v", allow_neg_inf=True)
    if any_empty:
        rows = empty.nonzero().squeeze(1)[:5].tolist()
        raise ValueError(
            f"mask (combined with v > -inf) excludes every action in rows {rows}: each game "
            "needs at least one allowed action"
        )
    if any_u:
        _check_finite(utilities, "utilities")


def _solve_triton(
    lp: Tensor, u: Tensor, vs: Tensor, beta: Tensor, cap: Tensor | None, tol: float,
    scale_tol: bool, budget: int, mode: str, check: bool, v: Tensor, utilities: Tensor,
    mask: Tensor | None, empty: Tensor | None, target_kl: Tensor | None = None,
    caps_relative: bool = False, hint: Tensor | None = None,
) -> BatchSolution:
    """:func:`solve_batch` / :func:`solve_batch_kl` by the fused Triton kernel."""
    B = lp.shape[0]
    if check:
        allowed = lp > -math.inf
        if mask is not None:
            allowed = allowed & mask
        _check_values(v, utilities, allowed)
    tol_t = torch.full((B,), tol, dtype=lp.dtype, device=lp.device)
    r = _triton.solve(
        lp.contiguous(), u.contiguous(), vs.contiguous(), beta.contiguous(), cap, tol_t,
        max_iter=budget, scale_tol=scale_tol, target_kl=target_kl, caps_relative=caps_relative,
        beta_hint=hint,
    )  # fmt: skip
    log_policy, thresholds = r["log_policy"], r["thresholds"]
    residual = torch.nan_to_num(r["residual"], nan=math.inf)
    if empty is not None:  # unchecked rows without any allowed action: failed, no NaN
        log_policy = torch.where(empty.unsqueeze(-1), -math.inf, log_policy)
        thresholds = torch.where(empty.unsqueeze(-1), 0.0, thresholds)
        residual = torch.where(empty, math.inf, residual)
    return BatchSolution(
        log_policy=log_policy, thresholds=thresholds, residual=residual, nit=r["nit"].long(),
        success=residual <= r["tol"], tol=r["tol"], mode=mode, backend="triton",
        beta=r["beta"], kl=r["kl"],
        kl_reached=None if target_kl is None else (r["status"] & 8) == 0,
    )  # fmt: skip


def solve_batch_kl(
    logits: Tensor,
    utilities: Tensor,
    beta: float | Tensor | None = None,
    mask: Tensor | None = None,
    caps: float | Tensor | None = None,
    *,
    target_kl: float | Tensor | None = None,
    beta_hint: Tensor | None = None,
    caps_unit: str = "utility",
    tol: float | None = None,
    max_iter: int = 100,
    fixed_iters: int | None = None,
    check_inputs: bool = True,
    backend: str = "auto",
) -> BatchSolution:
    """The KL-regularised (LLM) case: ``v = beta * log_softmax(logits)`` over allowed actions.

    The agent then plays ``pi ∝ p0 * exp(sum_i tau_i / beta)`` with ``p0 = softmax(logits)``
    restricted to the allowed actions and renormalised: the maximiser of
    ``E_pi[sum_i tau_i] - beta KL(pi || p0)`` (design note, sections 1 and 6).

    Parameters
    ----------
    logits : Tensor, shape (B, n)
        Reference-model logits or log-probabilities over the candidate actions (any additive
        constant per row is irrelevant). ``-inf`` = masked; NaN and ``+inf`` are errors.
    utilities, mask, caps, tol, max_iter, fixed_iters, check_inputs, backend
        As in :func:`solve_batch` (``utilities[b, i] = w_i * normalised reward_i``).
    beta : float or Tensor of shape (B,), optional
        The temperature (the strength of the tilt: only ``u / beta`` matters). Give either
        ``beta`` or ``target_kl``.
    target_kl : float or Tensor of shape (B,), optional
        Target-KL mode: per row, search the temperature whose equilibrium policy has
        ``KL(pi || p0) = target_kl`` nats (:mod:`cage_games.torch._klsearch`, the same search
        on every backend; inside the kernel's single launch with ``backend="triton"``). The
        result's ``beta`` holds the strengths found, ``kl`` the KL reached and
        ``kl_reached`` whether it is within 3 % of the target.
    beta_hint : Tensor of shape (B,), optional
        Target-KL mode: where to start each row's search (for example the strength the row
        needed at the previous decoding step); NaN or a non-positive entry: no hint.
    caps_unit : {"utility", "beta"}
        The unit of ``caps``: utility units (default), or units of each row's temperature
        (``tau_i <= caps_i * beta``: principal ``i`` can multiply a token's probability by at
        most ``exp(caps_i)`` whatever the strength, which is what a cap means in target-KL
        mode).

    Returns
    -------
    BatchSolution
        Its ``log_policy`` can replace the next-token scores (``-inf`` outside the allowed
        candidates); ``beta`` and ``kl`` are filled.

    Examples
    --------
    >>> import torch
    >>> from cage_games.torch import solve_batch_kl
    >>> logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    >>> reward = torch.tensor([[[0.0, 0.0, 3.0, 0.0]]])
    >>> sol = solve_batch_kl(logits, reward, beta=1.0)
    >>> bool(sol.policy[0, 2] > torch.softmax(logits, -1)[0, 2])
    True
    >>> sol = solve_batch_kl(logits, reward, target_kl=0.2)
    >>> abs(float(sol.kl[0]) / 0.2 - 1) < 0.035
    True
    """
    lg = _tensor(logits, "logits")
    if lg.ndim != 2:
        raise ValueError(f"logits must have shape (B, n), got {tuple(lg.shape)}")
    B, n = lg.shape
    dt = _UPCAST.get(lg.dtype, lg.dtype)
    if dt not in _DEFAULT_TOL:
        raise TypeError(f"logits has unsupported dtype {lg.dtype}; use float32 or float64")
    if (beta is None) == (target_kl is None):
        raise ValueError(
            "give exactly one of beta (a fixed temperature) and target_kl (the KL per token "
            f"to reach); got beta={beta!r}, target_kl={target_kl!r}"
        )
    if caps_unit not in ("utility", "beta"):
        raise ValueError(f"caps_unit must be 'utility' or 'beta', got {caps_unit!r}")
    hint = None
    if beta_hint is not None:
        if target_kl is None:
            raise ValueError("beta_hint only applies in target-KL mode (give target_kl)")
        hint = _tensor(beta_hint, "beta_hint")
        if hint.shape != (B,) or hint.device != lg.device:
            raise ValueError(f"beta_hint must have shape ({B},) on {lg.device}, got "
                             f"{tuple(hint.shape)} on {hint.device}")  # fmt: skip
        hint = hint.to(dt)
    bk = _backend(backend, lg.device)
    if bk == "triton":
        return _kl_triton(lg, utilities, beta, target_kl, mask, caps, tol, max_iter,
                          fixed_iters, check_inputs, caps_unit == "beta", hint)  # fmt: skip
    if check_inputs:
        _check_finite(lg, "logits", allow_neg_inf=True)
    tgt = None
    if target_kl is not None:
        tgt = _beta(target_kl, B, lg.device, dt, check_inputs).reshape(B)
        bt = torch.ones((B, 1), dtype=dt, device=lg.device)
    else:
        bt = _beta(beta, B, lg.device, dt, check_inputs)
    lg0 = lg
    lg = lg.to(dt)
    allowed = lg > -math.inf
    if mask is not None:
        _check_mask(mask, (B, n), lg.device, "logits")
        allowed = allowed & mask
    empty = ~allowed.any(-1, keepdim=True)
    if check_inputs and bool(empty.any()):
        rows = empty.squeeze(1).nonzero().squeeze(1)[:5].tolist()
        raise ValueError(
            f"mask (combined with logits > -inf) excludes every action in rows {rows}: each "
            "game needs at least one allowed action"
        )
    # Rows with no allowed action (possible only unchecked) stay all -inf: solve_batch reports
    # them as failed, without NaN.
    lp = torch.log_softmax(torch.where(empty, 0.0, torch.where(allowed, lg, -math.inf)), dim=-1)
    lp = torch.where(allowed, lp, -math.inf)
    utilities = _tensor(utilities, "utilities")
    if _UPCAST.get(utilities.dtype, utilities.dtype) != dt:
        raise TypeError(
            f"utilities has dtype {utilities.dtype} but logits has {lg0.dtype}; give both the "
            "same dtype"
        )
    opts = {"tol": tol, "max_iter": max_iter, "fixed_iters": fixed_iters,
            "check_inputs": check_inputs}  # fmt: skip
    u_dt = utilities.to(dt)

    if caps is not None and caps_unit == "beta":
        caps = _caps(caps, B, u_dt.shape[1] if u_dt.ndim == 3 else 1, lg.device, dt,
                     check_inputs)  # fmt: skip

    def solve(b: Tensor, rows: Tensor | None = None) -> BatchSolution:
        al, lq, uu, cp = allowed, lp, u_dt, caps
        if rows is not None:
            al, lq, uu = al[rows], lq[rows], uu[rows]
            if isinstance(cp, Tensor) and cp.ndim == 2:
                cp = cp[rows]
        if cp is not None and caps_unit == "beta":
            cp = cp * b  # (rows, m) caps in utility units at this temperature
        sol = solve_batch(torch.where(al, b * lq, -math.inf), uu, b.squeeze(-1), None, cp,
                          backend=bk, **opts)  # fmt: skip
        # the search's later solves differ from the first only by the (positive, finite)
        # temperatures it computes: the first call's checks cover them
        opts["check_inputs"] = False
        return sol

    if tgt is None:
        sol = solve(bt)
        return _with_kl(sol, lp, bt.reshape(B), None)
    return _kl_search(solve, lp, u_dt, allowed, tgt, hint)


def _kl_triton(
    lg: Tensor, utilities: object, beta: object, target_kl: object, mask: Tensor | None,
    caps: object, tol: float | None, max_iter: int, fixed_iters: int | None, check: bool,
    caps_relative: bool = False, hint: Tensor | None = None,
) -> BatchSolution:
    """:func:`solve_batch_kl` on the Triton kernel, with as few host reads and launches as
    possible (one read for all the value checks; the kernel normalises the logits itself)."""
    B, n = lg.shape
    dt = _UPCAST.get(lg.dtype, lg.dtype)
    u = _tensor(utilities, "utilities")
    if u.ndim != 3 or u.shape[0] != B or u.shape[2] != n:
        raise ValueError(f"utilities must have shape (B, m, n) = ({B}, m, {n}), got "
                         f"{tuple(u.shape)}")  # fmt: skip
    if _UPCAST.get(u.dtype, u.dtype) != dt:
        raise TypeError(f"utilities has dtype {u.dtype} but logits has {lg.dtype}; give both "
                        "the same dtype")  # fmt: skip
    if u.device != lg.device:
        raise ValueError(f"utilities is on {u.device} but logits is on {lg.device}")
    if mask is not None:
        _check_mask(mask, (B, n), lg.device, "logits")
    _check_iters(max_iter, fixed_iters)
    if tol is not None and not (isinstance(tol, numbers.Real) and math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a finite number > 0, got {tol!r}")
    target = None
    if target_kl is not None:
        target = _beta(target_kl, B, lg.device, dt, False).reshape(B)
        bt = torch.ones(B, dtype=dt, device=lg.device)
        scalars = target
    else:
        bt = _beta(beta, B, lg.device, dt, False).reshape(B)
        scalars = bt
    u = u.to(dt).contiguous()
    cap = _caps(caps, B, u.shape[1], lg.device, dt, False)
    lp = lg.to(dt)
    if mask is not None:
        lp = torch.where(mask, lp, -math.inf)
    empty = (lp == -math.inf).all(-1)
    if check:
        flags = [torch.isnan(lp).any(), torch.isposinf(lp).any(), empty.any(),
                 ~torch.isfinite(u.sum(1)).all(), ~(torch.isfinite(scalars) & (scalars > 0)).all()]
        if cap is not None:
            flags += [torch.isnan(cap).any(), ~(cap > 0).all()]
        bad = torch.stack(flags).tolist()  # the one host read of the checks
        if bad[0] or bad[1]:
            _check_finite(lp, "logits", allow_neg_inf=True)
        if bad[2]:
            rows = empty.nonzero().squeeze(1)[:5].tolist()
            raise ValueError(
                f"mask (combined with logits > -inf) excludes every action in rows {rows}: "
                "each game needs at least one allowed action"
            )
        if bad[3]:
            _check_finite(u, "utilities")
        if bad[4]:
            name = "target_kl" if target is not None else "beta"
            raise ValueError(f"{name} must be finite and > 0 in every row")
        if cap is not None and (bad[5] or bad[6]):
            raise ValueError("caps must be > 0 and not NaN (use inf for an uncapped principal)")
    return _solve_triton(
        lp, u, bt, bt, cap, _DEFAULT_TOL[dt] if tol is None else float(tol), tol is None,
        fixed_iters if fixed_iters is not None else int(max_iter),
        "tolerance" if fixed_iters is None else "fixed", False, lp, u, None,
        None if check else empty, target_kl=target, caps_relative=caps_relative, hint=hint,
    )  # fmt: skip


def _kl_of(log_policy: Tensor, lp: Tensor) -> Tensor:
    """``KL(pi || p0)`` per row from the two log-distributions (``-inf`` where masked)."""
    pi = log_policy.exp()
    d = torch.where(pi > 0, log_policy - lp, torch.zeros_like(lp))
    return (pi * d).sum(-1).clamp_min(0.0)


def _with_kl(sol: BatchSolution, lp: Tensor, beta: Tensor, reached: Tensor | None
             ) -> BatchSolution:
    return BatchSolution(
        log_policy=sol.log_policy, thresholds=sol.thresholds, residual=sol.residual,
        nit=sol.nit, success=sol.success, tol=sol.tol, mode=sol.mode, backend=sol.backend,
        beta=beta, kl=_kl_of(sol.log_policy, lp), kl_reached=reached,
    )  # fmt: skip


def _kl_search(solve, lp: Tensor, u: Tensor, allowed: Tensor, target: Tensor,
               hint: Tensor | None = None) -> BatchSolution:
    """The strength search of :mod:`cage_games.torch._klsearch` over the batch (one batched
    solve per round, on the rows still searching); the Triton kernel runs the same per row."""
    S = KL_SEARCH
    B = lp.shape[0]
    a = allowed.unsqueeze(1)
    hi = torch.where(a, u, -math.inf).amax(-1)
    lo = torch.where(a, u, math.inf).amin(-1)
    rng = (hi - lo).amax(-1).clamp_min(S.min_range)
    x_lo = -torch.log(S.weak * rng)
    x_max = x_lo + math.log(S.span)
    x = x_lo.clone()
    if hint is not None:
        ok = hint > 0
        x = torch.where(ok, torch.minimum(torch.maximum(-torch.log(hint.clamp_min(1e-300)),
                                                        x_lo), x_max), x_lo)  # fmt: skip
    ftar = torch.log(target)
    floor = torch.clamp_min(S.zero_rel * target, S.zero_eps * torch.finfo(lp.dtype).eps)

    def fval(sol: BatchSolution, beta: Tensor, rows: Tensor | None = None
             ) -> tuple[BatchSolution, Tensor]:
        lq, ft, fl = (lp, ftar, floor) if rows is None else (lp[rows], ftar[rows], floor[rows])
        sol = _with_kl(sol, lq, beta, None)
        f = torch.where(sol.success, torch.log(torch.maximum(sol.kl, fl)) - ft, -60.0)
        return sol, f

    best, f = fval(solve(torch.exp(-x).unsqueeze(-1)), torch.exp(-x))
    fbest = f.clone()
    nit = best.nit.clone()
    fields = {k: getattr(best, k).clone() for k in ("log_policy", "thresholds", "residual",
                                                    "success", "tol", "kl", "beta")}  # fmt: skip
    nan = torch.full_like(f, math.nan)
    below = f < 0
    xa, fa = torch.where(below, x, nan), torch.where(below, f, nan)
    xb, fb = torch.where(below, nan, x), torch.where(below, nan, f)
    side = torch.zeros(B, dtype=torch.int64, device=lp.device)
    going = (f.abs() > S.rtol) & ~(below & (x >= x_max)) & ~(~below & (x <= x_lo))
    for _ in range(S.max_solves - 1):
        if not bool(going.any()):
            break
        r = going.nonzero().squeeze(1)
        xr, fr = x[r], f[r]
        xar, far, xbr, fbr = xa[r], fa[r], xb[r], fb[r]
        w = xbr - xar
        xf = xar + w * (-far) / (fbr - far)
        xf = torch.minimum(torch.maximum(xf, xar + S.safeguard * w), xbr - S.safeguard * w)
        up = torch.minimum(xr + (-fr / S.slope).clamp_min(S.min_step), x_max[r])
        down = torch.maximum(xr - (fr / S.slope).clamp_min(S.min_step), x_lo[r])
        both = ~torch.isnan(far) & ~torch.isnan(fbr)
        xn = torch.where(both, xf, torch.where(fr < 0, up, down))
        beta_n = torch.exp(-xn)
        sol, fn = fval(solve(beta_n.unsqueeze(-1), r), beta_n, r)
        nit[r] += sol.nit
        better = fn.abs() < fbest[r].abs()
        idx = r[better]
        for k in fields:
            fields[k][idx] = getattr(sol, k)[better]
        fbest[idx] = fn[better]
        bl = fn < 0
        sr = side[r]
        fb[r] = torch.where(bl & (sr == -1), fbr * 0.5, fbr)
        fa[r] = torch.where(~bl & (sr == 1), far * 0.5, far)
        xa[r] = torch.where(bl, xn, xa[r])
        fa[r] = torch.where(bl, fn, fa[r])
        xb[r] = torch.where(bl, xb[r], xn)
        fb[r] = torch.where(bl, fb[r], fn)
        side[r] = torch.where(bl, -1, 1)
        x[r], f[r] = xn, fn
        stop = (fn.abs() <= S.rtol) | (torch.isnan(fb[r]) & (xn >= x_max[r]))
        stop = stop | (torch.isnan(fa[r]) & (xn <= x_lo[r]))
        going[r] = ~stop
    return BatchSolution(
        log_policy=fields["log_policy"], thresholds=fields["thresholds"],
        residual=fields["residual"], nit=nit, success=fields["success"], tol=fields["tol"],
        mode=best.mode, backend=best.backend, beta=fields["beta"], kl=fields["kl"],
        kl_reached=(fbest.abs() <= S.rtol) | (fbest > 0),
    )  # fmt: skip


