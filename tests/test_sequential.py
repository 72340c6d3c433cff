"""Sequential common agency on graphs: known answers, path-level identities, validation.

The one-principal, two-action stage game has a closed form (derived in docs/sequential.rst):
with rewards ``h > l`` on the two actions, agent utilities ``v1, v2`` and temperature ``beta``,
if the principal pays on the first action only, its threshold ``c`` solves
``pi_2 (c - l) = beta`` with ``pi_2 = 1 / (1 + exp((v1 - v2 + h - c) / beta))``. Writing
``y = (c - l) / beta - 1`` gives ``y e^y = exp(D)``, ``D = (v1 - v2 + h - l) / beta - 1``, so

    y = W(e^D)                        (Lambert W)
    principal's payoff  U = c - beta = l + beta * y
    agent's value       V = v2 + beta * log(1 + y)
    pi_1 = y / (1 + y)                (valid when c = l + beta (1 + y) < h).
"""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest
from scipy.special import lambertw, logsumexp

import cage_games as cg
from cage_games.sequential import (
    SequentialGame,
    compare_myopic,
    myopic_policy,
    outcome_distribution,
    solve_sequential,
)
from cage_games.solvers import solve

TOL = {"tol": 1e-13}


def closed_form(v1, v2, h, low, beta):
    y = float(lambertw(np.exp((v1 - v2 + h - low) / beta - 1.0)).real)
    assert low + beta * (1 + y) < h, "the principal must be active on action 1"
    return {"payoff": low + beta * y, "agent": v2 + beta * np.log1p(y), "pi1": y / (1 + y)}


def two_step_tree():
    g = nx.DiGraph()
    g.add_edge("root", "A", agent=0.0, principals=[2.0])
    g.add_edge("root", "B", agent=0.0, principals=[0.0])
    g.add_edge("A", "A1", agent=0.0, principals=[3.0])
    g.add_edge("A", "A2", agent=0.0, principals=[0.0])
    g.add_edge("B", "B1", agent=1.0, principals=[0.0])
    g.add_edge("B", "B2", agent=0.0, principals=[0.0])
    return g


def test_two_step_hand_worked():
    # beta = 1, one principal.
    # State A: v = (0, 0), u = (3, 0): D = 3 - 1 = 2, y_A = W(e^2) = 1.5571...,
    #   c = 1 + y_A = 2.557 < 3 (active): V_1(A) = y_A, V_agent(A) = log(1 + y_A).
    # State B: the principal is indifferent (u = (0, 0)) and pays nothing: V_1(B) = 0,
    #   V_agent(B) = log(e^1 + e^0) = log(1 + e).
    # Root: v~ = (log(1 + y_A), log(1 + e)), u~ = (2 + y_A, 0):
    #   D = log(1 + y_A) - log(1 + e) + 2 + y_A - 1 = 2.1827..., y_R = W(e^D) = 1.66997...,
    #   c = 1 + y_R < 2 + y_A (active): V_1(root) = y_R, V_agent(root) = log(1 + e) + log(1 + y_R),
    #   pi(root -> A) = y_R / (1 + y_R) = 0.62546...
    game = SequentialGame(two_step_tree(), beta=1.0)
    res = solve_sequential(game, **TOL)
    assert res.success
    A = closed_form(0.0, 0.0, 3.0, 0.0, 1.0)
    y_a = A["payoff"]
    assert y_a == pytest.approx(1.5571455989976, abs=1e-12)
    root = closed_form(np.log1p(y_a), np.log1p(np.e), 2.0 + y_a, 0.0, 1.0)
    assert root["payoff"] == pytest.approx(1.66997, abs=1e-5)
    assert res.principal_values["A"][0] == pytest.approx(y_a, abs=1e-10)
    assert res.agent_values["A"] == pytest.approx(A["agent"], abs=1e-10)
    assert res.policy["A"][0] == pytest.approx(A["pi1"], abs=1e-10)
    assert res.principal_values["B"][0] == pytest.approx(0.0, abs=1e-10)
    assert res.agent_values["B"] == pytest.approx(np.log1p(np.e), abs=1e-10)
    np.testing.assert_allclose(res.transfers["B"], 0.0, atol=1e-12)
    assert res.root_principal_values[0] == pytest.approx(root["payoff"], abs=1e-10)
    assert res.root_agent_value == pytest.approx(root["agent"], abs=1e-10)
    assert res.edge_policy("root")["A"] == pytest.approx(root["pi1"], abs=1e-10)
    for t in game.terminals:
        assert res.agent_values[t] == 0.0
    out = res.outcome_distribution()
    assert out["A1"] == pytest.approx(root["pi1"] * A["pi1"], abs=1e-10)
    assert sum(out.values()) == pytest.approx(1.0)


