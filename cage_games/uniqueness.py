"""Uniqueness of the equilibrium: a bound proved over the root box, else sampled evidence.

For ``beta > 0`` the equilibria are the roots of the threshold system ``G`` (design note,
facts 2 and 4), and every root lies in the *root box* (see :mod:`cage_games.existence`)

.. math::  B = \\prod_i [\\min u_i + \\beta,\\ \\max u_i + \\beta].

In units of ``beta`` (``r = u / beta``, ``gamma = c / beta``) write ``d_i = r_i - gamma_i``,
``w_i = d_i - clip(d_i, 0, kappa_i)`` and ``A_i = 1[0 < d_i < kappa_i]``. The Jacobian is

.. math::  J_{ij} = \\delta_{ij}\\,(1 - p_i) + \\operatorname{Cov}_\\pi(w_i, A_j),
           \\qquad p_i = P_\\pi(A_i = 1).

**The proof (dominance over the box).** Let ``t_i = gamma_i - min r_i`` in ``[1, R_i + 1]``,
``R_i = max r_i - min r_i``.

1. *Off-diagonal terms.* ``Cov(w_i, A_j) = p_j (1 - p_j) (E[w_i | A_j = 1] - E[w_i | A_j = 0])``,
   so ``|J_ij| <= s_i(t_i) * k_j`` with ``s_i`` the spread of ``w_i`` over the support and
   ``k_j`` a bound on ``p_j (1 - p_j)``. Since ``w_i`` is a non-decreasing 1-Lipschitz function
   of ``r_i`` with values in ``[-(t_i), (R_i - t_i - kappa_i)_+]``,
   ``s_i(t) <= min(R_i, max(t, R_i - kappa_i))``. ``k_j = 1/4``, or ``pbar_j (1 - pbar_j)``
   when the largest possible ``p_j`` on ``B`` is ``pbar_j < 1/2``.
2. *Diagonal.* ``w_i = 0`` where ``A_i = 1``, so ``Cov(w_i, A_i) = -p_i E[w_i]`` and
   ``J_ii = 1 - p_i - p_i E[w_i] = 1 + p_i G_i``. Splitting ``E[w_i] = E[w_i^+] - E[w_i^-]``
   with ``E[w_i^-] >= t_i q_i`` (``q_i``: a lower bound on the probability of ``argmin r_i``)
   and ``E[w_i^+] <= X_i (1 - p_i)`` (``X_i = (R_i - t_i - kappa_i)_+``) gives
   ``J_ii >= h(p_i) = 1 - p_i (1 - t_i q_i + X_i) + p_i^2 X_i``, minimised over
   ``p_i in [0, pbar_i(t_i)]``; without caps this is ``min(1, P + (1 - P) t_i q_i) > 0``.
3. *Probabilities.* Every transfer on ``B`` lies in a known interval
   (``0 <= tau_j(a) <= clip(r_j(a) - min r_j - 1, 0, kappa_j)``, and sharper for the principal
   whose ``t_i`` is confined to a sub-interval), so for any set of actions ``S``,
   ``P_pi(S) >= sum_S e^{nu + tau_lo} / (sum_S e^{nu + tau_lo} + sum_{not S} e^{nu + tau_hi})``.
   ``pbar_i`` uses the actions certainly outside ``{0 < d_i < kappa_i}`` (strictly), ``q_i``
   the set ``argmin r_i``.
4. ``t_i`` is swept over ``[1, R_i + 1]`` in sub-intervals (all breakpoints ``r_i(a) - min r_i``
   and ``... - kappa_i``, refined uniformly); on each, every bound is taken at its worst end
   (``s_i`` at the right end, ``t_i q_i`` and ``X_i`` at the left end), giving
   ``rho_i = sup_t s_i(t) / L_i(t)`` (``L_i > 0`` required).

Then ``|J_ij| <= rho_i k_j J_ii`` everywhere on ``B`` for any choice of the indicators at the
kinks. If the non-negative matrix ``M_ij = rho_i k_j`` (``i != j``) has spectral radius ``< 1``,
there is ``d > 0`` with ``d_i > sum_{j != i} M_ij d_j`` and every such ``J`` has ``J D`` strictly
row diagonally dominant with positive diagonal (``D = diag(d)``). That property is preserved by
averaging, and ``G(y) - G(x) = (integral of J along the segment) (y - x)`` for the piecewise
smooth ``G``; the averaged matrix is non-singular (Levy–Desplanques), so ``G(x) != G(y)``:
**``G`` is injective on ``B`` and the equilibrium is unique.** This is a convex-combination form
of the Gale–Nikaido univalence theorem (Gale and Nikaido, 1965, "The Jacobian matrix and
global univalence of mappings", Math. Annalen 159) that needs no smoothness beyond Lipschitz.

**When the bound fails** the check gathers evidence: the analytic Jacobian is tested for the
P-matrix property (all principal minors positive; Gale–Nikaido's hypothesis) at random points
of ``B``, and the game is solved from several random starts in ``B``. Both are samples, and the
report says so.

For ``beta = 0`` (menu auction, Bernheim and Whinston, 1986, QJE 101(1), Theorem 2) the
truthful-equilibrium payoffs are the Pareto frontier of
``{U : sum_{i in S} U_i <= W(N) - W(N minus S)}``; it is a single point exactly when the
marginal contributions ``W(N) - W(N minus i)`` satisfy every bound. Otherwise (free riding on
a shared objective) there is a continuum of truthful-equilibrium payoffs.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cage_games._validation import as_int
from cage_games.existence import check_game, render_report, report_to_dict, root_box
from cage_games.game import CommonAgencyGame
from cage_games.result import FrozenRecord
from cage_games.thresholds import ThresholdSystem

__all__ = ["DominanceBound", "UniquenessReport", "check_uniqueness", "dominance_bound"]

#: Uniform refinement of each principal's threshold range for the dominance bound.
_GRID = 64
#: Enumerate all principal minors up to this many principals; sample subsets beyond.
_MAX_MINOR_PRINCIPALS = 10
#: Two equilibria are "the same" when their scaled thresholds differ by at most this.
_SAME_TOL = 1e-6


# -- the proof ------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class DominanceBound(FrozenRecord):
    """The ingredients of the dominance proof (see the module docstring).

    Attributes
    ----------
    proved : bool
        Whether the bound proves that the root (hence the equilibrium) is unique.
    ratios : ndarray, shape (m,)
        ``rho_i = sup_t s_i(t) / L_i(t)`` over the root box (``inf`` where ``L_i`` reaches 0).
    column_factors : ndarray, shape (m,)
        ``k_j``, the bound on ``p_j (1 - p_j)`` over the root box.
    diagonal_floor : ndarray, shape (m,)
        ``min_t L_i(t)``: the proved lower bound on ``J_ii`` over the root box.
    matrix : ndarray, shape (m, m)
        ``M``: ``|J_ij| <= M_ij J_ii`` everywhere on the root box (``M_ij <= rho_i k_j``; zero
        diagonal).
    spectral_radius : float
        Spectral radius of ``M``; ``< 1`` proves uniqueness.
    weights : ndarray, shape (m,) or None
        The certificate ``d > 0`` with ``d_i > sum_j M_ij d_j`` (``None`` if not proved).
    """

    proved: bool
    ratios: np.ndarray
    column_factors: np.ndarray
    diagonal_floor: np.ndarray
    matrix: np.ndarray
    spectral_radius: float
    weights: np.ndarray | None

    def to_dict(self) -> dict[str, Any]:
        return report_to_dict(self)

    def __repr__(self) -> str:
        return render_report(self, "DominanceBound")

    __str__ = __repr__


def _log_prob_lower(
    nu: np.ndarray, inside: np.ndarray, t_lo: np.ndarray, t_hi: np.ndarray
) -> float:
    """Lower bound on ``P(inside)`` when each action's transfer total lies in ``[t_lo, t_hi]``.

    ``P(S) >= sum_S e^{nu + t_lo} / (sum_S e^{nu + t_lo} + sum_{not S} e^{nu + t_hi})``.
    """
    if not inside.any():
        return 0.0
    if inside.all():
        return 1.0
    a = np.logaddexp.reduce(nu[inside] + t_lo[inside])
    b = np.logaddexp.reduce(nu[~inside] + t_hi[~inside])
    return float(np.exp(a - np.logaddexp(a, b)))


def _breakpoints(ri: np.ndarray, kappa: float, R: float) -> np.ndarray:
    pts = (
        [1.0, R + 1.0, *(ri.tolist()), *((ri - kappa).tolist())]
        if np.isfinite(kappa)
        else [1.0, R + 1.0, *(ri.tolist())]
    )
    pts = np.unique(np.clip(pts, 1.0, R + 1.0))
    fine = np.linspace(1.0, R + 1.0, _GRID + 1)
    return np.unique(np.concatenate([pts, fine]))


def dominance_bound(game: CommonAgencyGame) -> DominanceBound:
    """Rigorous bounds on the threshold Jacobian over the root box, and what they prove.

    Implements steps 1-4 of the module docstring: a lower bound ``L_i`` on every diagonal entry
    and upper bounds ``rho_i k_j L_i`` on the off-diagonal entries of the Jacobian, valid at
    every point of the root box and for every choice of the indicators at the kinks; then the
    generalised (weighted) diagonal-dominance test. A ``proved`` bound means that ``G`` is
    injective on the root box (a convex-combination form of Gale and Nikaido, 1965), so the
    equilibrium is unique.

    Parameters
    ----------
    game : CommonAgencyGame
        A game with ``beta > 0``.

    Returns
    -------
    DominanceBound
    """
    game = check_game(game)
    if not game.beta > 0:
        raise ValueError("dominance_bound needs beta > 0 (for beta = 0 use check_uniqueness)")
    system = ThresholdSystem(game)
    S = system.support
    nu = system.nu[S]
    r = system.r[:, S]
    kappa = system.kappa
    m = r.shape[0]
    mins = r.min(axis=1)
    R = r.max(axis=1) - mins
    rel = r - mins[:, None]  # r_i(a) - min r_i, in [0, R_i]
    # On the root box gamma_j >= min r_j + 1, so tau_j(a) <= clip(rel_j(a) - 1, 0, kappa_j).
    tau_hi_box = np.clip(rel - 1.0, 0.0, kappa[:, None])
    # Column factors k_j: bound on p_j (1 - p_j) over the whole box.
    k = np.full(m, 0.25)
    for j in range(m):
        surely_off = rel[j] < 1.0  # d_j < 0 for every t_j >= 1 (the upper part is empty here)
        P = _log_prob_lower(nu, surely_off, np.zeros_like(nu), tau_hi_box.sum(axis=0))
        pbar = 1.0 - P
        if pbar < 0.5:
            k[j] = pbar * (1.0 - pbar)
    rho = np.zeros(m)
    M = np.zeros((m, m))
    floor = np.full(m, np.inf)
    for i in range(m):
        others_hi = tau_hi_box.sum(axis=0) - tau_hi_box[i]
        kap = kappa[i]
        grid = _breakpoints(rel[i], kap, R[i])
        intervals = itertools.pairwise(grid) if grid.size > 1 else [(grid[0], grid[0])]
        argmin = rel[i] == 0.0
        worst = 0.0
        row = np.zeros(m)
        for a, b in intervals:
            t_lo_i = np.clip(rel[i] - b, 0.0, kap)  # tau_i is smallest at t = b
            t_hi_i = np.clip(rel[i] - a, 0.0, kap)  # and largest at t = a
            lo_total = t_lo_i
            hi_total = others_hi + t_hi_i
            surely_off = (rel[i] < a) | (rel[i] - b > kap)
            P = _log_prob_lower(nu, surely_off, lo_total, hi_total)
            q = _log_prob_lower(nu, argmin, lo_total, hi_total)
            X = max(R[i] - a - kap, 0.0) if np.isfinite(kap) else 0.0
            # h(p) = 1 - p (1 - a q + X) + p^2 X, minimised over p in [0, pbar]. Written in
            # s = 1 - p in [P, 1] as h = s + (1 - s) a q - (1 - s) s X, which keeps its
            # accuracy when P is tiny (no cancellation in 1 - p).
            cands = [1.0, P]
            if X > 0.0:
                s_star = 1.0 - (1.0 - a * q + X) / (2.0 * X)
                if P < s_star < 1.0:
                    cands.append(s_star)
            L = min(s_ + (1.0 - s_) * a * q - (1.0 - s_) * s_ * X for s_ in cands)
            floor[i] = min(floor[i], L)
            spread = min(R[i], max(b, R[i] - kap))
            if m > 1:
                with np.errstate(over="ignore"):  # L may be tiny: an infinite ratio is fine
                    ratio = float(spread / L) if L > 0 else np.inf
                worst = max(worst, ratio)
                # Uncapped: |Cov(w_i, A_j)| <= E|w_i| and E|w_i| / J_ii <= t_i <= b as well.
                alt = b if not np.isfinite(kap) else np.inf
                row = np.maximum(row, np.minimum(np.where(k > 0, ratio, 0.0) * k, alt))
        rho[i] = worst
        M[i] = row
    if not np.all(floor > 0):
        return DominanceBound(False, rho, k, floor, M, float("inf"), None)
    np.fill_diagonal(M, 0.0)
    if not np.all(np.isfinite(M)):
        return DominanceBound(False, rho, k, floor, M, float("inf"), None)
    radius = float(np.max(np.abs(np.linalg.eigvals(M)))) if m > 1 else 0.0
    weights = None
    proved = False
    if radius < 1.0:
        try:
            d = np.linalg.solve(np.eye(m) - M, np.ones(m))
        except np.linalg.LinAlgError:
            d = None
        # Verify the certificate directly (robust to round-off in the eigenvalues).
        if d is not None and np.all(d > 0) and np.all(d - M @ d > 1e-12 * np.max(d)):
            weights, proved = d / d.max(), True
    return DominanceBound(proved, rho, k, floor, M, radius, weights)


# -- evidence -------------------------------------------------------------------------------------


def _min_principal_minors(J: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Smallest principal minor of each matrix in a stack ``J`` (N, m, m), and minors checked."""
    N, m, _ = J.shape
    if m <= _MAX_MINOR_PRINCIPALS:
        subsets = [s for k in range(1, m + 1) for s in itertools.combinations(range(m), k)]
    else:
        small = [s for k in (1, 2) for s in itertools.combinations(range(m), k)]
        extra = {
            tuple(sorted(rng.choice(m, size=rng.integers(3, m + 1), replace=False)))
            for _ in range(2048)
        }
        subsets = small + sorted(extra)
    out = np.full(N, np.inf)
    by_size: dict[int, list[tuple[int, ...]]] = {}
    for s in subsets:
        by_size.setdefault(len(s), []).append(s)
    for group in by_size.values():
        idx = np.array(group)  # (g, size)
        sub = J[:, idx[:, :, None], idx[:, None, :]]  # (N, g, size, size)
        out = np.minimum(out, np.linalg.det(sub).min(axis=1))
    return out, len(subsets)


