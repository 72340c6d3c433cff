"""Menu auctions: the deterministic agent (``beta = 0``) and its truthful equilibria.

With ``beta = 0`` the agent picks an action maximising ``v(a) + sum_i tau_i(a)`` over its
support; this is the *menu auction* of Bernheim and Whinston (1986, "Menu auctions, resource
allocation, and economic influence", QJE 101(1), 1-31). Its equilibria are not unique, but the
*truthful* ones, where every principal's schedule is its utility minus a constant, floored at
zero,

.. math::  \\tau_i(a) = \\max(u_i(a) - U_i,\\ 0),

are characterised by a linear program (Bernheim and Whinston, 1986, Theorem 2):

1. the action is *efficient*: ``a* in argmax_a v(a) + sum_i u_i(a)``;
2. the principals' net payoffs ``U`` lie in the polytope
   ``P = {U : sum_{i in S} U_i <= W(N) - W(N \\ S) for every coalition S}``, with
   ``W(S) = max_a v(a) + sum_{i in S} u_i(a)``;
3. ``U`` is Pareto-undominated (for the principals) in ``P``: its *frontier*.

The frontier is a single point exactly when the vector of marginal contributions
``b_i = W(N) - W(N \\ {i})`` is itself in ``P`` (then ``U = b``: the VCG payoffs). Otherwise it
is a continuum, and the principals' shares of the agent's compensation are indeterminate: the
free-riding problem of public-good menu auctions (Laussel and Le Breton, 2001, "Conflict and
cooperation: the structure of equilibrium payoffs in common agency", JET 100(1), 93-128).
:func:`solve_menu_auction` returns the whole description (efficient action, coalition bounds,
frontier vertices, uniqueness) and one frontier point chosen by a documented ``selection`` rule,
with its truthful schedules and an independent certificate (every principal's best deviation).

:func:`cage_games.zero_temperature.zero_temperature_path` connects the menu auction to the
quantal game: with ``v`` held fixed and ``beta -> 0`` the quantal equilibrium concentrates on
the efficient action and its payoffs enter ``P`` (design note, fact 5).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linprog

from cage_games._validation import as_scalar
from cage_games.game import CommonAgencyGame
from cage_games.result import EquilibriumResult, FrozenRecord, format_record

__all__ = [
    "MAX_PRINCIPALS",
    "SELECTIONS",
    "Beta0Certificate",
    "MenuAuctionResult",
    "beta0_certificate",
    "coalition_bounds",
    "solve_menu_auction",
    "truthful_set_violation",
]

#: Largest number of principals accepted: the polytope has ``2**m - 1`` coalition constraints.
MAX_PRINCIPALS = 12
#: Named selection rules of :func:`solve_menu_auction` (weights are accepted too).
SELECTIONS = ("equal-sacrifice", "egalitarian", "max-sum")
#: Frontier vertices are enumerated (with Qhull) only up to this many principals.
_MAX_VERTEX_PRINCIPALS = 6
_HIGHS = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}


def _check_game(game: object) -> CommonAgencyGame:
    if not isinstance(game, CommonAgencyGame):
        raise TypeError(f"game must be a cage_games.CommonAgencyGame, got {type(game).__name__}")
    if game.n_principals > MAX_PRINCIPALS:
        raise ValueError(
            f"the menu auction enumerates all 2**m - 1 coalitions; m = {game.n_principals} "
            f"principals is more than the supported {MAX_PRINCIPALS}: merge principals that "
            "share an objective, or solve with beta > 0"
        )
    return game


def _coalition_masks(m: int) -> np.ndarray:
    """Boolean matrix (2**m, m): row ``k`` is the coalition whose bit ``i`` is set in ``k``."""
    k = np.arange(2**m)[:, None]
    return ((k >> np.arange(m)[None, :]) & 1).astype(bool)


def _welfare_table(game: CommonAgencyGame) -> tuple[np.ndarray, np.ndarray]:
    """``W(S)`` for every coalition (indexed by bitmask) and the coalition masks."""
    masks = _coalition_masks(game.n_principals)
    support = game.agent.support
    totals = game.agent.utility[support][None, :] + masks.astype(float) @ game.utilities[:, support]
    return totals.max(axis=1), masks


def coalition_bounds(game: CommonAgencyGame) -> dict[frozenset[int], float]:
    """The bounds ``W(N) - W(N \\ S)`` of the truthful-equilibrium polytope, per coalition.

    Parameters
    ----------
    game : CommonAgencyGame
        Any game; its ``beta`` is ignored (the bounds describe the ``beta = 0`` limit).

    Returns
    -------
    dict
        Maps every non-empty coalition ``S`` (a frozenset of principal indices) to
        ``W(N) - W(N \\ S)``, where ``W(S) = max_a v(a) + sum_{i in S} u_i(a)`` over the
        agent's support (Bernheim and Whinston, 1986, Theorem 2).
    """
    game = _check_game(game)
    W, masks = _welfare_table(game)
    full = 2**game.n_principals - 1
    return {
        frozenset(np.flatnonzero(masks[k]).tolist()): float(W[full] - W[full ^ k])
        for k in range(1, full + 1)
    }


def truthful_set_violation(game: CommonAgencyGame, payoffs: Sequence[float] | np.ndarray) -> float:
    """``max_S (sum_{i in S} U_i - (W(N) - W(N \\ S)))``: how far ``U`` is outside the polytope.

    Negative or zero when ``payoffs`` satisfies every coalition bound. This is the quantity
    that design note fact 5 sees going to zero as ``beta -> 0``.
    """
    game = _check_game(game)
    U = np.asarray(payoffs, dtype=float)
    if U.shape != (game.n_principals,):
        raise ValueError(
            f"payoffs must have one entry per principal (shape ({game.n_principals},)), "
            f"got shape {U.shape}"
        )
    W, masks = _welfare_table(game)
    full = 2**game.n_principals - 1
    bounds = W[full] - W[full ^ np.arange(1, full + 1)]
    return float(np.max(masks[1:].astype(float) @ U - bounds))


@dataclass(frozen=True, eq=False, repr=False)
class MenuAuctionResult(EquilibriumResult):
    """A truthful equilibrium of a menu auction (``beta = 0``) and the set it was chosen from.

    A subclass of :class:`cage_games.EquilibriumResult`: the first block of attributes has
    that class's meaning at ``beta = 0`` (and :attr:`action`, :attr:`action_coords` work as
    there, :attr:`action` being the action taken); the second describes the auction.

    Attributes
    ----------
    message : str
        What happened, in words (including whether the payoffs are unique).
    success : bool
        Whether the certificate ``residual`` is within the tolerance.
    status : int
        0 success; 2 the certificate exceeds the tolerance; 3 a linear program failed; 4
        (``method="quantal-limit"``) no capped truthful equilibrium found.
    method : str
        ``"menu-auction"``.
    residual : float
        Independent certificate in utility units (not divided by ``beta``, which is 0): the
        largest of every principal's gain from its best deviation (``nash_gaps``), the
        payoffs' violation of the coalition bounds, and the agent's shortfall from its best
        action at ``a*``.
    nit : int
        Rounds of the lexicographic selection.
    nfev : int
        Linear programs solved.
    policy : ndarray, shape (n,)
        One-hot on the efficient action ``a*``.
    transfers : ndarray, shape (m, n)
        Truthful schedules ``tau_i(a) = max(u_i(a) - U_i, 0)`` on the support, 0 off it.
    thresholds : ndarray, shape (m,)
        ``c_i = U_i``: the ``beta = 0`` case of the threshold form ``tau_i = (u_i - c_i)_+``,
        ``c_i = beta + U_i``.
    payoffs : ndarray, shape (m,)
        Principals' net payoffs ``U_i = u_i(a*) - tau_i(a*)``: the selected frontier point.
    agent_payoff : float
        ``v(a*) + sum_i tau_i(a*)`` (equal to ``W(N) - sum_i U_i``).
    params : mapping
        ``selection`` and ``tol``.
    efficient_action : int
        ``a*``: the efficient action the agent takes: the exact maximiser of
        ``v + sum_i u_i`` in floating point (lowest index among exact ties).
    efficient_actions : tuple of int
        Every action that maximises ``v + sum_i u_i`` within the tolerance.
    welfare : float
        ``W(N) = v(a*) + sum_i u_i(a*)``.
    payoffs_unique : bool
        Whether the frontier is a single point (then ``payoffs`` are the marginal
        contributions ``W(N) - W(N \\ {i})``, whatever the selection).
    selection : str
        The rule that picked ``payoffs`` on the frontier (see :func:`solve_menu_auction`).
    nash_gaps : ndarray, shape (m,)
        Each principal's best payoff from deviating to any schedule, minus ``U_i`` (>= 0).
    marginal_contributions : ndarray, shape (m,)
        ``b_i = W(N) - W(N \\ {i})``, the largest payoff principal ``i`` gets at any truthful
        equilibrium.
    coalition_bounds : mapping
        ``frozenset`` of principal indices ``-> W(N) - W(N \\ S)``; see :meth:`coalition_table`.
    frontier_vertices : ndarray, shape (k, m), or None
        The vertices of the polytope (all of them lie on the frontier, and the frontier is the
        union of the polytope's bounded faces); ``None`` when not computed (more than 6
        principals).
    taken_action : int
        The action the agent takes: ``efficient_action`` without binding caps; with them
        (``method="quantal-limit"``) possibly another one.

    Notes
    -----
    The ``game``, ``history`` and ``refinement`` attributes are those of
    :class:`~cage_games.EquilibriumResult`.
    """

    efficient_action: int = 0
    efficient_actions: tuple[int, ...] = ()
    welfare: float = 0.0
    payoffs_unique: bool = False
    selection: str = "equal-sacrifice"
    nash_gaps: np.ndarray | None = None
    marginal_contributions: np.ndarray | None = None
    coalition_bounds: Mapping[frozenset[int], float] = field(default_factory=dict, repr=False)
    frontier_vertices: np.ndarray | None = None
    taken_action: int | None = None

    def bound(self, coalition: Sequence[int | str] | frozenset) -> float:
        """``W(N) - W(N \\ S)`` for a coalition given by principal indices or names."""
        names = self.game.names if self.game is not None else ()
        key = []
        for member in coalition:
            if isinstance(member, str):
                if member not in names:
                    raise KeyError(f"no principal named {member!r}; the names are {list(names)}")
                key.append(names.index(member))
            else:
                key.append(int(member))
        try:
            return self.coalition_bounds[frozenset(key)]
        except KeyError:
            raise KeyError(
                f"coalition {sorted(key)} is not a non-empty set of principal indices "
                f"0..{len(self.payoffs) - 1}"
            ) from None

    def coalition_table(self) -> str:
        """The coalition bounds as a table, with each coalition's slack at ``payoffs``."""
        names = self.game.names if self.game is not None else None
        rows = []
        for S, b in sorted(
            self.coalition_bounds.items(), key=lambda kv: (len(kv[0]), sorted(kv[0]))
        ):
            label = "{" + ", ".join(names[i] if names else str(i) for i in sorted(S)) + "}"
            slack = b - float(sum(self.payoffs[i] for i in S))
            rows.append((label, b, slack))
        width = max(len("coalition S"), *(len(r[0]) for r in rows))
        lines = [f"{'coalition S'.ljust(width)}  {'W(N)-W(N minus S)':>18}  {'slack':>12}"]
        lines += [f"{lab.ljust(width)}  {b:18.6g}  {s:12.3g}" for lab, b, s in rows]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return format_record(self)

    __str__ = __repr__

    @property
    def action(self) -> int:
        """The action the agent takes (``taken_action``)."""
        return int(self.efficient_action if self.taken_action is None else self.taken_action)


