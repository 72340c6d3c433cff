r"""Certificates: each principal's best response and the Nash gap, with two-sided bounds.

Two methods, one primary and one independent cross-check.

**Primary: the threshold search** (``method="threshold"``, any game with ``beta > 0``, with or
without caps; ``O(n log n)``). Fix the other principals' transfers and let ``q`` be the agent's
response without principal ``i``. For a schedule ``tau`` in the box ``[0, cap]^n`` the agent
plays ``p ∝ q exp(tau / beta)`` and principal ``i`` earns ``U(tau) = E_p[u - tau]``, with

.. math::  \partial U / \partial \tau_a = (p_a / \beta)\,(u_a - \tau_a - U - \beta).

A maximiser exists (the box is compact) and satisfies KKT, so it is a clipped threshold
schedule ``tau = clip(u - c, 0, cap)`` with ``c = U^* + beta`` (design note fact 2). Hence
``U^* = max_c f(c)`` with ``f(c) = U(clip(u - c, 0, cap))``. Write ``A_c`` for the actions paid
strictly between 0 and the cap. Between the breakpoints ``{u_a, u_a - cap}`` the sets are fixed
and differentiating gives

.. math::  f'(c) = -\frac{P_c(A_c)}{\beta}\,\varphi(c), \qquad
           \varphi(c) = c - f(c) - \beta .

So ``phi' = 1 + P(A) phi / beta`` equals 1 wherever ``phi = 0``: the continuous function ``phi``
crosses zero once, upwards. With ``phi(min u - cap) <= -beta < 0`` and
``phi(max u + beta) >= 0`` it has exactly one root ``c*``; ``f`` increases before it and decreases
after, and ``U^* = f(c^*) = c^* - beta``. Therefore, for any two points with
``phi(c_-) < 0 <= phi(c_+)``,

.. math::  f(c_-) \le U^* \le c_+ - \beta ,

both sides exact evaluations of the forward model (the agent's logit response): a certified
bracket, up to floating-point rounding, not an estimate. Because ``phi`` changes sign once,
bisection over the sorted breakpoints finds the smooth piece holding ``c*`` in ``O(log n)``
evaluations of cost ``O(n)``, and Brent's method finishes on that piece.

**Cross-check: the conic program** (``method="conic"``, uncapped principals; design note fact
1). It uses no threshold formula. A target policy ``p`` (supported where ``q`` is) is induced
by ``tau_i = beta log(p / q) + k``; the cheapest non-negative choice sets ``min_a tau_i(a) = 0``.
Principal ``i``'s payoff is then

.. math::  U_i(p) = E_p[u_i] - \beta\,KL(p \| q) + \beta \min_a \log(p(a) / q(a)),

concave in ``p``. Dividing by ``beta`` and writing ``t`` for the minimum, the best response is
the exponential-cone program

.. math::  \max_{p \in \Delta, t}\ \sum_a p_a (r_a + \log q_a) + \sum_a H(p_a) + t
           \quad \text{s.t.}\quad \log p_a - \log q_a \ge t,

with ``r = u_i / beta`` and ``H(x) = -x log x``. Writing ``-KL`` as entropy plus a linear term
keeps the program well scaled when ``q`` has entries near ``1e-300`` (a stubborn reference).
The conic solver's objective value is not trusted. The lower bound is the exact payoff of the
transfers recovered from the solver's ``p``, or of the current transfers if better. The upper
bound is the Lagrange dual function at multipliers ``lambda`` of the constraints: for any
``lambda`` in the simplex (weak duality)

.. math::  \max_p U_i / \beta \le g(\lambda)
           = \max_{p \in \Delta} \sum_a p_a (r_a + \log q_a)
           + \sum_a H(p_a) + \sum_a \lambda_a (\log p_a - \log q_a),

and the inner maximum is separable: for a multiplier ``mu`` of ``sum p = 1`` each
``x_a = log p_a`` solves ``x_a - K_a = lambda_a e^{-x_a}`` with ``K_a = r_a + log q_a - 1 - mu``
(a Lambert-W equation, solved by a monotone Newton iteration in ``log(x_a - K_a)``), and
``mu`` is the root of ``sum_a e^{x_a(mu)} = 1`` (bracketed). The conic program runs under a time
limit and a size limit (:data:`CONIC_MAX_ACTIONS`); with a cap its feasible set is not convex,
so capped principals have no conic cross-check.

:func:`nash_gap` runs the threshold search for every principal and, by default, the conic
cross-check where it is cheap (uncapped, at most :data:`CONIC_AUTO_ACTIONS` actions); the two
brackets must overlap, which :attr:`NashGap.consistent` reports.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import optimize

from cage_games._validation import _reject_non_numbers, as_scalar, check_scale
from cage_games.game import CommonAgencyGame
from cage_games.result import format_record
from cage_games.thresholds import log_softmax

__all__ = ["BestResponse", "NashGap", "best_response", "nash_gap", "payoffs", "policy"]

_LAMBDA_ACTIVE = 1e-7  # drop multipliers of clearly non-binding constraints before the dual


# -- the forward model: the agent's response and the principals' payoffs ----------------------
def _check_transfers(game: CommonAgencyGame, transfers: object) -> np.ndarray:
    m, n = game.n_principals, game.n_actions
    if transfers is None or isinstance(transfers, (str, bytes)):
        raise TypeError(f"transfers must be an (m, n) array of real numbers, got {transfers!r:.40}")
    _reject_non_numbers(transfers, "transfers")
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
    check_scale(game)


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
        A certified upper bound on the best-response payoff: ``c_+ - beta`` for the threshold
        search, the Lagrange dual bound for the conic program (``inf`` if the conic solver
        returned nothing usable, e.g. on its time limit).
    current_payoff : float
        Payoff of the principal's current transfers.
    transfer : ndarray, shape (n,)
        The recovered best-response schedule (``min = 0``).
    policy : ndarray, shape (n,)
        The agent's response to it.
    method : str
        ``"threshold"`` (the primary certificate) or ``"conic"`` (cvxpy, exponential cone).
    solver : str
        ``"bisection+brent"`` for the threshold search; the conic solver used otherwise
        (``"CLARABEL"``, ``"SCS"``, ...).
    status : str
        What was reached, in words.
    cross_check : BestResponse or None
        The independent conic certificate of the same best response, when it was run.
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
    cross_check: BestResponse | None = field(default=None, repr=False)

    @property
    def improvement(self) -> float:
        """Certified bound on the possible improvement, ``upper_bound - current_payoff``."""
        return self.upper_bound - self.current_payoff

    @property
    def consistent(self) -> bool | None:
        """Whether the cross-check's bracket overlaps this one (``None``: no cross-check).

        Both brackets contain the true best-response payoff, so they must overlap; a
        tolerance of ``1e-9`` times the utilities' scale absorbs rounding and the conic
        solver's accuracy. ``False`` is a bug: please report it.
        """
        x = self.cross_check
        if x is None or not np.isfinite(x.upper_bound):
            return None
        tol = 1e-9 * max(1.0, abs(self.payoff), abs(self.current_payoff))
        return bool(x.payoff <= self.upper_bound + tol and self.payoff <= x.upper_bound + tol)

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
        The records behind the numbers (each with its conic ``cross_check`` when one ran).
    """

    total: float
    per_principal: np.ndarray
    lower: np.ndarray
    best_responses: tuple[BestResponse, ...] = field(repr=False)

    @property
    def cross_checked(self) -> int:
        """How many principals' best responses were cross-checked by the conic program."""
        return sum(b.cross_check is not None for b in self.best_responses)

    @property
    def consistent(self) -> bool | None:
        """Whether the conic cross-checks agree with the threshold search.

        ``False`` if one disagreed (a bug: please report it); ``True`` if every one ran to a
        conclusion and agreed; ``None`` if none ran, or one was inconclusive (the conic solver
        failed or hit its time limit, so it gave no upper bound).
        """
        flags = [b.consistent for b in self.best_responses if b.cross_check is not None]
        if False in flags:
            return False
        if not flags or None in flags:
            return None
        return True

    def __float__(self) -> float:
        return float(self.total)

    def __repr__(self) -> str:
        return format_record(self)


