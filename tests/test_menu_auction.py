"""Menu auctions (beta = 0): hand-worked auctions, properties, and the zero-temperature path.

Known answers first (worked by hand in the comments), then properties on random games, then an
independent brute-force check of the Nash property that does not share code with the solver.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

import cage_games as cg
from cage_games.menu_auction import (
    MAX_PRINCIPALS,
    coalition_bounds,
    solve_menu_auction,
    truthful_set_violation,
)
from cage_games.zero_temperature import zero_temperature_path


def make_game(v, us, *, beta=0.0, caps=None, support=None):
    caps = caps or [None] * len(us)
    agent = cg.Agent(v, beta=beta, support=support)
    return cg.CommonAgencyGame(
        agent, [cg.Principal(u, cap=c) for u, c in zip(us, caps, strict=True)]
    )


# -- hand-worked auctions -------------------------------------------------------------------


@pytest.mark.parametrize(("high", "low"), [(3.0, 2.0), (5.0, 1.0), (2.5, 2.0)])
def test_second_price_auction(high, low):
    # Two actions, an indifferent agent (v = 0). Principal 0 wants action 0 (worth `high`),
    # principal 1 wants action 1 (worth `low` < `high`).
    #   W(N) = max(high, low) = high, a* = 0;  W({0}) = high, W({1}) = low, W({}) = 0.
    #   b({0}) = W(N) - W({1}) = high - low;  b({1}) = W(N) - W({0}) = 0;  b(N) = high.
    #   b({0}) + b({1}) = high - low <= high: the marginal contributions are in P, so the
    #   payoffs are unique, U = (high - low, 0).
    #   Truthful schedules: tau_0 = ((high - U_0)_+, (0 - U_0)_+) = (low, 0),
    #                       tau_1 = ((0 - 0)_+, (low - 0)_+)      = (0, low).
    #   The agent is offered `low` on both actions (a tie); the principals' total breaks it
    #   towards action 0. The winner pays the loser's stake: a second-price outcome.
    game = make_game([0.0, 0.0], [[high, 0.0], [0.0, low]])
    res = solve_menu_auction(game)
    assert res.success and res.status == 0
    assert res.method == "menu-auction"
    assert res.efficient_action == 0 and res.efficient_actions == (0,)
    np.testing.assert_allclose(res.policy, [1.0, 0.0])
    np.testing.assert_allclose(res.payoffs, [high - low, 0.0], atol=1e-12)
    np.testing.assert_allclose(res.transfers, [[low, 0.0], [0.0, low]], atol=1e-12)
    assert res.agent_payoff == pytest.approx(low, abs=1e-12)
    assert res.welfare == pytest.approx(high)
    assert res.payoffs_unique
    assert "unique" in res.message and "not unique" not in res.message
    assert res.coalition_bounds == {
        frozenset({0}): pytest.approx(high - low),
        frozenset({1}): pytest.approx(0.0),
        frozenset({0, 1}): pytest.approx(high),
    }
    np.testing.assert_allclose(res.frontier_vertices, [[high - low, 0.0]], atol=1e-9)
    np.testing.assert_allclose(res.nash_gaps, 0.0, atol=1e-12)
    assert res.residual <= 1e-12


def test_public_good_has_a_continuum_of_payoffs():
    # Both principals value action 0 at 2; the agent prefers action 1 by 1 (v = (0, 1)).
    #   W(N) = max(0 + 4, 1) = 4 (a* = 0); W({0}) = W({1}) = max(2, 1) = 2; W({}) = 1.
    #   b({0}) = b({1}) = 4 - 2 = 2;  b(N) = 4 - 1 = 3.
    #   b({0}) + b({1}) = 4 > 3: not unique. Frontier: U_0 + U_1 = 3 with U_i <= 2, the segment
    #   from (1, 2) to (2, 1): the agent must be paid 1 in total, and how the principals split
    #   it is indeterminate (free riding, Laussel and Le Breton 2001).
    game = make_game([0.0, 1.0], [[2.0, 0.0], [2.0, 0.0]])
    res = solve_menu_auction(game)
    assert res.success
    assert not res.payoffs_unique
    assert "not unique" in res.message
    assert res.efficient_action == 0
    np.testing.assert_allclose(
        sorted(map(tuple, res.frontier_vertices)), [(1.0, 2.0), (2.0, 1.0)], atol=1e-9
    )
    # Equal sacrifice from (2, 2): each gives up 0.5.
    np.testing.assert_allclose(res.payoffs, [1.5, 1.5], atol=1e-9)
    np.testing.assert_allclose(res.transfers, [[0.5, 0.0], [0.5, 0.0]], atol=1e-9)
    expected = {
        "egalitarian": [1.5, 1.5],
        "max-sum": [1.5, 1.5],  # every frontier point has sum 3: equal sacrifice breaks the tie
        (2.0, 1.0): [2.0, 1.0],  # weights favouring principal 0: the vertex (2, 1)
        (1.0, 3.0): [1.0, 2.0],
    }
    for selection, payoffs in expected.items():
        r = solve_menu_auction(
            game, selection=list(selection) if isinstance(selection, tuple) else selection
        )
        np.testing.assert_allclose(r.payoffs, payoffs, atol=1e-9, err_msg=str(selection))
        # Whatever the split, the agent is paid exactly its compensation v(1) - v(0) = 1 ...
        assert r.transfers[:, 0].sum() == pytest.approx(1.0, abs=1e-9)
        assert r.agent_payoff == pytest.approx(1.0, abs=1e-9)
        # ... and it still takes the efficient action, with nobody gaining by deviating.
        assert r.success and r.residual <= 1e-9
        np.testing.assert_allclose(r.policy, [1.0, 0.0])


def test_single_principal_extracts_the_surplus():
    # v = (2, 0), u = (0, 3): totals (2, 3), a* = 1. W(N) = 3, W({}) = 2, so U = b = 1:
    # the principal pays the agent just its forgone utility, tau = (0, 3 - 1) = (0, 2).
    game = make_game([2.0, 0.0], [[0.0, 3.0]])
    res = solve_menu_auction(game)
    assert res.success and res.payoffs_unique
    assert res.efficient_action == 1
    np.testing.assert_allclose(res.payoffs, [1.0])
    np.testing.assert_allclose(res.transfers, [[0.0, 2.0]])
    assert res.agent_payoff == pytest.approx(2.0)
    np.testing.assert_allclose(res.thresholds, res.payoffs)
    np.testing.assert_allclose(res.frontier_vertices, [[1.0]])


def test_efficient_ties_take_the_lowest_index_and_say_so():
    # Actions 1 and 2 both have total 3; action 0 has 1.
    game = make_game([1.0, 0.0, 1.0], [[0.0, 3.0, 2.0]])
    res = solve_menu_auction(game)
    assert res.efficient_actions == (1, 2)
    assert res.efficient_action == 1
    assert "tie" in res.message
    assert res.success


def test_support_excludes_actions():
    # The otherwise efficient action 0 is outside the agent's support.
    game = make_game([0.0, 0.0, 0.0], [[10.0, 1.0, 0.0]], support=[False, True, True])
    res = solve_menu_auction(game)
    assert res.efficient_action == 1
    np.testing.assert_allclose(res.transfers[:, 0], 0.0)
    assert res.success


def test_non_binding_cap_is_accepted_and_binding_cap_is_refused():
    game = make_game([0.0, 0.0], [[3.0, 0.0], [0.0, 2.0]], caps=[5.0, 5.0])
    assert solve_menu_auction(game).success
    game = make_game([0.0, 0.0], [[3.0, 0.0], [0.0, 2.0]], caps=[1.0, None])
    with pytest.raises(NotImplementedError, match="cap"):
        solve_menu_auction(game)


def test_argument_errors():
    game = make_game([0.0, 0.0], [[1.0, 0.0]])
    with pytest.raises(ValueError, match="selection"):
        solve_menu_auction(game, selection="nucleolus")
    with pytest.raises(ValueError, match="positive"):
        solve_menu_auction(game, selection=[-1.0])
    with pytest.raises(ValueError, match="positive"):
        solve_menu_auction(game, selection=[1.0, 2.0])
    with pytest.raises(TypeError, match="CommonAgencyGame"):
        solve_menu_auction("not a game")
    big = make_game([0.0, 0.0], [[1.0, 0.0]] * (MAX_PRINCIPALS + 1))
    with pytest.raises(ValueError, match="coalitions"):
        solve_menu_auction(big)
    with pytest.raises(ValueError, match="positive"):
        zero_temperature_path(game, betas=[1.0, 0.0])


def test_result_is_immutable_and_readable():
    res = solve_menu_auction(make_game([0.0, 1.0], [[2.0, 0.0], [2.0, 0.0]], beta=0.0))
    with pytest.raises(AttributeError):
        res.payoffs = None
    with pytest.raises(ValueError):
        res.transfers[0, 0] = 1.0
    with pytest.raises(TypeError):
        res.coalition_bounds[frozenset({0})] = 0.0
    text = repr(res)
    assert "menu-auction" in text and "payoffs_unique" in text
    table = res.coalition_table()
    assert "{principal_0, principal_1}" in table
    assert res.bound(["principal_0"]) == pytest.approx(2.0)
    assert res.bound([0, 1]) == pytest.approx(3.0)


# -- properties on random games -------------------------------------------------------------


def random_game(rng, m, n, integer=False):
    draw = (lambda size: rng.integers(-3, 4, size=size).astype(float)) if integer else rng.normal
    return make_game(draw(size=n), [draw(size=n) for _ in range(m)])


@pytest.mark.parametrize("seed", range(6))
def test_every_selection_is_a_frontier_point(seed):
    rng = np.random.default_rng(seed)
    game = random_game(rng, m=int(rng.integers(2, 6)), n=int(rng.integers(2, 6)))
    bounds = coalition_bounds(game)
    m = game.n_principals
    for selection in ("equal-sacrifice", "egalitarian", "max-sum", rng.uniform(0.5, 2.0, m)):
        res = solve_menu_auction(game, selection=selection)
        U = res.payoffs
        assert res.success, res.message
        assert truthful_set_violation(game, U) <= 1e-9
        # Pareto-optimal in P: every principal belongs to a coalition whose bound is tight.
        for i in range(m):
            assert min(abs(sum(U[j] for j in S) - b) for S, b in bounds.items() if i in S) <= 1e-8
        # a* is efficient and the agent's (weakly) best action under the truthful schedules.
        total = game.agent.utility + game.utilities.sum(axis=0)
        assert total[res.efficient_action] == pytest.approx(total.max())
        z = game.agent.utility + res.transfers.sum(axis=0)
        assert z[res.efficient_action] >= z.max() - 1e-9
        assert res.agent_payoff == pytest.approx(res.welfare - U.sum(), abs=1e-9)
    # The frontier vertices are frontier points too; uniqueness means a single vertex.
    V = res.frontier_vertices
    assert all(truthful_set_violation(game, p) <= 1e-8 for p in V)
    assert res.payoffs_unique == (len(V) == 1)


def test_weights_pick_the_weighted_maximum():
    rng = np.random.default_rng(11)
    game = random_game(rng, m=3, n=5)
    res = solve_menu_auction(game, selection=[1.0, 2.0, 3.0])
    best = max(np.dot([1.0, 2.0, 3.0], p) for p in res.frontier_vertices)
    assert np.dot([1.0, 2.0, 3.0], res.payoffs) == pytest.approx(best, abs=1e-8)


@pytest.mark.parametrize("seed", range(4))
def test_no_profitable_deviation_by_brute_force(seed):
    # Independent of the solver's certificate: on integer games, try every deviation of the
    # form "pay p on action a only" (p on a 0.25 grid; such single-action offers are enough to
    # induce any action) against the others' truthful schedules, with the agent choosing by
    # its own rule (best v + transfers, ties to the principals' total net payoff).
    rng = np.random.default_rng(100 + seed)
    game = random_game(rng, m=3, n=4, integer=True)
    v, u = game.agent.utility, game.utilities
    for selection in ("equal-sacrifice", "max-sum"):
        res = solve_menu_auction(game, selection=selection)
        tau = np.asarray(res.transfers)
        for i in range(game.n_principals):
            others = tau.sum(axis=0) - tau[i]
            for a, p in itertools.product(range(game.n_actions), np.arange(0.0, 12.01, 0.25)):
                dev = np.zeros(game.n_actions)
                dev[a] = p
                z = v + others + dev
                tied = np.flatnonzero(z >= z.max() - 1e-12)
                net = (u.sum(axis=0) - others - dev)[tied]
                choice = tied[np.argmax(net)]
                assert u[i, choice] - dev[choice] <= res.payoffs[i] + 1e-9


# -- the zero-temperature path ----------------------------------------------------------------


def test_zero_temperature_path_enters_the_truthful_set(tmp_path):
    rng = np.random.default_rng(5)
    game = random_game(rng, m=3, n=5)
    betas = [1.0, 0.1, 0.03, 0.01, 0.003]
    out = tmp_path / "path.png"
    path = zero_temperature_path(game, betas=betas, plot=out)
    assert path.success
    assert out.exists() and out.stat().st_size > 0
    np.testing.assert_allclose(path.betas, betas)
    # Concentration on the efficient action, and payoffs converging onto the frontier.
    assert np.all(np.diff(path.efficient_mass) > 0)
    assert path.efficient_mass[-1] > 0.98
    assert abs(path.frontier_slack[-1]) < 1e-3 < abs(path.frontier_slack[0])
    assert np.all(np.diff(np.abs(path.frontier_slack)) < 0)
    assert path.max_violation[-1] <= 1e-3
    assert "0 (BW)" in path.table()


def test_zero_temperature_path_second_price_converges_to_the_unique_payoffs():
    # The unique truthful payoffs (1, 0) of the hand-worked auction are the beta -> 0 limit.
    game = make_game([0.0, 0.0], [[3.0, 0.0], [0.0, 2.0]], beta=1.0)
    path = zero_temperature_path(game, betas=[1.0, 0.1, 0.01, 0.001])
    assert np.all(np.diff(path.max_violation) <= 0)
    assert path.max_violation[0] > 0.1
    np.testing.assert_allclose(path.payoffs[-1], [1.0, 0.0], atol=1e-2)
    assert path.efficient_mass[-1] > 0.99


# -- the example game files ---------------------------------------------------------------------

GAMES = Path(__file__).resolve().parents[1] / "examples" / "games"


@pytest.mark.parametrize(
    ("name", "payoffs", "unique"),
    [
        ("auction_second_price.json", [1.0, 0.0], True),
        ("auction_public_good.json", [1.5, 1.5], False),
    ],
)
def test_auction_game_files(name, payoffs, unique):
    from cage_games.io import load_game

    res = solve_menu_auction(load_game(GAMES / name))
    assert res.success and res.payoffs_unique == unique
    np.testing.assert_allclose(res.payoffs, payoffs, atol=1e-9)