def _lp(c, A_ub, b_ub, bounds):
    res = linprog(c, A_ub=A_ub, b_ub=b_ub, bounds=bounds, method="highs", options=_HIGHS)
    if res.status != 0:
        raise _LPFailure(f"linear program failed: {res.message}")
    return res


class _LPFailure(RuntimeError):
    pass


def _select(
    A: np.ndarray,
    b: np.ndarray,
    ref: np.ndarray,
    weights: np.ndarray | None,
    atol: float,
) -> tuple[np.ndarray, int, int]:
    """Lexicographic max-min of ``U - ref`` over ``{A U <= b}`` (after maximising ``weights @ U``).

    Returns the point, the number of rounds and the number of LPs. Each round maximises the
    smallest ``U_i - ref_i`` over the principals not yet fixed, then fixes those that cannot do
    better (one LP each); the leximin point is Pareto-optimal in the polytope.
    """
    m = ref.size
    rows = [np.hstack([A, np.zeros((A.shape[0], 1))])]
    rhs = [b]
    nlp = 0
    if weights is not None:
        res = _lp(-weights, A, b, [(None, None)] * m)
        nlp += 1
        rows.append(np.hstack([-weights, 0.0])[None, :])
        # Keep the maximum of w @ U (up to the tolerance; the polish below removes the slack).
        rhs.append(np.array([res.fun + atol * float(weights.sum())]))
    fixed: dict[int, float] = {}
    rounds = 0
    while len(fixed) < m:
        rounds += 1
        free = [i for i in range(m) if i not in fixed]
        lex = np.zeros((len(free), m + 1))
        lex[np.arange(len(free)), free] = -1.0
        lex[:, m] = 1.0
        A_ub = np.vstack([*rows, lex])
        b_ub = np.concatenate([*rhs, -ref[free]])
        bounds = [(fixed[i], fixed[i]) if i in fixed else (None, None) for i in range(m)]
        c = np.zeros(m + 1)
        c[m] = -1.0
        res = _lp(c, A_ub, b_ub, [*bounds, (None, None)])
        nlp += 1
        t_star = res.x[m]
        # Which free principals are blocked at t_star?
        bounds_t = [*bounds, (t_star, t_star)]
        blocked = []
        for i in free:
            c_i = np.zeros(m + 1)
            c_i[i] = -1.0
            r_i = _lp(c_i, A_ub, b_ub, bounds_t)
            nlp += 1
            if -r_i.fun - ref[i] <= t_star + atol:
                blocked.append(i)
        if not blocked:  # numerical safety: fix the tightest at the max-min solution
            gaps = res.x[free] - ref[free]
            blocked = [free[int(np.argmin(gaps))]]
        for i in blocked:
            fixed[i] = float(ref[i] + t_star)
    return np.array([fixed[i] for i in range(m)]), rounds, nlp