# -- the best response -------------------------------------------------------------------------
CONIC_AUTO_ACTIONS = 100
"""Largest support on which :func:`nash_gap` runs the conic cross-check by default."""
CONIC_MAX_ACTIONS = 20_000
"""Largest support on which the conic program runs at all (its set-up alone grows fast)."""
CONIC_TIME_LIMIT = 60.0
"""Default time limit, in seconds, of one conic program asked for explicitly."""
CONIC_AUTO_TIME_LIMIT = 10.0
"""Time limit, in seconds, of one conic program of the automatic cross-check."""

_METHODS = ("threshold", "conic", "both")


def best_response(
    game: CommonAgencyGame,
    i: int,
    transfers: np.ndarray,
    *,
    method: str = "threshold",
    solver: str | None = None,
    time_limit: float | None = None,
) -> BestResponse:
    """Principal ``i``'s best response to the others' transfers, with a certified bracket.

    Parameters
    ----------
    game : CommonAgencyGame
        A game with ``beta > 0``.
    i : int
        The principal's index.
    transfers : array_like, shape (m, n)
        The current transfer profile; row ``i`` is principal ``i``'s own current schedule.
    method : {"threshold", "conic", "both"}
        ``"threshold"`` (default): the global threshold search of the module docstring,
        exact with or without a cap, ``O(n log n)``. ``"conic"``: the exponential-cone
        program (uncapped principals only). ``"both"``: the threshold search, with the conic
        program attached as :attr:`BestResponse.cross_check` (skipped for a capped principal).
    solver : str, optional
        A cvxpy solver name supporting the exponential cone (default ``"CLARABEL"``, falling
        back to ``"SCS"`` if it fails).
    time_limit : float, optional
        Seconds allowed to each conic solver call (default :data:`CONIC_TIME_LIMIT`).

    Returns
    -------
    BestResponse

    Raises
    ------
    ValueError
        Bad transfers or index; ``method="conic"`` for a capped principal or a support over
        :data:`CONIC_MAX_ACTIONS` actions; a game whose numbers overflow float64.
    NotImplementedError
        For ``beta = 0`` (a menu auction).
    """
    _require_quantal(game)
    tau = _check_transfers(game, transfers)
    if (
        isinstance(i, bool)
        or not isinstance(i, (int, np.integer))
        or not 0 <= i < game.n_principals
    ):
        raise ValueError(f"i must be a principal index in [0, {game.n_principals}), got {i!r}")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if solver is not None:
        _check_solver(solver)
    limit = (
        CONIC_TIME_LIMIT
        if time_limit is None
        else as_scalar(time_limit, "time_limit", minimum=0.0, strict=True)
    )
    i = int(i)
    capped = bool(np.isfinite(game.caps[i]))
    size = int(game.agent.support.sum())
    if method == "conic":
        if capped:
            raise ValueError(
                f"principal {game.names[i]!r} is capped: the conic program needs an uncapped "
                "principal (use method='threshold', exact with caps)"
            )
        if size > CONIC_MAX_ACTIONS:
            raise ValueError(
                f"the conic program is limited to {CONIC_MAX_ACTIONS} actions (this game has "
                f"{size}); use method='threshold'"
            )
    others = tau.sum(axis=0) - tau[i]
    current = float(_payoff_of(game, i, others, tau[i]))
    if method == "conic":
        return _conic(game, i, others, tau[i], current, solver or "CLARABEL", limit)
    br = _threshold(game, i, others, tau[i], current)
    if method == "both" and not capped and size <= CONIC_MAX_ACTIONS:
        check = _conic(game, i, others, tau[i], current, solver or "CLARABEL", limit)
        br = replace(br, cross_check=check)
        if br.consistent is False:
            warnings.warn(
                f"the conic cross-check of principal {game.names[i]!r}'s best response "
                f"disagrees with the threshold search (brackets [{br.payoff!r}, "
                f"{br.upper_bound!r}] and [{check.payoff!r}, {check.upper_bound!r}]); "
                "please report this game",
                RuntimeWarning,
                stacklevel=2,
            )
    return br


