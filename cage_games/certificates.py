"""Independent certificates: each principal's best response and the Nash gap.

Nothing here uses the threshold formulas that the solvers use, so these functions check them.

**Best response (design note fact 1).** Fix the other principals' transfers and let
``q = pi(tau_i = 0)`` be the agent's response without principal ``i``. A target policy ``p``
(supported where ``q`` is) is induced by ``tau_i = beta log(p / q) + k``; the cheapest
non-negative choice sets ``min_a tau_i(a) = 0``. Principal ``i``'s payoff is then

.. math::  U_i(p) = E_p[u_i] - \\beta\\,KL(p \\| q) + \\beta \\min_a \\log(p(a) / q(a)),

concave in ``p``. Dividing by ``beta`` and writing ``t`` for the minimum, the best response is
the exponential-cone program

.. math::  \\max_{p \\in \\Delta, t}\\ \\sum_a p_a (r_a + \\log q_a) + \\sum_a H(p_a) + t
           \\quad \\text{s.t.}\\quad \\log p_a - \\log q_a \\ge t,

with ``r = u_i / beta`` and ``H(x) = -x log x``. Writing ``-KL`` as entropy plus a linear term
keeps the program well scaled when ``q`` has entries near ``1e-300`` (a stubborn reference).

**Two-sided bounds.** The conic solver's objective value is not trusted. The lower bound is
the exact payoff (computed by the forward model, the agent's logit response) of the transfers
recovered from the solver's ``p``, or of the current transfers if better. The upper bound is
the Lagrange dual function at the solver's multipliers ``lambda`` of the constraints: for any
``lambda`` in the simplex (weak duality)

.. math::  \\max_p U_i / \\beta \\le g(\\lambda)
           = \\max_{p \\in \\Delta} \\sum_a p_a (r_a + \\log q_a)
           + \\sum_a H(p_a) + \\sum_a \\lambda_a (\\log p_a - \\log q_a),

and the inner maximum is separable: for a multiplier ``mu`` of ``sum p = 1`` each
``x_a = log p_a`` solves ``x_a - K_a = lambda_a e^{-x_a}`` with ``K_a = r_a + log q_a - 1 - mu``
(a Lambert-W equation, solved by a monotone Newton iteration in ``log(x_a - K_a)``), and
``mu`` is the root of ``sum_a e^{x_a(mu)} = 1`` (bracketed). So the gap ``upper - current`` is a
certified bound on principal ``i``'s possible improvement, up to floating-point rounding.

**Caps.** With a cap the inducible policies are no longer a convex set. Every local maximum of
``U_i`` over the box ``[0, cap]^n`` satisfies KKT, hence has the clipped-threshold form
``tau_i = clip(u_i - c, 0, cap)``; a global one-dimensional search over ``c`` (dense grid plus
bounded refinement of every grid-local maximum) is then an exact best response up to the grid
resolution. That certificate is reported as ``method="threshold-search"``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

from cage_games.game import CommonAgencyGame
from cage_games.result import format_record
from cage_games.thresholds import log_softmax

__all__ = ["BestResponse", "NashGap", "best_response", "nash_gap", "payoffs", "policy"]

_LAMBDA_ACTIVE = 1e-7  # drop multipliers of clearly non-binding constraints before the dual
_GRID = 2001


# -- the forward model: the agent's response and the principals' payoffs ----------------------
def _check_transfers(game: CommonAgencyGame, transfers: object) -> np.ndarray:
    m, n = game.n_principals, game.n_actions
    try:
        tau = np.array(transfers, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError("transfers must be an (m, n) array of real numbers") from None
    if tau.shape != (m, n):
        raise ValueError(
            f"transfers must have shape (m, n) = ({m}, {n}), one schedule per principal, "
            f"got {tau.shape}"
        )
    if not np.isfinite(tau).all():
        raise ValueError("transfers must be finite (no NaN or inf)")
    if (tau < 0).any():
        raise ValueError("transfers must be >= 0: a principal cannot charge the agent")
    over = tau > game.caps[:, None] * (1 + 1e-12)
    if over.any():
        i = int(np.argwhere(over)[0, 0])
        raise ValueError(f"transfers of principal {game.names[i]!r} exceed its cap {game.caps[i]}")
    return tau


def _log_policy(game: CommonAgencyGame, total: np.ndarray) -> np.ndarray:
    v = game.agent.utility
    logits = np.where(game.agent.support, (v + total) / game.beta, -np.inf)
    return log_softmax(logits)


def policy(game: CommonAgencyGame, transfers: np.ndarray) -> np.ndarray:
    """The agent's logit response ``pi ∝ exp((v + sum_i tau_i) / beta)`` to ``transfers``.

    Parameters
    ----------
    game : CommonAgencyGame
        A game with ``beta > 0``.
    transfers : array_like, shape (m, n)
        Non-negative transfer schedules.
    """
    _require_quantal(game)
    tau = _check_transfers(game, transfers)
    return np.exp(_log_policy(game, tau.sum(axis=0)))


def payoffs(game: CommonAgencyGame, transfers: np.ndarray) -> np.ndarray:
    """Principals' net payoffs ``E_pi[u_i - tau_i]`` when the agent responds to ``transfers``."""
    tau = _check_transfers(game, transfers)
    return (game.utilities - tau) @ policy(game, tau)