def _select_on_hull(V: np.ndarray, ref: np.ndarray, atol: float) -> tuple[np.ndarray, int, int]:
    """Lexicographic max-min of ``U - ref`` over the convex hull of the rows of ``V``.

    The same rounds as :func:`_select`, in barycentric coordinates ``U = V.T @ lam``
    (``lam >= 0``, ``sum lam = 1``), so the answer stays exactly on the hull.
    """
    k, m = V.shape
    if k == 1:
        return V[0].copy(), 0, 0
    fixed: dict[int, float] = {}
    rounds = nlp = 0
    A_eq_base = np.hstack([np.ones((1, k)), np.zeros((1, 1))])
    lam = np.full(k, 1.0 / k)
    while len(fixed) < m:
        rounds += 1
        free = [i for i in range(m) if i not in fixed]
        # t - (V.T lam)_i <= -ref_i for free i
        A_ub = np.hstack([-V[:, free].T, np.ones((len(free), 1))])
        b_ub = -ref[free]
        eq_rows = [A_eq_base] + [np.hstack([V[:, [i]].T, np.zeros((1, 1))]) for i in fixed]
        A_eq = np.vstack(eq_rows)
        b_eq = np.array([1.0, *[fixed[i] for i in fixed]])
        c = np.zeros(k + 1)
        c[k] = -1.0
        bounds = [(0, None)] * k + [(None, None)]
        res = linprog(c, A_ub, b_ub, A_eq, b_eq, bounds, method="highs", options=_HIGHS)
        nlp += 1
        if res.status != 0:
            raise _LPFailure(f"linear program failed: {res.message}")
        t_star = res.x[k]
        lam = res.x[:k]
        blocked = []
        for i in free:
            ci = np.zeros(k + 1)
            ci[:k] = -V[:, i]
            bt = [*bounds[:k], (t_star, t_star)]
            r_i = linprog(ci, A_ub, b_ub, A_eq, b_eq, bt, method="highs", options=_HIGHS)
            nlp += 1
            if r_i.status != 0 or -r_i.fun - ref[i] <= t_star + atol:
                blocked.append(i)
        if not blocked:
            U_now = V.T @ lam
            blocked = [free[int(np.argmin(U_now[free] - ref[free]))]]
        for i in blocked:
            fixed[i] = float(ref[i] + t_star)
    return np.array([fixed[i] for i in range(m)]), rounds, nlp