@dataclass(frozen=True, eq=False, repr=False)
class UniquenessReport(FrozenRecord):
    """What :func:`check_uniqueness` proved about a game's equilibrium, and what it only sampled.

    Attributes
    ----------
    conclusion : str
        One of ``"proved: unique"`` (the dominance bound, ``beta > 0``), ``"proved: unique
        truthful-equilibrium payoffs"`` (``beta = 0``), ``"not unique: continuum of truthful
        equilibrium payoffs"`` (``beta = 0``, free riding), ``"sampled: no second equilibrium
        found"``, ``"sampled: multiple equilibria found"``, or ``"sampled: inconclusive"``.
    proved : bool
        Whether the conclusion is a proof (``True`` for the first three conclusions).
    argument : str
        The argument used, in words.
    message : str
        The conclusion in a sentence.
    beta : float
        The agent's temperature.
    bound : DominanceBound or None
        The dominance bound's ingredients (``beta > 0``).
    n_samples : int
        Points of the root box where the Jacobian's principal minors were computed (0 if the
        bound proved uniqueness).
    n_minors : int
        Principal minors checked per point.
    min_principal_minor : float or None
        The smallest principal minor seen (``> 0`` at every sample means "P-matrix at every
        sampled point").
    p_matrix_failures : int or None
        Sampled points where some principal minor was ``<= 0``.
    n_starts : int
        Solver runs from random starting thresholds in the root box (plus the default start).
    n_converged : int or None
        How many of them converged.
    n_distinct : int or None
        Distinct equilibria among the converged runs (thresholds farther apart than ``1e-6``
        in units of beta).
    max_threshold_spread : float or None
        Largest difference between converged runs' thresholds, in units of beta.
    max_policy_tv : float or None
        Largest total-variation distance between converged runs' policies.
    equilibria : ndarray, shape (k, m) or None
        The distinct equilibrium thresholds found (utility units).
    details : mapping
        For ``beta = 0``: the efficient actions, marginal contributions, coalition bounds and
        two payoff vectors on the frontier when it is not a point.
    game : CommonAgencyGame
        The game that was checked.
    """

    conclusion: str
    proved: bool
    argument: str
    message: str
    beta: float
    bound: DominanceBound | None = None
    n_samples: int = 0
    n_minors: int = 0
    min_principal_minor: float | None = None
    p_matrix_failures: int | None = None
    n_starts: int = 0
    n_converged: int | None = None
    n_distinct: int | None = None
    max_threshold_spread: float | None = None
    max_policy_tv: float | None = None
    equilibria: np.ndarray | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    game: CommonAgencyGame | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready ``dict`` (the game is left out)."""
        return report_to_dict(self)

    def __repr__(self) -> str:
        return render_report(self, "UniquenessReport")

    __str__ = __repr__


def _why_not(bound: DominanceBound, names: tuple[str, ...]) -> str:
    """Why the dominance bound did not prove uniqueness, in words."""
    bad = [names[i] for i in np.flatnonzero(np.asarray(bound.diagonal_floor) <= 0)]
    if bad:
        return (
            "the dominance bound does not hold (no positive lower bound on the Jacobian's "
            f"diagonal over the root box for {', '.join(bad)}: binding caps or very large stakes)"
        )
    return (
        f"the dominance bound does not hold (dominance index {bound.spectral_radius:.3g} >= 1: "
        "stakes too large relative to beta)"
    )


def _menu_auction_uniqueness(game: CommonAgencyGame) -> UniquenessReport:
    from cage_games.menu_auction import MAX_PRINCIPALS, coalition_bounds, solve_menu_auction

    if game.n_principals > MAX_PRINCIPALS:
        raise ValueError(
            f"beta = 0 uniqueness enumerates 2**m coalitions; m = {game.n_principals} is more "
            f"than {MAX_PRINCIPALS}"
        )
    bounds = coalition_bounds(game)
    names = game.names
    table = {
        "{" + ", ".join(names[i] for i in sorted(S)) + "}": b
        for S, b in sorted(bounds.items(), key=lambda kv: (len(kv[0]), sorted(kv[0])))
    }
    m = game.n_principals
    marg = np.array([bounds[frozenset([i])] for i in range(m)])
    violation = max(sum(marg[i] for i in S) - b for S, b in bounds.items())
    scale = max(1.0, float(np.max(np.abs(list(bounds.values())))))
    unique = violation <= 1e-9 * scale
    v = game.agent.utility
    total = np.where(game.agent.support, v + game.utilities.sum(axis=0), -np.inf)
    efficient = tuple(int(a) for a in np.flatnonzero(total >= total.max() - 1e-9 * scale))
    details: dict[str, Any] = {
        "efficient_actions": efficient,
        "marginal_contributions": marg,
        "coalition_bounds": table,
        "marginal_contribution_violation": float(violation),
    }
    argument = (
        "Bernheim-Whinston (1986, Theorem 2): truthful-equilibrium payoffs = Pareto frontier of "
        "{U : sum_S U_i <= W(N) - W(N minus S)}; it is one point iff the marginal contributions "
        "W(N) - W(N minus i) satisfy every coalition bound"
    )
    if unique:
        conclusion = "proved: unique truthful-equilibrium payoffs"
        message = (
            "The truthful-equilibrium payoffs are unique: every principal gets its marginal "
            "contribution W(N) - W(N minus i) (non-truthful equilibria may exist besides)."
        )
    else:
        worst = max(bounds, key=lambda S: sum(marg[i] for i in S) - bounds[S])
        label = "{" + ", ".join(names[i] for i in sorted(worst)) + "}"
        points = []
        for sel in [np.eye(m)[i] + 1e-3 for i in range(min(m, 2))]:
            try:
                points.append(solve_menu_auction(game, selection=sel, vertices=False).payoffs)
            except NotImplementedError:
                break
        if len(points) == 2:
            details["two_frontier_points"] = np.array(points)
        conclusion = "not unique: continuum of truthful equilibrium payoffs"
        message = (
            f"Payoffs are NOT unique: the marginal contributions violate the bound of coalition "
            f"{label} by {violation:.6g} (free riding: its members value the same outcome), so "
            "the Pareto frontier of truthful-equilibrium payoffs is a continuum; the action "
            + ("is the efficient one." if len(efficient) == 1 else f"ties among {list(efficient)}.")
        )
    return UniquenessReport(
        conclusion=conclusion,
        proved=True,
        argument=argument,
        message=message,
        beta=0.0,
        details=details,
        game=game,
    )


def check_uniqueness(
    game: CommonAgencyGame,
    *,
    n_samples: int = 200,
    n_starts: int = 8,
    seed: int | None = 0,
    tol: float = 1e-10,
) -> UniquenessReport:
    """Prove uniqueness of the equilibrium where a bound allows it, else gather evidence.

    For ``beta > 0``:

    1. :func:`dominance_bound`: rigorous bounds on the Jacobian of the threshold system over
       the root box. If they give generalised diagonal dominance, ``G`` is injective there and
       the conclusion is ``"proved: unique"`` (the argument is the module docstring's; it is a
       convex-combination form of Gale and Nikaido, 1965).
    2. Otherwise, evidence: the analytic Jacobian's principal minors at ``n_samples`` uniform
       points of the root box (a P-matrix everywhere on the box would prove uniqueness by
       Gale–Nikaido; a sample cannot), and :func:`cage_games.solve` from ``n_starts`` random
       starts in the root box plus the default start; the converged runs are compared.

    For ``beta = 0`` the Bernheim–Whinston characterisation decides whether the
    truthful-equilibrium payoffs are unique (see :mod:`cage_games.menu_auction`).

    Parameters
    ----------
    game : CommonAgencyGame
        The game.
    n_samples : int
        Random points of the root box for the P-matrix test (used only if the bound fails).
    n_starts : int
        Random starting points for the multi-start solve (used only if the bound fails).
    seed : int or None
        Seed of the sampling.
    tol : float
        Residual tolerance passed to :func:`cage_games.solve` for the multi-start runs.

    Returns
    -------
    UniquenessReport

    Examples
    --------
    Small stakes (each utility range below beta): nobody pays on the root box, ``J = I``.

    >>> import cage_games as cg
    >>> from cage_games.uniqueness import check_uniqueness
    >>> game = cg.CommonAgencyGame(cg.Agent([0.0, 0.0, 0.0], beta=1.0),
    ...                            [cg.Principal([0.0, 0.5, 0.9]), cg.Principal([0.8, 0.0, 0.3])])
    >>> check_uniqueness(game).conclusion
    'proved: unique'
    """
    game = check_game(game)
    n_samples = as_int(n_samples, "n_samples", minimum=0)
    n_starts = as_int(n_starts, "n_starts", minimum=0)
    if game.beta == 0:
        return _menu_auction_uniqueness(game)
    bound = dominance_bound(game)
    beta = game.beta
    if bound.proved:
        return UniquenessReport(
            conclusion="proved: unique",
            proved=True,
            argument=(
                "generalised diagonal dominance of the threshold Jacobian, bounded over the "
                "whole root box (which contains every equilibrium); G is injective there "
                "(convex-combination form of Gale-Nikaido 1965)"
            ),
            message=(
                f"The equilibrium is unique (proved): dominance index "
                f"{bound.spectral_radius:.4g} < 1 with diagonal >= "
                f"{float(np.min(bound.diagonal_floor)):.4g} everywhere in the root box."
            ),
            beta=beta,
            bound=bound,
            game=game,
        )
    if game.n_principals == 1 and not game.has_caps:
        # Analytic, whatever the floating-point bound gave: G_1' = (1 - p) + p E[(c - u)_+] / beta
        # and 1 - p >= pi(argmin u) > 0, so G_1 is strictly increasing.
        return UniquenessReport(
            conclusion="proved: unique",
            proved=True,
            argument=(
                "one uncapped principal: G_1' = (1 - p) + p E[(c - u)_+]/beta >= "
                "pi(argmin u) > 0, so G_1 is strictly increasing and has one root"
            ),
            message=(
                "The equilibrium is unique (proved): with one uncapped principal the threshold "
                "equation is strictly monotone (the numerical dominance bound underflowed)."
            ),
            beta=beta,
            bound=bound,
            game=game,
        )
    rng = np.random.default_rng(seed)
    system = ThresholdSystem(game)
    lo, hi = root_box(system)
    m = game.n_principals
    # (a) P-matrix test of the analytic Jacobian at random points of the root box.
    min_minor = None
    failures = None
    n_minors = 0
    if n_samples:
        pts = lo + rng.random((n_samples, m)) * (hi - lo)
        J = np.stack([system.evaluate(p).J for p in pts])
        minors, n_minors = _min_principal_minors(J, rng)
        min_minor = float(minors.min())
        failures = int(np.sum(minors <= 0))
    # (b) multi-start solves.
    from cage_games.solvers import solve

    starts: list[np.ndarray | None] = [None]
    starts += [beta * (lo + rng.random(m) * (hi - lo)) for _ in range(n_starts)]
    found = []
    policies = []
    for x0 in starts:
        res = solve(game, tol=tol, x0=x0)
        if res.success:
            found.append(res.thresholds / beta)
            policies.append(res.policy)
    distinct: list[np.ndarray] = []
    for g in found:
        if not any(np.max(np.abs(g - h)) <= _SAME_TOL for h in distinct):
            distinct.append(g)
    spread = tv = None
    if found:
        F = np.array(found)
        P = np.array(policies)
        spread = float(np.max(F.max(axis=0) - F.min(axis=0)))
        tv = float(max(0.5 * np.abs(p - q).sum() for p in P for q in P))
    n_conv = len(found)
    if len(distinct) > 1:
        conclusion = "sampled: multiple equilibria found"
        message = (
            f"NOT unique (numerically): {len(distinct)} distinct equilibria among {n_conv} "
            f"converged runs (threshold spread {spread:.3g} beta, policy TV {tv:.3g}), each with "
            f"residual <= {tol:g}."
        )
    elif n_conv == 0:
        conclusion = "sampled: inconclusive"
        message = f"No evidence: {_why_not(bound, game.names)}, and no solver run converged."
    else:
        conclusion = "sampled: no second equilibrium found"
        pm = (
            f"the Jacobian was a P-matrix at all {n_samples} sampled points "
            f"(min principal minor {min_minor:.3g})"
            if n_samples and failures == 0
            else (
                f"the Jacobian failed the P-matrix test at {failures} of {n_samples} sampled "
                f"points (min principal minor {min_minor:.3g})"
                if n_samples
                else "no P-matrix samples"
            )
        )
        message = (
            f"Evidence, not proof: {_why_not(bound, game.names)}; {pm}; {n_conv} of "
            f"{len(starts)} starts converged, all to the same equilibrium within {spread:.2g} "
            "(scaled thresholds)."
        )
    return UniquenessReport(
        conclusion=conclusion,
        proved=False,
        argument=(
            "sampled: Gale-Nikaido P-matrix test of the analytic Jacobian at random points of "
            "the root box, and multi-start solving (evidence only)"
        ),
        message=message,
        beta=beta,
        bound=bound,
        n_samples=n_samples,
        n_minors=n_minors,
        min_principal_minor=min_minor,
        p_matrix_failures=failures,
        n_starts=len(starts),
        n_converged=n_conv,
        n_distinct=len(distinct),
        max_threshold_spread=spread,
        max_policy_tv=tv,
        equilibria=beta * np.array(distinct) if distinct else None,
        game=game,
    )
