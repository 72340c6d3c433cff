"""Caps at beta = 0: the limit of quantal equilibria, certified by the exact oracle.

Known answers first (a contribution limit worked by hand), then random capped games (each
answer certified or explicitly declared uncertified), then the oracle itself against a brute
force over random deviations that shares no code with it.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cage_games as cg


def game_of(v, us, caps):
    return cg.CommonAgencyGame(
        cg.Agent(v, beta=0.0), [cg.Principal(u, cap=c) for u, c in zip(us, caps, strict=True)]
    )


@pytest.mark.parametrize(("value", "cap", "rival"), [(3.0, 1.0, 2.0), (5.0, 0.5, 0.8)])
def test_contribution_limit_the_rival_wins_paying_the_cap(value, cap, rival):
    # Principal 0 values action 0 at `value` but may give at most `cap` < rival; principal 1
    # values action 1 at `rival`. Uncapped, 0 would win paying `rival`. Capped, 1 wins and pays
    # exactly `cap` (paying less lets 0 outbid; paying more is wasted): payoffs (0, rival - cap).
    game = game_of([0.0, 0.0], [[value, 0.0], [0.0, rival]], [cap, None])
    res = cg.solve(game)
    assert res.method == "quantal-limit" and res.success, res.message
    assert res.taken_action == 1 and res.efficient_action == 0
    np.testing.assert_allclose(res.payoffs, [0.0, rival - cap], atol=1e-9)
    np.testing.assert_allclose(res.transfers[1, 1], cap, atol=1e-9)
    assert res.residual <= 1e-9 * max(value, rival)
    assert "not the efficient" in res.message


def test_non_binding_caps_keep_the_menu_auction():
    game = game_of([0.0, 0.0], [[3.0, 0.0], [0.0, 2.0]], [5.0, 5.0])
    res = cg.solve(game)
    assert res.method == "menu-auction" and res.success


def test_the_menu_auction_method_still_refuses_binding_caps():
    game = game_of([0.0, 0.0], [[3.0, 0.0], [0.0, 2.0]], [1.0, None])
    with pytest.raises(NotImplementedError, match="quantal-limit"):
        cg.solve(game, method="menu-auction")


def _random_capped(seed):
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(2, 8)), int(rng.integers(1, 4))
    caps = [float(rng.uniform(0.1, 1.5)) if rng.random() < 0.7 else None for _ in range(m)]
    return game_of(rng.normal(size=n), rng.normal(size=(m, n)), caps)


def test_every_capped_game_is_certified_or_declared_uncertified():
    certified = 0
    for seed in range(60):
        game = _random_capped(seed)
        res = cg.solve(game)
        scale = max(1.0, np.abs(game.agent.utility).max(), np.abs(game.utilities).max())
        assert np.all(res.transfers <= game.caps[:, None] + 1e-12)
        assert np.all(res.transfers >= 0)
        if res.success:
            certified += 1
            cert = cg.beta0_certificate(game, res.transfers, res.action, cap_tol=1e-9 * scale)
            assert cert.residual <= 1e-9 * scale
            assert res.policy[res.action] == 1.0
        else:
            assert res.status == 4 and "No capped truthful equilibrium found" in res.message
    assert certified >= 55  # measured: all 60 are certified


def _brute_deviation(game, tau, i, rng, trials=4000):
    """Best payoff of random deviations of principal i (agent: max z, ties to the deviator)."""
    v, u, caps, n = game.agent.utility, game.utilities, game.caps, game.n_actions
    others = v + tau.sum(axis=0) - tau[i]
    best = -np.inf
    cap = caps[i] if np.isfinite(caps[i]) else 10.0
    for _ in range(trials):
        dev = np.zeros(n)
        a = rng.integers(n)
        dev[a] = rng.uniform(0, cap)
        z = others + dev
        choice = int(np.flatnonzero(z >= z.max() - 1e-15)[0]) if z[a] < z.max() else a
        best = max(best, u[i, choice] - dev[choice])
    return best


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_oracle_is_never_beaten_by_random_deviations(seed):
    rng = np.random.default_rng(seed)
    game = _random_capped(seed)
    tau = np.minimum(
        rng.uniform(0, 1.5, size=(game.n_principals, game.n_actions)), game.caps[:, None]
    )
    cert = cg.beta0_certificate(game, tau)
    for i in range(game.n_principals):
        assert _brute_deviation(game, tau, i, rng, trials=300) <= cert.deviation_payoffs[i] + 1e-12


def test_oracle_on_a_hand_worked_profile():
    # v = 0; principal 0 (values action 0 at 3, cap 1.5) pays 1 on action 0; principal 1
    # (values action 1 at 2, uncapped) pays nothing. The agent takes action 0; U = (2, 0).
    # Principal 1 induces action 1 by paying 1 + eps: payoff 2 - 1, gain 1. Principal 0 pays
    # nothing instead: z = (0, 0), action 0 costs it 0 (a tie it is entitled to break by an
    # eps), payoff 3, gain 1.
    game = game_of([0.0, 0.0], [[3.0, 0.0], [0.0, 2.0]], [1.5, None])
    cert = cg.beta0_certificate(game, np.array([[1.0, 0.0], [0.0, 0.0]]))
    assert cert.action == 0
    np.testing.assert_allclose(cert.gaps, [1.0, 1.0])
    assert cert.best_deviations == (0, 1)


def test_capped_lobbies_on_a_product_grid_are_certified():
    # Grossman-Helpman tariffs (tests/test_actions.py) with both lobbies capped at 0.05: the
    # caps bind (uncapped, the tariffs are 0.18), the answer moves and is certified exactly.
    from test_actions import gh_game

    grid = cg.ActionGrid(t1=np.linspace(-0.3, 0.7, 41), t2=np.linspace(-0.3, 0.7, 41))
    free = cg.solve(gh_game(grid, ("t1", "t2")))
    capped_game = gh_game(grid, ("t1", "t2"))
    capped_game = cg.CommonAgencyGame(
        capped_game.agent,
        [cg.Principal(p.utility, name=p.name, cap=0.05) for p in capped_game.principals],
        actions=grid,
    )
    res = cg.solve(capped_game)
    assert res.method == "quantal-limit" and res.success, res.message
    assert res.action_coords != free.action_coords
    scale = max(np.abs(capped_game.agent.utility).max(), np.abs(capped_game.utilities).max())
    cert = cg.beta0_certificate(capped_game, res.transfers, res.action, cap_tol=1e-9 * scale)
    assert cert.residual <= 1e-9 * scale
    assert np.all(res.transfers <= 0.05 + 1e-15)