def _frontier_vertices(A: np.ndarray, b: np.ndarray, marg: np.ndarray, atol: float) -> np.ndarray:
    """Vertices of ``{A U <= b}`` (all Pareto-optimal), via Qhull on a box-truncated copy."""
    from scipy.spatial import HalfspaceIntersection

    m = marg.size
    if m == 1:
        return marg[None, :].copy()
    # Every frontier point has U_i >= b(S) - sum_{S minus i} b_j for some S containing i.
    lower = np.array(
        [
            min(b[k] - (A[k] @ marg - marg[i]) for k in range(A.shape[0]) if A[k, i])
            for i in range(m)
        ]
    )
    span = max(1.0, float(np.max(marg - lower)))
    lower = lower - span
    G = np.vstack([A, -np.eye(m)])
    h = np.concatenate([b, -lower])
    # Chebyshev centre: an interior point for Qhull.
    norms = np.linalg.norm(G, axis=1)
    res = _lp(
        np.r_[np.zeros(m), -1.0],
        np.hstack([G, norms[:, None]]),
        h,
        [(None, None)] * m + [(0, None)],
    )
    inner = res.x[:m]
    hs = HalfspaceIntersection(np.hstack([G, -h[:, None]]), inner)
    pts = hs.intersections
    pts = pts[np.all(pts > lower + 0.5 * span, axis=1)]
    # Polish: re-solve each vertex from the constraints that are tight there (Qhull's points
    # carry errors of order 1e-9), then drop duplicates from degenerate (non-simple) vertices.
    scale = max(1.0, float(np.max(np.abs(h))))
    polished = []
    for p in pts:
        tight = np.abs(A @ p - b) <= 1e-6 * scale
        q = np.linalg.lstsq(A[tight], b[tight], rcond=None)[0] if tight.sum() >= m else p
        polished.append(q)
    kept: list[np.ndarray] = []
    for q in sorted(polished, key=tuple):
        if not any(np.max(np.abs(q - k)) <= 1e-8 * scale for k in kept):
            kept.append(q)
    return np.array(kept).reshape(-1, m)


