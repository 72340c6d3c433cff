"""Uniqueness reports: the dominance proof, its bounds, sampled evidence, and menu auctions."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cage_games as cg
from cage_games.solvers import solve
from cage_games.thresholds import ThresholdSystem
from cage_games.uniqueness import UniquenessReport, check_uniqueness, dominance_bound


def make_game(v, us, *, beta=1.0, caps=None, support=None, names=None):
    caps = caps or [None] * len(us)
    names = names or [None] * len(us)
    agent = cg.Agent(v, beta=beta, support=support)
    return cg.CommonAgencyGame(
        agent,
        [cg.Principal(u, cap=c, name=k) for u, c, k in zip(us, caps, names, strict=True)],
    )


# -- proofs -----------------------------------------------------------------------------------


def test_one_principal_is_proved_unique_even_with_large_stakes():
    game = make_game([0.0, 1.0, -2.0, 0.5], [[0.0, 9.0, 4.0, 20.0]], beta=0.5)
    rep = check_uniqueness(game)
    assert isinstance(rep, UniquenessReport)
    assert rep.conclusion == "proved: unique" and rep.proved
    assert rep.bound.proved and rep.bound.diagonal_floor[0] > 0
    assert rep.n_samples == 0 and rep.n_converged is None  # nothing sampled: it is a proof
    assert "proved" in str(rep) and "sampled" not in rep.conclusion


def test_small_stakes_are_proved_unique_and_nobody_pays():
    # Every utility range is below beta: on the root box no principal pays, J = I.
    rng = np.random.default_rng(0)
    game = make_game(rng.normal(size=5), 0.9 * rng.random((4, 5)), beta=1.0)
    rep = check_uniqueness(game)
    assert rep.conclusion == "proved: unique"
    assert rep.bound.spectral_radius == 0.0
    np.testing.assert_allclose(rep.bound.diagonal_floor, 1.0)
    res = solve(game)
    np.testing.assert_allclose(res.transfers, 0.0)


def test_moderate_stakes_with_caps_are_proved_and_agree_with_multistart():
    game = make_game(
        [0.0, 0.3, -0.2], [[0.0, 1.6, 0.4], [1.5, 0.0, 0.2]], beta=1.0, caps=[0.7, None]
    )
    rep = check_uniqueness(game)
    assert rep.conclusion == "proved: unique"
    assert 0.0 < rep.bound.spectral_radius < 1.0
    d = np.asarray(rep.bound.weights)
    M = np.asarray(rep.bound.matrix)
    assert np.all(d > 0) and np.all(d > M @ d)  # the certificate itself
    # Consistent with the proof: every start converges to the same equilibrium.
    rng = np.random.default_rng(3)
    ref = solve(game).thresholds
    for _ in range(5):
        x0 = ref + rng.normal(size=2)
        np.testing.assert_allclose(solve(game, x0=x0).thresholds, ref, atol=1e-9)


@st.composite
def games(draw):
    m = draw(st.integers(1, 4))
    n = draw(st.integers(2, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    beta = float(draw(st.sampled_from([0.5, 1.0, 2.0])))
    scale = float(draw(st.sampled_from([0.5, 1.0, 3.0])))
    caps = [None if rng.random() < 0.5 else float(rng.uniform(0.2, 3.0)) for _ in range(m)]
    support = rng.random(n) < 0.85
    support[rng.integers(n)] = True
    game = make_game(
        rng.normal(size=n), scale * rng.random((m, n)), beta=beta, caps=caps, support=support
    )
    return game, rng


@settings(max_examples=30, deadline=None)
@given(games())
def test_jacobian_bounds_hold_on_the_root_box(case):
    # The proof's premises: J_ii >= floor_i and |J_ij| <= M_ij J_ii at every point of the root
    # box, including points placed exactly on kinks of the transfer schedules.
    game, rng = case
    bound = dominance_bound(game)
    if not np.all(bound.diagonal_floor > 0):
        return  # the bound claims nothing then
    system = ThresholdSystem(game)
    lo, hi = system.lower + 1.0, system.upper
    m, n = game.n_principals, game.n_actions
    M = np.asarray(bound.matrix)
    for _ in range(60):
        gamma = lo + rng.random(m) * (hi - lo)
        if rng.random() < 0.4:  # snap a coordinate onto a kink
            i, a = int(rng.integers(m)), int(rng.integers(n))
            kink = system.r[i, a] - (system.kappa[i] if np.isfinite(system.kappa[i]) else 0.0)
            if lo[i] <= kink <= hi[i]:
                gamma[i] = kink
        J = system.evaluate(gamma).J
        diag = np.diag(J)
        assert np.all(diag >= np.asarray(bound.diagonal_floor) - 1e-12)
        off = np.abs(J) - M * diag[:, None]
        np.fill_diagonal(off, -1.0)
        assert np.all(off <= 1e-12)


# -- evidence ---------------------------------------------------------------------------------


def test_large_stakes_fall_back_to_sampled_evidence():
    rng = np.random.default_rng(0)
    game = make_game(np.zeros(4), 3 * rng.random((3, 4)), beta=1.0)
    rep = check_uniqueness(game, n_samples=50, n_starts=4, seed=1)
    assert not rep.proved and not rep.bound.proved
    assert rep.bound.spectral_radius >= 1.0
    assert rep.conclusion == "sampled: no second equilibrium found"
    assert rep.n_samples == 50 and rep.n_minors == 7  # 2**3 - 1 principal minors
    assert rep.p_matrix_failures == 0 and rep.min_principal_minor > 0
    assert rep.n_starts == 5 and rep.n_converged == 5 and rep.n_distinct == 1
    assert rep.max_threshold_spread < 1e-8
    np.testing.assert_allclose(rep.equilibria[0], solve(game).thresholds, atol=1e-9)
    text = str(rep)
    assert "Evidence, not proof" in text and "sampled" in text
    json.dumps(rep.to_dict())


def test_minimum_principal_minor_is_the_true_minimum():
    # Cross-check the batched minors against a direct loop at the sampled points.
    from cage_games.uniqueness import _min_principal_minors

    rng = np.random.default_rng(2)
    J = rng.normal(size=(6, 4, 4))
    got, count = _min_principal_minors(J, rng)
    assert count == 15
    import itertools

    for k in range(6):
        want = min(
            np.linalg.det(J[k][np.ix_(s, s)])
            for r in range(1, 5)
            for s in itertools.combinations(range(4), r)
        )
        assert got[k] == pytest.approx(want)


# -- beta = 0 ---------------------------------------------------------------------------------


def test_free_riding_public_good_has_a_continuum_of_payoffs():
    # The agent prefers action 0 by 1; both principals value action 1 at 1 (a public good).
    #   W(N) = 2, W({a}) = W({b}) = 1, W({}) = 1: bounds U_a <= 1, U_b <= 1, U_a + U_b <= 1.
    #   Marginal contributions (1, 1) violate the joint bound by 1: frontier U_a + U_b = 1.
    game = make_game([1.0, 0.0], [[0.0, 1.0], [0.0, 1.0]], beta=0.0, names=["a", "b"])
    rep = check_uniqueness(game)
    assert rep.conclusion == "not unique: continuum of truthful equilibrium payoffs"
    assert rep.details["marginal_contribution_violation"] == pytest.approx(1.0)
    pts = np.asarray(rep.details["two_frontier_points"])
    np.testing.assert_allclose(pts.sum(axis=1), 1.0, atol=1e-8)
    assert np.max(np.abs(pts[0] - pts[1])) > 0.5
    assert "NOT unique" in str(rep) and "{a, b}" in str(rep)


def test_competing_principals_have_unique_truthful_payoffs():
    game = make_game([0.0, 0.0], [[3.0, 0.0], [0.0, 2.0]], beta=0.0)
    rep = check_uniqueness(game)
    assert rep.conclusion == "proved: unique truthful-equilibrium payoffs"
    np.testing.assert_allclose(rep.details["marginal_contributions"], [1.0, 0.0])


# -- validation -------------------------------------------------------------------------------


def test_validation():
    game = make_game([0.0, 0.0], [[0.0, 1.0]])
    with pytest.raises(TypeError, match="game must be"):
        check_uniqueness(None)
    with pytest.raises(ValueError, match="n_samples"):
        check_uniqueness(game, n_samples=-3)
    with pytest.raises(ValueError, match="n_starts"):
        check_uniqueness(game, n_starts=-1)
    with pytest.raises(ValueError, match="beta > 0"):
        dominance_bound(make_game([0.0, 0.0], [[0.0, 1.0]], beta=0.0))


def test_one_uncapped_principal_is_proved_even_when_the_bound_underflows():
    # Stakes of 2000 beta: the probability bounds underflow, the monotonicity argument does not.
    game = make_game([0.0, 0.0, 0.0], [[0.0, 10.0, 20.0]], beta=0.01)
    assert not dominance_bound(game).proved
    rep = check_uniqueness(game)
    assert rep.conclusion == "proved: unique" and "strictly increasing" in rep.argument