def _require_quantal(game: CommonAgencyGame) -> None:
    if not isinstance(game, CommonAgencyGame):
        raise TypeError(f"game must be a cage_games.CommonAgencyGame, got {type(game).__name__}")
    if game.beta == 0:
        raise NotImplementedError(
            "certificates for beta = 0 (menu auctions) are not available from this function"
        )


# -- records -----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False, repr=False)
class BestResponse:
    """Principal ``i``'s best response to the others' transfers, with two-sided bounds.

    Attributes
    ----------
    principal : int
        Index of the principal.
    payoff : float
        Exact payoff of ``transfer`` (evaluated by the forward model): a lower bound on the
        best-response payoff.
    upper_bound : float
        A certified upper bound on the best-response payoff (Lagrange dual bound; for capped
        principals the best value of the global threshold search).
    current_payoff : float
        Payoff of the principal's current transfers.
    transfer : ndarray, shape (n,)
        The recovered best-response schedule (``min = 0``).
    policy : ndarray, shape (n,)
        The agent's response to it.
    method : str
        ``"conic"`` (cvxpy, exponential cone) or ``"threshold-search"`` (capped principal).
    solver : str
        The conic solver used (``"CLARABEL"``, ...) or ``"grid+brent"``.
    status : str
        The solver's status.
    """

    principal: int
    payoff: float
    upper_bound: float
    current_payoff: float
    transfer: np.ndarray
    policy: np.ndarray
    method: str
    solver: str
    status: str

    @property
    def improvement(self) -> float:
        """Certified bound on the possible improvement, ``upper_bound - current_payoff``."""
        return self.upper_bound - self.current_payoff

    def __repr__(self) -> str:
        return format_record(self)


@dataclass(frozen=True, eq=False, repr=False)
class NashGap:
    """The Nash gap (exploitability) of a transfer profile, OpenSpiel ``nash_conv`` style.

    Attributes
    ----------
    total : float
        ``sum_i max(0, upper_bound_i - current_i)``: a certified upper bound on how much the
        principals together could gain by deviating. Zero at an exact equilibrium.
    per_principal : ndarray, shape (m,)
        Each principal's certified improvement bound (clipped at 0).
    lower : ndarray, shape (m,)
        Improvements actually achieved by the recovered best responses (clipped at 0).
    best_responses : tuple of BestResponse
        The records behind the numbers.
    """

    total: float
    per_principal: np.ndarray
    lower: np.ndarray
    best_responses: tuple[BestResponse, ...] = field(repr=False)

    def __float__(self) -> float:
        return float(self.total)

    def __repr__(self) -> str:
        return format_record(self)


# -- the best response -------------------------------------------------------------------------
def best_response(
    game: CommonAgencyGame, i: int, transfers: np.ndarray, *, solver: str | None = None
) -> BestResponse:
    """Principal ``i``'s best response to the others' transfers, solved independently.

    Uncapped principals: the exponential-cone program of design note fact 1, solved with
    cvxpy (CLARABEL by default), bounded on both sides as described in the module docstring.
    Capped principals: a global one-dimensional search over clipped-threshold schedules.

    Parameters
    ----------
    game : CommonAgencyGame
        A game with ``beta > 0``.
    i : int
        The principal's index.
    transfers : array_like, shape (m, n)
        The current transfer profile; row ``i`` is principal ``i``'s own current schedule.
    solver : str, optional
        A cvxpy solver name supporting the exponential cone (default ``"CLARABEL"``).

    Returns
    -------
    BestResponse
    """
    _require_quantal(game)
    tau = _check_transfers(game, transfers)
    if (
        isinstance(i, bool)
        or not isinstance(i, (int, np.integer))
        or not 0 <= i < game.n_principals
    ):
        raise ValueError(f"i must be a principal index in [0, {game.n_principals}), got {i!r}")
    i = int(i)
    others = tau.sum(axis=0) - tau[i]
    current = float(_payoff_of(game, i, others, tau[i]))
    if np.isfinite(game.caps[i]):
        return _threshold_search(game, i, others, current)
    return _conic(game, i, others, tau[i], current, solver or "CLARABEL")