def _agent_choice(z: np.ndarray, net_total: np.ndarray, support: np.ndarray, atol: float) -> int:
    """The ``beta = 0`` agent's action: best ``z`` on the support, ties to the principals' total."""
    zs = np.where(support, z, -np.inf)
    tied = np.flatnonzero(zs >= zs.max() - atol)
    best = net_total[tied]
    return int(tied[np.flatnonzero(best >= best.max() - atol)[0]])


@dataclass(frozen=True, eq=False, repr=False)
class Beta0Certificate(FrozenRecord):
    """The exact ``beta = 0`` best-response check of a profile of schedules.

    Attributes
    ----------
    action : int
        The action the agent takes (given, or chosen by the tie rule).
    agent_shortfall : float
        ``max_a z(a) - z(action)`` with ``z = v + sum_i tau_i``: 0 when the action is optimal
        for the agent.
    payoffs : ndarray, shape (m,)
        ``U_i = u_i(action) - tau_i(action)``.
    deviation_payoffs : ndarray, shape (m,)
        Each principal's best payoff from any deviation (the supremum: see
        :func:`beta0_certificate`).
    best_deviations : tuple of int
        The action each principal's best deviation induces.
    gaps : ndarray, shape (m,)
        ``max(deviation_payoffs - payoffs, 0)``: the gain from the best deviation.
    residual : float
        ``max(agent_shortfall, max gaps)``: 0 at an equilibrium.
    """

    action: int
    agent_shortfall: float
    payoffs: np.ndarray
    deviation_payoffs: np.ndarray
    best_deviations: tuple[int, ...]
    gaps: np.ndarray
    residual: float

    def __repr__(self) -> str:
        return format_record(self, title="Beta0Certificate")