def test_one_step_graph_is_the_one_shot_game():
    v = [0.3, -0.2, 0.0]
    us = [[1.0, 0.0, 0.5], [0.0, 2.0, 0.1]]
    g = nx.DiGraph()
    for k, t in enumerate(["x", "y", "z"]):
        g.add_edge("s", t, agent=v[k], principals=[us[0][k], us[1][k]])
    res = solve_sequential(SequentialGame(g, beta=0.7, caps=[None, 1.5]), **TOL)
    one = solve(
        cg.CommonAgencyGame(
            cg.Agent(v, beta=0.7),
            [
                cg.Principal(us[0], name="principal_0"),
                cg.Principal(us[1], name="principal_1", cap=1.5),
            ],
        ),
        **TOL,
    )
    np.testing.assert_allclose(res.policy["s"], one.policy, atol=1e-12)
    np.testing.assert_allclose(res.transfers["s"], one.transfers, atol=1e-12)
    np.testing.assert_allclose(res.thresholds["s"], one.thresholds, atol=1e-12)
    np.testing.assert_allclose(res.root_principal_values, one.payoffs, atol=1e-12)
    assert res.root_agent_value == pytest.approx(one.agent_payoff, abs=1e-12)
    # Myopic play on a one-step graph is the same game.
    myo = myopic_policy(SequentialGame(g, beta=0.7, caps=[None, 1.5]), **TOL)
    np.testing.assert_allclose(myo.policy["s"], one.policy, atol=1e-12)
    assert myo.root_agent_value == pytest.approx(one.agent_payoff, abs=1e-10)
    np.testing.assert_allclose(myo.root_principal_values, one.payoffs, atol=1e-10)


def random_tree(rng, depth=3, branching=(2, 3), m=2):
    g = nx.DiGraph()
    frontier, count = [0], 1
    for _ in range(depth):
        nxt = []
        for s in frontier:
            for _ in range(int(rng.integers(branching[0], branching[1] + 1))):
                g.add_edge(
                    s, count, agent=float(rng.normal()), principals=rng.normal(size=m).tolist()
                )
                nxt.append(count)
                count += 1
        frontier = nxt
    return g


def paths(game):
    return [p for t in game.terminals for p in nx.all_simple_paths(game.graph, game.root, t)]


@pytest.mark.parametrize("seed", range(3))
def test_values_match_path_level_identities(seed):
    # Independent of the recursion: given the equilibrium transfers, the agent's value at the
    # root is beta * logsumexp over whole paths of sum(v + sum_i tau_i) / beta, the induced
    # path distribution is the softmax of those sums, and each principal's root value is its
    # expected sum of (u_i - tau_i) along the path.
    rng = np.random.default_rng(seed)
    beta = 0.5
    game = SequentialGame(random_tree(rng), beta=beta)
    res = solve_sequential(game, **TOL)
    assert res.success
    totals, net, probs = [], [], []
    for path in paths(game):
        z, w, p = 0.0, np.zeros(2), 1.0
        for s, t in itertools.pairwise(path):
            k = game.children[s].index(t)
            z += game.agent_rewards[s][k] + res.transfers[s][:, k].sum()
            w += game.principal_rewards[s][:, k] - res.transfers[s][:, k]
            p *= res.policy[s][k]
        totals.append(z)
        net.append(w)
        probs.append(p)
    totals = np.array(totals)
    assert res.root_agent_value == pytest.approx(beta * logsumexp(totals / beta), abs=1e-10)
    np.testing.assert_allclose(probs, np.exp(totals / beta - logsumexp(totals / beta)), atol=1e-10)
    np.testing.assert_allclose(
        res.root_principal_values, np.array(probs) @ np.array(net), atol=1e-10
    )