def _payoff_of(game: CommonAgencyGame, i: int, others: np.ndarray, own: np.ndarray) -> float:
    pi = np.exp(_log_policy(game, others + own))
    return float((game.utilities[i] - own) @ pi)


def _conic(
    game: CommonAgencyGame, i: int, others: np.ndarray, own: np.ndarray, current: float, solver: str
) -> BestResponse:
    import cvxpy as cp

    beta = game.beta
    S = game.agent.support
    logq = _log_policy(game, others)[S]
    u = game.utilities[i][S]
    shift = float(u.max())
    r = (u - shift) / beta  # a constant shift of u does not change the argmax
    k = r.size
    n = game.n_actions
    if k == 1:
        transfer = np.zeros(n)
        pol = np.exp(_log_policy(game, others))
        val = _payoff_of(game, i, others, transfer)
        return BestResponse(
            i,
            val,
            max(val, current),
            current,
            transfer,
            pol,
            "conic",
            "none",
            "trivial (one action)",
        )
    p = cp.Variable(k, nonneg=True)
    t = cp.Variable()
    floor = cp.log(p) - logq >= t
    problem = cp.Problem(
        cp.Maximize(p @ (r + logq) + cp.sum(cp.entr(p)) + t), [cp.sum(p) == 1, floor]
    )
    with warnings.catch_warnings():
        # cvxpy warns when the solver reports "optimal_inaccurate"; that status is kept in the
        # record, and the bounds below never trust the solver's numbers anyway.
        warnings.simplefilter("ignore", UserWarning)
        try:
            problem.solve(solver=solver)
        except cp.error.SolverError:
            with _silenced_stdout():  # SCS's C code prints warnings whatever `verbose` says
                problem.solve(solver="SCS", eps=1e-9, max_iters=200000)
            solver = "SCS"
    status = str(problem.status)
    primals = []
    if p.value is not None:
        ph = np.maximum(np.asarray(p.value, float), 1e-300)
        primals.append(ph)
        primals += [np.maximum(q, 1e-300) for q in _polished(ph, logq, r)]
    # Lower bound: the exact payoff of the recovered transfers (or of the current ones).
    candidates = [(current, own)]
    for ph in primals:
        ratio = np.log(ph) - logq
        transfer = np.zeros(n)
        transfer[S] = beta * (ratio - ratio.min())
        candidates.append((_payoff_of(game, i, others, transfer), transfer))
    payoff, transfer = max(candidates, key=lambda c: c[0])
    # Upper bound: the dual function at several multipliers, each a valid bound (weak duality).
    upper = np.inf
    for k_, ph in enumerate(primals):
        for lam in _multiplier_candidates(ph, logq, r, floor.dual_value if k_ == 0 else None):
            upper = min(upper, beta * _dual_bound(r, logq, lam) + shift)
    pol = np.exp(_log_policy(game, others + transfer))
    return BestResponse(
        i, float(payoff), float(max(upper, payoff)), current, transfer, pol, "conic", solver, status
    )