def _payoff_of(game: CommonAgencyGame, i: int, others: np.ndarray, own: np.ndarray) -> float:
    pi = np.exp(_log_policy(game, others + own))
    return float((game.utilities[i] - own) @ pi)


def _conic(
    game: CommonAgencyGame,
    i: int,
    others: np.ndarray,
    own: np.ndarray,
    current: float,
    solver: str,
    time_limit: float,
) -> BestResponse:
    import cvxpy as cp

    deadline = time.perf_counter() + time_limit
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
            problem.solve(solver=solver, verbose=False, **_time_limit_option(solver, time_limit))
        except cp.error.SolverError:
            try:
                problem.solve(
                    solver="SCS",
                    verbose=False,
                    eps=1e-9,
                    max_iters=200000,
                    time_limit_secs=time_limit,
                )
            except cp.error.SolverError as exc:
                status = f"conic solvers failed ({solver}, then SCS: {exc})"
                return _unsolved(game, i, others, own, current, "SCS", status)
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
            if time.perf_counter() > deadline and np.isfinite(upper):
                break  # the time limit covers the bounds too; any bound found is valid
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


def _check_solver(solver: object) -> None:
    """A cvxpy solver that is installed and handles the exponential cone, or a clear error."""
    import cvxpy as cp

    if not isinstance(solver, str):
        raise TypeError(f"solver must be a cvxpy solver name (str), got {type(solver).__name__}")
    usable = sorted(set(cp.installed_solvers()) & {"CLARABEL", "SCS", "MOSEK", "ECOS"})
    if solver.upper() not in usable:
        raise ValueError(
            f"solver {solver!r} is not an installed cvxpy solver for the exponential cone; "
            f"installed: {', '.join(usable) or 'none'}"
        )