def test_dag_with_shared_state_and_per_principal_attributes():
    g = nx.DiGraph()
    g.add_edge("s", "a", agent=0.0, helpful=1.0, brief=0.0)
    g.add_edge("s", "b", agent=0.2, helpful=0.0, brief=1.0)
    g.add_edge("a", "m", agent=0.0, helpful=0.5, brief=0.0)
    g.add_edge("b", "m", agent=0.0, helpful=0.0, brief=0.5)
    g.add_edge("m", "end1", agent=0.0, helpful=1.0, brief=-1.0)
    g.add_edge("m", "end2", agent=0.1, helpful=-1.0, brief=1.0)
    game = SequentialGame(g, beta=0.5, principal_key=("helpful", "brief"))
    assert game.names == ("helpful", "brief")
    res = solve_sequential(game, **TOL)
    assert res.success
    out = res.outcome_distribution()
    assert set(out) == {"end1", "end2"}
    assert sum(out.values()) == pytest.approx(1.0)
    # "m" is solved once; both parents see the same continuation values.
    assert out["end1"] == pytest.approx(res.policy["m"][0])


def test_zero_temperature_sequence_follows_the_efficient_path():
    # With beta = 0 every stage is a menu auction; V_agent + sum_i V_i at the root is the
    # largest total surplus of any path, and the agent follows such a path.
    rng = np.random.default_rng(3)
    game = SequentialGame(random_tree(rng, depth=2), beta=0.0)
    res = solve_sequential(game)
    assert res.success
    surplus = {}
    for path in paths(game):
        surplus[path[-1]] = sum(
            game.agent_rewards[s][k] + game.principal_rewards[s][:, k].sum()
            for s, t in itertools.pairwise(path)
            for k in [game.children[s].index(t)]
        )
    best = max(surplus.values())
    assert res.root_agent_value + res.root_principal_values.sum() == pytest.approx(best, abs=1e-9)
    out = res.outcome_distribution()
    reached = [t for t, p in out.items() if p > 0.5]
    assert len(reached) == 1 and surplus[reached[0]] == pytest.approx(best, abs=1e-9)


def test_compare_myopic_on_the_hand_worked_tree():
    game = SequentialGame(two_step_tree(), beta=1.0)
    cmp = compare_myopic(game, **TOL)
    # Myopic root: the one-shot game on the edge rewards only, v = (0, 0), u = (2, 0). Paying
    # nothing, pi = (1/2, 1/2) and c = beta + E[u] = 1 + 1 = 2 = max u: the principal sits
    # exactly at the kink (W(e^1) = 1 in the closed form gives the same c), so it pays 0.
    np.testing.assert_allclose(cmp.myopic.policy["root"], [0.5, 0.5], atol=1e-10)
    np.testing.assert_allclose(cmp.myopic.transfers["root"], 0.0, atol=1e-10)
    assert cmp.myopic.thresholds["root"][0] == pytest.approx(2.0, abs=1e-10)
    # Below the root the stage games coincide (terminal continuation values are 0).
    np.testing.assert_allclose(cmp.myopic.policy["A"], cmp.sequential.policy["A"], atol=1e-12)
    assert cmp.sequential_outcomes.sum() == pytest.approx(1.0)
    assert cmp.myopic_outcomes.sum() == pytest.approx(1.0)
    assert cmp.total_variation == pytest.approx(
        abs(cmp.sequential.policy["root"][0] - cmp.myopic.policy["root"][0]), abs=1e-12
    )
    # Looking ahead, the principal steers more mass to its valuable branch and pays more.
    assert cmp.expected_rewards["sequential"][0] > cmp.expected_rewards["myopic"][0]
    assert cmp.expected_transfers["sequential"][0] > cmp.expected_transfers["myopic"][0]
    # Realised values of the myopic profile, by hand: at the root pi = (1/2, 1/2), no
    # transfer; below it the same stage games as in the sequential equilibrium. So
    #   V_1 = (2 + y_A) / 2 + 0 / 2 = 1 + y_A / 2 = 1.7786 (more than its 1.6700 in the
    #   sequential equilibrium: a far-sighted agent, drawn to B1, is costlier to steer),
    #   V_agent = (log(1 + y_A) + log(1 + e)) / 2 + beta * log 2 (its entropy bonus).
    y_a = cmp.sequential.principal_values["A"][0]
    assert cmp.myopic.root_principal_values[0] == pytest.approx(1 + y_a / 2, abs=1e-10)
    assert cmp.myopic.root_principal_values[0] > cmp.sequential.root_principal_values[0]
    assert cmp.myopic.root_agent_value == pytest.approx(
        (np.log1p(y_a) + np.log1p(np.e)) / 2 + np.log(2), abs=1e-10
    )
    dist = outcome_distribution(game, cmp.myopic.policy)
    np.testing.assert_allclose(list(dist.values()), cmp.myopic_outcomes)
    assert "total variation" in repr(cmp)