def _polished(ph: np.ndarray, logq: np.ndarray, r: np.ndarray) -> list[np.ndarray]:
    """Exact active-set solution of the conic program's KKT system (a polishing step).

    The conic solver's ``p`` is accurate in absolute terms only, which is not enough to tell
    which constraints ``log(p/q) >= t`` bind on actions of tiny probability. The program's own
    KKT conditions tell more: off the binding set ``B``, ``log(p_a/q_a) = r_a - 1 - mu``; on
    it, ``log(p_a/q_a) = t`` with multiplier ``lambda_a = p_a (mu + 1 + t - r_a) >= 0``. So
    ``a`` binds iff ``r_a <= t + 1 + mu``: ``B`` is a lower set of ``r``. For a candidate
    ``B`` the two unknowns ``(t, mu)`` solve ``sum p = 1`` and ``sum_B lambda = 1``; the
    candidate is right when the signs are consistent, and bisection over the lower sets finds
    it. Whatever comes out is used only through exact evaluations (payoff of the recovered
    transfers, dual bound), so a wrong answer can weaken the bounds but never falsify them.
    """
    levels = np.unique(r)

    def solve_for(theta: float):
        B = r <= theta
        top_b = float(np.max(logq[B]))
        log_qb = top_b + np.log(np.exp(logq[B] - top_b).sum())
        wq = np.exp(logq[B] - log_qb)
        m_b = float(wq @ r[B])

        def mu_of(t: float) -> float:  # sum_B lambda = 1 is linear in mu for fixed t
            return float(np.exp(-t - log_qb)) - 1.0 - t + m_b

        def e1(t: float) -> float:  # log sum p, with p from (t, mu(t))
            lp = np.where(B, logq + t, r + logq - 1.0 - mu_of(t))
            top = lp.max()
            return float(top + np.log(np.exp(lp - top).sum()))

        hi = -log_qb  # there the binding actions alone carry mass 1: e1 >= 0
        lo = hi - 1.0
        with np.errstate(over="ignore"):
            while e1(lo) > 0 and lo > hi - 1e4:
                lo = hi - 2.0 * (hi - lo)
            if not (e1(lo) <= 0 <= e1(hi)):
                return None, 0
            t = optimize.brentq(e1, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps)
        mu = mu_of(t)
        edge = t + 1.0 + mu
        # -1: B too big (a binding action has a negative multiplier); +1: B too small.
        sign = -1 if np.any(r[B] > edge + 1e-12 * max(1.0, abs(edge))) else 0
        if sign == 0 and np.any(r[~B] < edge - 1e-12 * max(1.0, abs(edge))):
            sign = 1
        lp = np.where(B, logq + t, r + logq - 1.0 - mu)
        lp -= lp.max() + np.log(np.exp(lp - lp.max()).sum())
        return np.exp(lp), sign

    out = []
    lo, hi = 0, levels.size - 1
    for _ in range(2 * int(np.ceil(np.log2(levels.size + 1))) + 2):
        if lo > hi:
            break
        mid = (lo + hi) // 2
        p, sign = solve_for(levels[mid])
        if p is None:
            break
        out.append(p)
        if sign == 0:
            return [p]
        lo, hi = (lo, mid - 1) if sign < 0 else (mid + 1, hi)
    return out[-2:]


def _multiplier_candidates(ph: np.ndarray, logq: np.ndarray, r: np.ndarray, dual: object):
    """Multipliers ``lambda`` in the simplex to evaluate the dual bound at.

    The solver's own duals are only first-order accurate, and ``g`` grows linearly in the
    multipliers of non-binding constraints. The KKT stationarity condition
    ``r_a + log q_a - log p_a - 1 + lambda_a / p_a = mu`` recovers them from the primal
    instead: on the binding set ``B`` (where ``log(p/q)`` attains its minimum)
    ``lambda_a = p_a (kappa - r_a)`` with ``kappa`` fixed by ``sum lambda = 1``; its error is
    second order in the primal error. Several binding-set tolerances are tried.
    """
    out = []
    if dual is not None:
        lam = np.maximum(np.asarray(dual, float).ravel(), 0.0)
        if np.all(np.isfinite(lam)) and lam.sum() > 0:
            out.append(lam / lam.sum())
    ratio = np.log(ph) - logq
    gap = ratio - ratio.min()
    scale = max(1.0, float(np.ptp(ratio)))
    for rel in (1e-10, 1e-8, 1e-6, 1e-4):
        B = gap <= rel * scale
        kappa = (1.0 + ph[B] @ r[B]) / ph[B].sum()
        lam = np.where(B, ph * np.maximum(kappa - r, 0.0), 0.0)
        if lam.sum() > 0:
            out.append(lam / lam.sum())
    return out