def _time_limit_option(solver: str, seconds: float) -> dict:
    """The solver's own time-limit option (cvxpy passes unknown options on to the solver)."""
    name = solver.upper()
    if name == "CLARABEL":
        return {"time_limit": seconds}
    if name == "SCS":
        return {"time_limit_secs": seconds}
    if name == "MOSEK":
        return {"mosek_params": {"MSK_DPAR_OPTIMIZER_MAX_TIME": seconds}}
    return {}


def _unsolved(
    game: CommonAgencyGame,
    i: int,
    others: np.ndarray,
    own: np.ndarray,
    current: float,
    solver: str,
    status: str,
) -> BestResponse:
    """A conic record with no usable solution: lower bound the current payoff, no upper bound."""
    pol = np.exp(_log_policy(game, others + own))
    return BestResponse(i, current, np.inf, current, own.copy(), pol, "conic", solver, status)


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
    for _ in range(64):  # bounded: beyond float range the bound is given up (inf), never hung
        e_lo = excess(lo)
        if not e_lo < 0:
            break
        lo -= 2 * (hi - lo)
    for _ in range(64):
        e_hi = excess(hi)
        if not e_hi > 0:
            break
        hi += 2 * (hi - lo)
    if not (excess(lo) >= 0 >= excess(hi)) or not (np.isfinite(lo) and np.isfinite(hi)):
        return np.inf
    mu = optimize.brentq(excess, lo, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500)
    x = x_of(mu)
    x -= excess(mu)  # exact normalisation of the last bit
    p = np.exp(x)
    ent = -(p * x)
    return float(p @ (r + logq) + ent.sum() + lam @ (x - logq))


def _threshold(
    game: CommonAgencyGame, i: int, others: np.ndarray, own: np.ndarray, current: float
) -> BestResponse:
    """The global threshold search of the module docstring, with its bracket."""
    beta = game.beta
    S = game.agent.support
    u = game.utilities[i][S]
    cap = float(game.caps[i])
    logq = _log_policy(game, others)[S]
    if not np.all(np.isfinite(logq)):
        raise ValueError(_SCALE_ADVICE)

    def schedule(c: float) -> np.ndarray:
        return np.clip(u - c, 0.0, cap)

    def value(c: float) -> float:
        t = schedule(c)
        z = logq + t / beta
        z = z - z.max()
        w = np.exp(z)
        out = float(w @ (u - t)) / float(w.sum())
        if not np.isfinite(out):
            raise ValueError(_SCALE_ADVICE)
        return out

    def phi(c: float) -> float:
        return c - value(c) - beta

    lo = float(u.min()) - (cap if np.isfinite(cap) else 0.0)
    hi = float(u.max()) + beta
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise ValueError(_SCALE_ADVICE)
    # phi changes sign once, upwards: bisect over the sorted breakpoints for the smooth piece
    # holding the root, then finish with Brent's method on that piece.
    points = np.concatenate([u, u - cap]) if np.isfinite(cap) else u
    points = np.unique(points[(points > lo) & (points < hi)])
    grid = np.concatenate([[lo], points, [hi]])
    a, b = 0, grid.size - 1  # phi(grid[a]) < 0 <= phi(grid[b]) (proved at both ends)
    while b - a > 1:
        mid = (a + b) // 2
        if phi(float(grid[mid])) < 0:
            a = mid
        else:
            b = mid
    c_minus, c_plus = float(grid[a]), float(grid[b])
    phi_plus = phi(c_plus)
    if a == 0 and not phi(c_minus) < 0:  # rounding at the proved end: the root is at lo
        c_plus, phi_plus = c_minus, 0.0
    if phi_plus > 0:
        scale = max(abs(c_minus), abs(c_plus), beta)
        root = optimize.brentq(
            phi, c_minus, c_plus, xtol=4 * np.finfo(float).eps * scale, maxiter=200
        )
        # Certify the bracket around the computed root by exact evaluations.
        step = 8 * np.finfo(float).eps * scale
        for _ in range(60):
            lo_c = max(root - step, c_minus)
            if lo_c == c_minus or phi(lo_c) < 0:
                c_minus = max(c_minus, lo_c)
                break
            step *= 4
        step = 8 * np.finfo(float).eps * scale
        for _ in range(60):
            hi_c = min(root + step, c_plus)
            if hi_c == c_plus or phi(hi_c) >= 0:
                c_plus = min(c_plus, hi_c)
                break
            step *= 4
        candidates = [root, c_minus, c_plus]
    else:
        candidates = [c_plus, c_minus]
    best_c, _ = max(((c, value(c)) for c in candidates), key=lambda cv: cv[1])
    transfer = np.zeros(game.n_actions)
    transfer[S] = schedule(best_c)
    payoff = _payoff_of(game, i, others, transfer)
    if current > payoff:
        payoff, transfer = current, own.copy()
    upper = max(c_plus - beta, payoff)
    pol = np.exp(_log_policy(game, others + transfer))
    status = (
        f"optimal: threshold c = {best_c:.12g} bracketed in [{c_minus:.12g}, {c_plus:.12g}] "
        f"({grid.size} breakpoints)"
    )
    return BestResponse(
        i,
        float(payoff),
        float(upper),
        current,
        transfer,
        pol,
        "threshold",
        "bisection+brent",
        status,
    )