def test_game_and_result_are_immutable():
    g = two_step_tree()
    game = SequentialGame(g, beta=1.0)
    g.add_edge("A1", "later", agent=0.0, principals=[0.0])  # the caller's graph, not the game's
    assert "later" not in game.graph
    with pytest.raises(nx.NetworkXError):
        game.graph.add_edge("x", "y")
    res = solve_sequential(game)
    with pytest.raises(AttributeError):
        res.policy = {}
    with pytest.raises(TypeError):
        res.policy["A"] = np.ones(2)
    with pytest.raises(ValueError):
        res.policy["A"][0] = 1.0
    assert "root agent value" in repr(res)


# -- validation ---------------------------------------------------------------------------------


def edge_graph(**attrs):
    g = nx.DiGraph()
    g.add_edge("s", "a", **{"agent": 0.0, "principals": [1.0, 0.0], **attrs})
    g.add_edge("s", "b", agent=0.0, principals=[0.0, 1.0])
    return g


@pytest.mark.parametrize(
    ("graph", "kwargs", "error", "match"),
    [
        pytest.param(nx.Graph([(0, 1)]), {}, TypeError, "DiGraph", id="undirected"),
        pytest.param(nx.MultiDiGraph([(0, 1)]), {}, TypeError, "MultiDiGraph", id="multigraph"),
        pytest.param({"s": ["a"]}, {}, TypeError, "DiGraph", id="dict"),
        pytest.param(nx.DiGraph(), {}, ValueError, "no edges", id="empty"),
        pytest.param(
            nx.DiGraph([(0, 1), (1, 2), (2, 0)]), {}, ValueError, "no terminal", id="pure-cycle"
        ),
        pytest.param(
            nx.DiGraph([(0, 1), (1, 2), (2, 1), (1, 3)]), {}, ValueError, "acyclic", id="cycle"
        ),
        pytest.param(nx.DiGraph([(0, 2), (1, 2)]), {}, ValueError, "root=", id="two-sources"),
        pytest.param(edge_graph(), {"root": "zz"}, ValueError, "not a node", id="unknown-root"),
        pytest.param(edge_graph(), {"root": "a"}, ValueError, "no out-edges", id="terminal-root"),
        pytest.param(edge_graph(), {"beta": -1.0}, ValueError, "beta", id="negative-beta"),
        pytest.param(edge_graph(), {"caps": [1.0]}, ValueError, "caps", id="caps-length"),
        pytest.param(
            edge_graph(), {"principal_names": ["x"]}, ValueError, "principal_names", id="names"
        ),
    ],
)
def test_graph_validation(graph, kwargs, error, match):
    kwargs = {"beta": 1.0, **kwargs}
    with pytest.raises(error, match=match):
        SequentialGame(graph, **kwargs)


def test_reward_validation():
    g = edge_graph()
    del g.edges["s", "a"]["agent"]
    with pytest.raises(ValueError, match="'agent'"):
        SequentialGame(g, beta=1.0)
    g = edge_graph()
    del g.edges["s", "b"]["principals"]
    with pytest.raises(ValueError, match="'principals'"):
        SequentialGame(g, beta=1.0)
    with pytest.raises(ValueError, match="3 rewards but the game has 2"):
        g = edge_graph()
        g.edges["s", "b"]["principals"] = [0.0, 1.0, 2.0]
        SequentialGame(g, beta=1.0)
    for bad in (np.nan, np.inf):
        with pytest.raises(ValueError, match="finite"):
            SequentialGame(edge_graph(agent=bad), beta=1.0)
        with pytest.raises(ValueError, match="finite"):
            SequentialGame(edge_graph(principals=[bad, 0.0]), beta=1.0)
    with pytest.raises(TypeError, match="real number"):
        SequentialGame(edge_graph(agent="high"), beta=1.0)
    with pytest.raises(TypeError, match="sequence"):
        SequentialGame(edge_graph(principals=1.0), beta=1.0)
    with pytest.raises(ValueError, match="'brief'"):
        SequentialGame(edge_graph(), beta=1.0, principal_key=("brief",))
    with pytest.raises(TypeError, match="SequentialGame"):
        solve_sequential(edge_graph())


def test_unreachable_states_are_ignored():
    g = edge_graph()
    g.add_edge("other", "c", agent=0.0)  # no principal rewards, but unreachable from "s"
    game = SequentialGame(g, beta=1.0, root="s")
    assert set(game.order) == {"s", "a", "b"}
    assert solve_sequential(game).success