@contextlib.contextmanager
def _silenced_stdout():
    """Send file descriptor 1 to /dev/null for the duration (C libraries print there)."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _solve_log_w(L: np.ndarray) -> np.ndarray:
    """Solve ``y + exp(y) = L`` elementwise (``y = log w`` with ``w e^w = e^L``)."""
    y = np.where(L <= 1.0, L, np.log(np.maximum(L, 1.0)))  # h(y) = e^y + y - L >= 0 here
    for _ in range(100):
        ey = np.exp(y)
        h = ey + y - L
        y_new = y - h / (ey + 1.0)  # h convex increasing: Newton from the right is monotone
        if np.all(np.abs(y_new - y) <= 1e-15 * np.maximum(1.0, np.abs(y))):
            return y_new
        y = y_new
    return y


def _dual_bound(r: np.ndarray, logq: np.ndarray, lam: np.ndarray) -> float:
    """``g(lambda)`` of the module docstring, evaluated to machine precision."""
    active = lam > 0
    loglam = np.log(np.where(active, lam, 1.0))

    def x_of(mu: float) -> np.ndarray:
        K = r + logq - 1.0 - mu
        x = K.copy()
        if active.any():
            x[active] = K[active] + np.exp(_solve_log_w(loglam[active] - K[active]))
        return x

    def excess(mu: float) -> float:
        x = x_of(mu)
        top = x.max()
        return top + np.log(np.exp(x - top).sum())

    lo = float(np.max(r + logq)) - 1.0 - 50.0
    hi = lo + 100.0
    while excess(lo) < 0:
        lo -= 2 * (hi - lo)
    while excess(hi) > 0:
        hi += 2 * (hi - lo)
    mu = optimize.brentq(excess, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500)
    x = x_of(mu)
    x -= excess(mu)  # exact normalisation of the last bit
    p = np.exp(x)
    ent = -(p * x)
    return float(p @ (r + logq) + ent.sum() + lam @ (x - logq))


def _threshold_search(
    game: CommonAgencyGame, i: int, others: np.ndarray, current: float
) -> BestResponse:
    u, cap = game.utilities[i], float(game.caps[i])
    S = game.agent.support
    lo, hi = float(u[S].min()) - cap, float(u[S].max())

    def value(c: float) -> float:
        own = np.where(S, np.clip(u - c, 0.0, cap), 0.0)
        return _payoff_of(game, i, others, own)

    grid = np.linspace(lo, hi, _GRID)
    vals = np.array([value(c) for c in grid])
    best_c, best_v = float(grid[np.argmax(vals)]), float(vals.max())
    for j in np.flatnonzero((vals >= np.roll(vals, 1)) & (vals >= np.roll(vals, -1))):
        a, b = grid[max(j - 1, 0)], grid[min(j + 1, _GRID - 1)]
        if b <= a:
            continue
        res = optimize.minimize_scalar(
            lambda c: -value(c),
            bounds=(a, b),
            method="bounded",
            options={"xatol": 1e-12 * max(1.0, abs(a))},
        )
        if -res.fun > best_v:
            best_c, best_v = float(res.x), float(-res.fun)
    transfer = np.where(S, np.clip(u - best_c, 0.0, cap), 0.0)
    payoff = value(best_c)
    if current > payoff:
        payoff = current
    pol = np.exp(_log_policy(game, others + transfer))
    return BestResponse(
        i,
        float(payoff),
        float(payoff),
        current,
        transfer,
        pol,
        "threshold-search",
        "grid+brent",
        "optimal (grid-global, KKT form)",
    )


def nash_gap(
    game: CommonAgencyGame, transfers: np.ndarray, *, solver: str | None = None
) -> NashGap:
    """Certified Nash gap (exploitability) of a transfer profile.

    ``total = sum_i max(0, U_i^BR - U_i)`` where ``U_i^BR`` is bounded from above by each
    principal's :func:`best_response` upper bound. Zero exactly at an equilibrium; computed by
    a method independent of the threshold solvers.

    Parameters
    ----------
    game : CommonAgencyGame
        A game with ``beta > 0``.
    transfers : array_like, shape (m, n)
        Transfer profile to certify, e.g. ``cg.solve(game).transfers``.
    solver : str, optional
        cvxpy solver for the conic programs (default ``"CLARABEL"``).

    Returns
    -------
    NashGap
        ``float(gap)`` is the total; ``gap.per_principal`` the individual bounds.

    Examples
    --------
    >>> import cage_games as cg
    >>> game = cg.CommonAgencyGame(cg.Agent([0.0, 0.0, 1.0], beta=1.0),
    ...                            [cg.Principal([0.0, 2.0, 0.0])])
    >>> float(cg.nash_gap(game, cg.solve(game).transfers)) < 1e-8
    True
    """
    _require_quantal(game)
    tau = _check_transfers(game, transfers)
    brs = tuple(best_response(game, i, tau, solver=solver) for i in range(game.n_principals))
    upper = np.array([max(0.0, b.upper_bound - b.current_payoff) for b in brs])
    lower = np.array([max(0.0, b.payoff - b.current_payoff) for b in brs])
    return NashGap(total=float(upper.sum()), per_principal=upper, lower=lower, best_responses=brs)
