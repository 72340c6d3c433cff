"""The weighted selection rule is exact: w @ U equals the maximum over the polytope's vertices."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cage_games as cg
from cage_games.menu_auction import solve_menu_auction, truthful_set_violation


def public_good(seed, n=5, m=3):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 1, size=n)
    us = [base * rng.uniform(0.5, 1.5) + 0.2 * rng.uniform(size=n) for _ in range(m)]
    return cg.CommonAgencyGame(cg.Agent(np.zeros(n), beta=0.0), [cg.Principal(u) for u in us])


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([1e-9, 1e-6, 1e-3, 0.3]))
def test_near_tied_weights_reach_the_exact_weighted_optimum(seed, eps):
    game = public_good(seed)
    w = np.array([1.0, 1.0 + eps, 1.0])
    res = solve_menu_auction(game, selection=w, vertices=True)
    assert res.success
    best = float(np.max(res.frontier_vertices @ w))
    scale = max(1.0, abs(best))
    assert w @ res.payoffs >= best - 1e-12 * scale
    assert truthful_set_violation(game, res.payoffs) <= 1e-12 * scale


def test_two_principal_public_good_by_hand():
    # v = 0, two actions; both principals like action 1 (values 2 and 1), nobody action 0.
    # W(N) = 3 (action 1), W({0}) = 2, W({1}) = 1, W({}) = 0, so b({0}) = W(N) - W({1}) = 2,
    # b({1}) = W(N) - W({0}) = 1, b(N) = 3; b = (2, 1) sums to 3 <= b(N): the payoffs are unique
    # (the VCG payoffs (2, 1)), whatever the weights.
    game = cg.CommonAgencyGame(
        cg.Agent([0.0, 0.0], beta=0.0), [cg.Principal([0.0, 2.0]), cg.Principal([0.0, 1.0])]
    )
    res = solve_menu_auction(game, selection=[1.0, 3.0])
    assert res.payoffs_unique
    np.testing.assert_allclose(res.payoffs, [2.0, 1.0])


def test_weights_pick_the_vertex_they_favour():
    # Three actions, v = 0. A public good with free riding: u0 = (0, 2, 0), u1 = (0, 2, 0),
    # u2 = (0, 0, 3). W(N) = 4 (action 1), W({0,2}) = W({1,2}) = 3, W({0,1}) = 4, W({2}) = 3,
    # W({0}) = W({1}) = 2, W({}) = 0. Bounds: U0 <= 1, U1 <= 1, U2 <= 0, U0+U1 <= 1, ...
    # The frontier includes (1, 0, 0) and (0, 1, 0); weight on principal 0 picks (1, 0, 0).
    game = cg.CommonAgencyGame(
        cg.Agent([0.0, 0.0, 0.0], beta=0.0),
        [cg.Principal([0.0, 2.0, 0.0]), cg.Principal([0.0, 2.0, 0.0]), cg.Principal([0, 0, 3.0])],
    )
    res = solve_menu_auction(game, selection=[2.0, 1.0, 1.0])
    np.testing.assert_allclose(res.payoffs, [1.0, 0.0, 0.0], atol=1e-12)
    res = solve_menu_auction(game, selection=[1.0, 1.0, 1.0])  # a tie: equal sacrifice
    np.testing.assert_allclose(res.payoffs, [0.5, 0.5, 0.0], atol=1e-12)
    assert res.payoffs.sum() == pytest.approx(1.0)