def beta0_certificate(
    game: CommonAgencyGame,
    transfers: np.ndarray,
    action: int | None = None,
    *,
    cap_tol: float = 0.0,
) -> Beta0Certificate:
    """Exact ``beta = 0`` best-response oracle: every principal's best deviation, caps included.

    Against the others' schedules, with ``z_{-i} = v + sum_{j != i} tau_j`` on the agent's
    support, principal ``i`` can make the agent take any action ``a`` by paying there the
    shortfall ``k_i(a) = max z_{-i} - z_{-i}(a)`` and nothing elsewhere; it cannot induce
    ``a`` for less. At ``k_i(a)`` the agent is only indifferent, and paying ``epsilon`` more
    makes it strict, so ``a`` is within reach when ``k_i(a) < cap_i`` (always, without a cap),
    and the best deviation payoff is the finite maximum (a supremum)

    .. math::  D_i = \\max_{a:\\ k_i(a) < \\bar\\tau_i} \\big(u_i(a) - k_i(a)\\big).

    A target that needs the whole cap, ``k_i(a) = cap_i``, can only be tied with, and the
    agent's tie-breaking is part of the equilibrium (Bernheim and Whinston, 1986): such a
    deviation is not counted. This is what makes "the rival wins paying exactly my cap" an
    equilibrium. ``gaps`` are ``D_i - U_i`` floored at 0: no search, and no tolerance beyond
    ``cap_tol``.

    Parameters
    ----------
    game : CommonAgencyGame
        The game (its ``beta`` is ignored: the agent is deterministic).
    transfers : array_like, shape (m, n)
        The schedules, ``0 <= tau_i <= cap_i``.
    action : int, optional
        The action the agent takes in the profile (the agent's tie-breaking is part of an
        equilibrium). Default: the best ``z`` on the support, ties broken in favour of the
        principals' total net payoff, then the lowest index.
    cap_tol : float, optional
        Targets needing more than ``cap_i - cap_tol`` count as out of reach (a round-off
        allowance for a cap that binds exactly; default 0).

    Returns
    -------
    Beta0Certificate

    Examples
    --------
    >>> import numpy as np, cage_games as cg
    >>> game = cg.CommonAgencyGame(cg.Agent([0.0, 0.0], beta=0.0),
    ...                            [cg.Principal([3.0, 0.0]), cg.Principal([0.0, 2.0])])
    >>> cert = cg.beta0_certificate(game, np.array([[2.0, 0.0], [0.0, 2.0]]))
    >>> cert.action, cert.gaps.tolist(), cert.residual
    (0, [0.0, 0.0], 0.0)
    >>> cg.beta0_certificate(game, np.array([[1.0, 0.0], [0.0, 0.0]])).gaps.tolist()
    [1.0, 1.0]
    """
    if not isinstance(game, CommonAgencyGame):
        raise TypeError(f"game must be a cage_games.CommonAgencyGame, got {type(game).__name__}")
    m, n = game.n_principals, game.n_actions
    tau = np.asarray(transfers, dtype=float)
    if tau.shape != (m, n):
        raise ValueError(f"transfers must have shape ({m}, {n}) (principals x actions)")
    if not np.all(np.isfinite(tau)) or np.any(tau < 0):
        raise ValueError("transfers must be finite and non-negative")
    caps = game.caps
    scale = max(1.0, float(np.max(np.abs(game.utilities))), float(np.max(np.abs(tau))))
    over = np.flatnonzero(tau.max(axis=1) > caps + 1e-12 * scale)
    if over.size:
        raise ValueError(
            f"transfers of principal {game.names[int(over[0])]!r} exceed its cap "
            f"{caps[int(over[0])]:g}; clip them to the cap"
        )
    support = game.agent.support
    v = game.agent.utility
    u = game.utilities
    tau = np.where(support[None, :], tau, 0.0)
    z = np.where(support, v + tau.sum(axis=0), -np.inf)
    if action is None:
        net_total = np.where(support, (u - tau).sum(axis=0), -np.inf)
        action = _agent_choice(z, net_total, support, 0.0)
    action = int(action)
    if not (0 <= action < n) or not support[action]:
        raise ValueError(f"action must be an action in the agent's support, got {action}")
    shortfall = float(np.max(z) - z[action])
    U = u[:, action] - tau[:, action]
    dev = np.empty(m)
    best = []
    for i in range(m):
        z_others = z - tau[i]
        cost = np.max(z_others) - z_others
        reach = cost < caps[i] - cap_tol if np.isfinite(caps[i]) else np.ones(n, dtype=bool)
        value = np.where(support & (reach | (cost == 0)), u[i] - cost, -np.inf)
        k = int(np.argmax(value))
        best.append(k)
        dev[i] = value[k]
    gaps = np.maximum(dev - U, 0.0)
    return Beta0Certificate(
        action=action,
        agent_shortfall=shortfall,
        payoffs=U,
        deviation_payoffs=dev,
        best_deviations=tuple(best),
        gaps=gaps,
        residual=float(max(shortfall, float(gaps.max()))),
    )