_SCALE_ADVICE = (
    "the game's numbers overflow float64 in the certificate (utilities or transfers divided by "
    "beta are too large); rescale the utilities, or use beta = 0 for a deterministic agent"
)


def nash_gap(
    game: CommonAgencyGame,
    transfers: np.ndarray,
    *,
    cross_check: bool | None = None,
    solver: str | None = None,
    time_limit: float | None = None,
) -> NashGap:
    """Certified Nash gap (exploitability) of a transfer profile.

    ``total = sum_i max(0, U_i^BR - U_i)`` where ``U_i^BR`` is bounded from above by each
    principal's :func:`best_response` upper bound (the threshold search: exact with or without
    caps, ``O(n log n)`` per principal). Zero exactly at an equilibrium.

    Parameters
    ----------
    game : CommonAgencyGame
        A game with ``beta > 0``.
    transfers : array_like, shape (m, n)
        Transfer profile to certify, e.g. ``cg.solve(game).transfers``.
    cross_check : bool, optional
        Also solve each uncapped principal's conic program (an independent method, see the
        module docstring) and check that both brackets agree. Default: only where it is cheap
        (at most :data:`CONIC_AUTO_ACTIONS` actions, each program under
        :data:`CONIC_AUTO_TIME_LIMIT` seconds). ``True`` runs it up to
        :data:`CONIC_MAX_ACTIONS` actions, each call under ``time_limit``.
    solver : str, optional
        cvxpy solver for the conic programs (default ``"CLARABEL"``).
    time_limit : float, optional
        Seconds allowed to each conic program (default :data:`CONIC_TIME_LIMIT`, or
        :data:`CONIC_AUTO_TIME_LIMIT` for the automatic cross-check). A program that runs out
        of time gives no upper bound: its cross-check is inconclusive (``consistent`` None).

    Returns
    -------
    NashGap
        ``float(gap)`` is the total; ``gap.per_principal`` the individual bounds;
        ``gap.consistent`` whether the cross-checks agreed.

    Raises
    ------
    ValueError
        Transfers of the wrong shape, negative, non-finite or over a cap; a game whose
        numbers overflow float64 (e.g. utilities of ``1e300``, or ``beta = 1e-300``).
    NotImplementedError
        For ``beta = 0`` (menu auctions: see :func:`cage_games.solve_menu_auction`).

    Examples
    --------
    >>> import cage_games as cg
    >>> game = cg.CommonAgencyGame(cg.Agent([0.0, 0.0, 1.0], beta=1.0),
    ...                            [cg.Principal([0.0, 2.0, 0.0])])
    >>> gap = cg.nash_gap(game, cg.solve(game).transfers)
    >>> float(gap) < 1e-8, gap.consistent
    (True, True)
    """
    _require_quantal(game)
    tau = _check_transfers(game, transfers)
    if cross_check is not None and not isinstance(cross_check, (bool, np.bool_)):
        raise TypeError(f"cross_check must be True, False or None, got {cross_check!r}")
    if cross_check is None:
        cross_check = int(game.agent.support.sum()) <= CONIC_AUTO_ACTIONS
        if time_limit is None:
            time_limit = CONIC_AUTO_TIME_LIMIT  # the automatic cross-check must stay cheap
    method = "both" if cross_check else "threshold"
    brs = tuple(
        best_response(game, i, tau, method=method, solver=solver, time_limit=time_limit)
        for i in range(game.n_principals)
    )
    upper = np.array([max(0.0, b.upper_bound - b.current_payoff) for b in brs])
    lower = np.array([max(0.0, b.payoff - b.current_payoff) for b in brs])
    return NashGap(total=float(upper.sum()), per_principal=upper, lower=lower, best_responses=brs)