def solve_menu_auction(
    game: CommonAgencyGame,
    *,
    selection: str | Sequence[float] | np.ndarray = "equal-sacrifice",
    tol: float = 1e-9,
    vertices: bool | None = None,
) -> MenuAuctionResult:
    """Truthful equilibrium of the menu auction (the ``beta = 0`` game).

    Algorithm (Bernheim and Whinston, 1986, Theorem 2; Laussel and Le Breton, 2001):

    1. ``W(S) = max_a v(a) + sum_{i in S} u_i(a)`` over the agent's support, for all ``2**m``
       coalitions; ``a*`` is the lowest-index maximiser of ``v + sum_i u_i`` (ties within
       ``tol`` relative to the game's scale).
    2. Coalition bounds ``b(S) = W(N) - W(N \\ S)``; the truthful-equilibrium payoffs are the
       Pareto frontier of ``P = {U : sum_{i in S} U_i <= b(S)}``.
    3. The frontier is a single point iff the marginal contributions ``b_i = b({i})`` satisfy
       every bound (then ``U = b``); otherwise ``selection`` picks a point by linear programs
       (HiGHS, through :func:`scipy.optimize.linprog`).
    4. Truthful schedules ``tau_i(a) = max(u_i(a) - U_i, 0)``; the agent's choice is checked
       to be ``a*`` under the tie rule below, and every principal's best deviation (inducing
       any action ``a`` at the least cost ``max_a' z_{-i}(a') - z_{-i}(a)``, with
       ``z_{-i} = v + sum_{j != i} tau_j``) is computed as the certificate ``nash_gaps``.

    **Ties.** The agent breaks ties in favour of the principals' total net payoff (design note,
    section 1), then the lowest index. Among agent-optimal actions that rule selects the
    efficient ones, so the agent takes ``a*`` at every frontier point even though, at the
    frontier, some other action always ties with ``a*`` for the agent.

    Parameters
    ----------
    game : CommonAgencyGame
        The game. Its ``beta`` is ignored: the agent is treated as deterministic. At most
        ``MAX_PRINCIPALS`` (12) principals.
    selection : {"equal-sacrifice", "egalitarian", "max-sum"} or array_like of m weights
        Which frontier point to return when the payoffs are not unique:

        - ``"equal-sacrifice"`` (default): every principal gives up the same amount from its
          largest truthful payoff ``b_i = W(N) - W(N \\ {i})`` (the VCG payoff), made
          lexicographic: maximise the smallest ``U_i - b_i``, fix the principals that cannot
          do better, repeat with the rest. Invariant to shifting any ``u_i`` by a constant.
        - ``"egalitarian"``: the same lexicographic max-min on ``U_i`` itself.
        - ``"max-sum"``: maximise ``sum_i U_i`` (the agent's payoff is then smallest), ties
          broken by equal sacrifice.
        - weights ``w > 0`` (one per principal): maximise ``w @ U``, ties broken by equal
          sacrifice.

        Every rule returns a Pareto-optimal point of ``P``, hence a truthful equilibrium.
    tol : float
        Relative tolerance (times ``max(1, max |W|)``) for ties and for ``success``.
    vertices : bool, optional
        Whether to enumerate the polytope's vertices (with Qhull). Default: when ``m <= 6``.

    Returns
    -------
    MenuAuctionResult
        The selected equilibrium (``policy`` one-hot on ``a*``, ``transfers``, ``payoffs``,
        ``agent_payoff``), its certificate ``residual``, and the auction's description
        (``coalition_bounds``, ``frontier_vertices``, ``payoffs_unique``).

    Raises
    ------
    NotImplementedError
        If a principal's ``cap`` is smaller than its selected truthful schedule's largest
        transfer on the support: truthful schedules that the cap truncates are not covered
        by the Bernheim-Whinston characterisation; ``cage_games.solve`` then switches to
        ``method="quantal-limit"``. Caps that do not bind are supported (the equilibrium
        stays one: capping only removes deviations).
    ValueError
        More than 12 principals, or an unknown ``selection``.

    Examples
    --------
    The winner pays the loser's stake (a first-price menu auction with second-price payments):

    >>> import cage_games as cg
    >>> from cage_games.menu_auction import solve_menu_auction
    >>> game = cg.CommonAgencyGame(cg.Agent([0.0, 0.0], beta=0.0),
    ...                            [cg.Principal([3.0, 0.0]), cg.Principal([0.0, 2.0])])
    >>> res = solve_menu_auction(game)
    >>> res.efficient_action, res.payoffs.tolist(), res.transfers.tolist(), res.payoffs_unique
    (0, [1.0, 0.0], [[2.0, 0.0], [0.0, 2.0]], True)
    """
    game = _check_game(game)
    tol = as_scalar(tol, "tol", minimum=0.0, strict=True)
    m, n = game.n_principals, game.n_actions
    weights: np.ndarray | None = None
    if isinstance(selection, str):
        if selection not in SELECTIONS:
            raise ValueError(
                f"selection must be one of {SELECTIONS} or {m} positive weights, got {selection!r}"
            )
        label = selection
        if selection == "max-sum":
            weights = np.ones(m)
    else:
        try:
            weights = np.asarray(selection, dtype=float)
        except (TypeError, ValueError):
            raise TypeError(
                f"selection must be one of {SELECTIONS} or {m} positive weights"
            ) from None
        if weights.shape != (m,) or not np.all(np.isfinite(weights)) or np.any(weights <= 0):
            raise ValueError(
                f"selection weights must be {m} finite positive numbers (one per principal), "
                f"got {weights.tolist()}"
            )
        label = "weights " + np.array2string(weights, precision=4, separator=", ")

    support = game.agent.support
    v = game.agent.utility
    u = game.utilities
    W, masks = _welfare_table(game)
    full = 2**m - 1
    scale = max(1.0, float(np.max(np.abs(W))))
    atol = tol * scale

    total = np.where(support, v + u.sum(axis=0), -np.inf)
    welfare = float(W[full])
    efficient = tuple(int(a) for a in np.flatnonzero(total >= welfare - atol))
    # The exact maximiser, not the first near-tie: on a fine grid of a smooth model many
    # actions tie within atol, and the first of them is biased towards low indices.
    a_star = int(np.argmax(total))

    A = masks[1:].astype(float)
    b = welfare - W[full ^ np.arange(1, full + 1)]
    marg = b[(1 << np.arange(m)) - 1]
    nlp = 0
    rounds = 0
    status = 0
    notes = []
    unique = bool(np.max(A @ marg - b) <= atol)
    try:
        want_vertices = m <= _MAX_VERTEX_PRINCIPALS if vertices is None else bool(vertices)
        exact_weights = weights is not None and not unique and m <= _MAX_VERTEX_PRINCIPALS
        verts = _frontier_vertices(A, b, marg, atol) if want_vertices or exact_weights else None
        if unique:
            U = marg.copy()
        elif exact_weights:
            # Exact weighted rule: a linear function attains its maximum over P at vertices,
            # and its optimal face is the hull of the optimal vertices; break ties on that
            # face (equal sacrifice) without any slack on w @ U.
            vals = verts @ weights
            top = vals.max()
            face = verts[vals >= top - 1e-12 * max(1.0, abs(top))]
            U, rounds, nlp = _select_on_hull(face, marg, atol)
        else:
            ref = np.zeros(m) if label == "egalitarian" else marg
            U, rounds, nlp = _select(A, b, ref, weights, atol)
        if not want_vertices:
            verts = None
    except _LPFailure as exc:
        status = 3
        notes.append(str(exc))
        U = marg.copy()
        verts = None
    # Polish: LP solutions carry round-off of the order of the solver's tolerances. Project U
    # onto the face of P whose bounds are tight there (least-norm correction), then step back
    # into P if a bound is still violated, so that a* is the agent's best action up to
    # floating point.
    tight = np.abs(A @ U - b) <= 10 * atol
    if tight.any():
        U = U - np.linalg.lstsq(A[tight], A[tight] @ U - b[tight], rcond=None)[0]
    U = U - max(0.0, float(np.max(A @ U - b)))

    tau = np.where(support[None, :], np.maximum(u - U[:, None], 0.0), 0.0)
    caps = game.caps
    over = np.flatnonzero(tau.max(axis=1) > caps + atol)
    if over.size:
        i = int(over[0])
        raise NotImplementedError(
            f"principal {game.names[i]!r} has cap = {caps[i]:g}, but its truthful schedule at the "
            f"selected equilibrium pays up to {tau[i].max():.6g}: the Bernheim-Whinston "
            "characterisation assumes unbounded schedules. Solve with method='auto' or "
            "method='quantal-limit' (the limit of quantal equilibria, certified at beta = 0)"
        )

    # The agent's choice and each principal's best deviation (the certificate).
    z = v + tau.sum(axis=0)
    net_total = np.where(support, (u - tau).sum(axis=0), -np.inf)
    chosen = _agent_choice(z, net_total, support, atol)
    zs = np.where(support, z, -np.inf)
    agent_shortfall = float(zs.max() - z[a_star])
    gaps = np.empty(m)
    for i in range(m):
        z_others = np.where(support, z - tau[i], -np.inf)
        best = float(np.max(u[i] + z_others) - np.max(z_others))
        gaps[i] = max(best - U[i], 0.0)
    violation = float(np.max(A @ U - b))
    residual = max(float(gaps.max()), violation, agent_shortfall, 0.0)
    if chosen not in efficient:
        residual = max(residual, float(welfare - total[chosen]))
    if status == 0 and residual > 10 * atol:
        status = 2
    success = status == 0
    policy = np.zeros(n)
    policy[a_star] = 1.0
    payoffs = u[:, a_star] - tau[:, a_star]
    action = (
        repr(game.action_names[a_star]) if game.action_names is not None else f"action {a_star}"
    )
    if status == 0:
        message = f"Truthful equilibrium: the agent takes the efficient {action}; payoffs are " + (
            "unique (the marginal contributions)." if unique else f"not unique ({label} point)."
        )
    elif status == 2:
        message = (
            f"Certificate failed: residual {residual:.3g} exceeds the tolerance {10 * atol:.3g}."
        )
    else:
        message = "; ".join(notes)
    if len(efficient) > 1:
        shown = list(efficient[:8]) + (["..."] if len(efficient) > 8 else [])
        message += (
            f" {len(efficient)} actions tie for efficiency within the tolerance: {shown}; "
            f"the exact maximiser {a_star} is taken."
        )
    return MenuAuctionResult(
        message=message,
        success=bool(success),
        status=int(status),
        method="menu-auction",
        residual=float(residual),
        nit=int(rounds),
        nfev=int(nlp),
        policy=policy,
        transfers=tau,
        thresholds=U.copy(),
        payoffs=payoffs,
        agent_payoff=float(z[a_star]),
        params={"selection": label, "tol": tol},
        efficient_action=int(a_star),
        efficient_actions=efficient,
        welfare=welfare,
        payoffs_unique=unique,
        selection=label,
        nash_gaps=gaps,
        marginal_contributions=marg,
        coalition_bounds={
            frozenset(np.flatnonzero(masks[k]).tolist()): float(b[k - 1])
            for k in range(1, full + 1)
        },
        frontier_vertices=verts,
        taken_action=int(a_star),
        game=game,
    )
