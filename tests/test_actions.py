"""Structured and continuous action spaces: known answers (Grossman-Helpman), convergence
under refinement, coordinates in results, and early errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cage_games as cg

# -- a two-good Grossman-Helpman economy (Grossman and Helpman, 1994, "Protection for sale",
# AER 84(4)). Per good: demand A - p, supply p (profit p^2/2), world price 1, tariff t, domestic
# price p = 1 + t, imports M = A - 2p. Welfare W = sum_i [p_i^2/2 + (A - p_i)^2/2 + t_i M_i];
# lobby i (owners of factor i, population share alpha_i) gets p_i^2/2 + alpha_i * sum_j
# [(A - p_j)^2/2 + t_j M_j]. The government maximises a W + sum of contributions, so in a truthful
# equilibrium it maximises a W + sum_{organised} W_i. Its first-order condition in t_i:
#   (a + alpha_L) t_i M_i' + (I_i - alpha_L) X_i = 0,  M' = -2,  X_i = 1 + t_i
# => t_i / (1 + t_i) = (I_i - alpha_L) / (2 (a + alpha_L))   (GH's formula with z_i / e_i = 1/2).
A, WEIGHT = 4.0, 2.0
SHARES = {"t1": 0.1, "t2": 0.2}


def surplus(t):
    p = 1 + t
    return (A - p) ** 2 / 2 + t * (A - 2 * p)


def welfare(t1, t2):
    return sum((1 + t) ** 2 / 2 + surplus(t) for t in (t1, t2))


def lobby(good):
    share = SHARES[good]
    return lambda t1, t2: (
        (1 + {"t1": t1, "t2": t2}[good]) ** 2 / 2 + share * (surplus(t1) + surplus(t2))
    )


def gh_formula(organised):
    alpha_l = sum(SHARES[g] for g in organised)
    out = {}
    for g in SHARES:
        r = ((g in organised) - alpha_l) / (2 * (WEIGHT + alpha_l))
        out[g] = r / (1 - r)
    return out


def gh_game(actions, organised, beta=0.0):
    agent = cg.Agent(utility=lambda t1, t2: WEIGHT * welfare(t1, t2), beta=beta)
    lobbies = [cg.Principal(utility=lobby(g), name=f"lobby_{g}") for g in organised]
    return cg.CommonAgencyGame(agent, lobbies, actions=actions)


@pytest.mark.parametrize("organised", [("t1",), ("t1", "t2"), ("t2",)])
def test_product_grid_at_beta_zero_is_within_one_grid_step_of_the_formula(organised):
    grid = cg.ActionGrid(t1=np.linspace(-0.3, 0.7, 101), t2=np.linspace(-0.3, 0.7, 101))
    res = cg.solve(gh_game(grid, organised))
    assert isinstance(res, cg.EquilibriumResult) and res.success
    want = gh_formula(organised)
    for g in ("t1", "t2"):
        assert abs(res.action_coords[g] - want[g]) <= 0.01 / 2 + 1e-12
    assert res.mean_action == res.action_coords  # one-hot at beta = 0


@pytest.mark.parametrize("organised", [("t1",), ("t1", "t2")])
def test_continuous_box_at_beta_zero_converges_to_the_first_order_condition(organised):
    box = cg.ContinuousActions(t1=(-0.3, 0.7), t2=(-0.3, 0.7))
    res = cg.solve(gh_game(box, organised))
    assert res.success, res.message
    want = gh_formula(organised)
    for g in ("t1", "t2"):
        assert abs(res.action_coords[g] - want[g]) < 1e-4
    steps = res.refinement
    assert len(steps) >= 2 and steps[0].n_actions == 21 * 21
    assert steps[-1].action_change <= 1e-6 and steps[-1].payoff_change <= 1e-6 * 40
    # the grid got finer only near the answer: far fewer points than a uniform grid of the
    # final spacing would need
    assert res.game.n_actions < 200_000


def test_quantal_payoffs_converge_when_the_grid_is_refined_twice():
    payoffs = []
    for resolution in (21, 41, 81):
        box = cg.ContinuousActions(t1=(-0.3, 0.7), t2=(-0.3, 0.7), resolution=resolution)
        res = cg.solve(gh_game(box, ("t1",), beta=0.05), options={"max_refinements": 0})
        payoffs.append(np.append(res.payoffs, res.agent_payoff))
    assert np.max(np.abs(payoffs[2] - payoffs[0])) < 1e-3
    assert np.max(np.abs(payoffs[2] - payoffs[1])) < np.max(np.abs(payoffs[1] - payoffs[0]))


def test_without_cell_weights_the_agent_payoff_drifts_by_beta_log_refinement():
    # The same grids as plain ActionGrids (no reference weights): the quantal agent's value
    # grows by about beta * log(4) when the number of points per dimension doubles (2-D).
    beta = 0.05
    vals = []
    for k in (41, 81):
        grid = cg.ActionGrid(t1=np.linspace(-0.3, 0.7, k), t2=np.linspace(-0.3, 0.7, k))
        vals.append(cg.solve(gh_game(grid, ("t1",), beta=beta)).agent_payoff)
    assert vals[1] - vals[0] == pytest.approx(beta * np.log(((81 - 1) / (41 - 1)) ** 2), rel=0.02)


def test_adaptive_refinement_at_positive_beta_reports_its_history():
    box = cg.ContinuousActions(t1=(-0.3, 0.7), t2=(-0.3, 0.7))
    res = cg.solve(gh_game(box, ("t1",), beta=0.05))
    assert res.success, res.message
    steps = res.refinement
    assert steps[0].payoff_change == np.inf
    assert steps[-1].payoff_change <= 1e-4 * max(1.0, abs(steps[-1].agent_payoff))
    assert [s.n_actions for s in steps] == sorted(s.n_actions for s in steps)
    marg = res.marginals
    for name in ("t1", "t2"):
        values, probs = marg[name]
        assert values.shape == probs.shape and probs.sum() == pytest.approx(1.0)
        assert res.mean_action[name] == pytest.approx(float(values @ probs))


def test_callables_and_arrays_give_the_same_game():
    grid = cg.ActionGrid(x=np.linspace(0, 1, 7), y=[0.0, 0.5, 1.0])
    f = lambda x, y: x * (1 - y)  # noqa: E731
    g = lambda x, y: np.sin(3 * x) + y  # noqa: E731
    by_call = cg.CommonAgencyGame(cg.Agent(f, beta=0.3), [cg.Principal(g)], actions=grid)
    c = grid.coords
    by_array = cg.CommonAgencyGame(cg.Agent(f(**c), beta=0.3), [cg.Principal(g(**c))], actions=grid)
    r1, r2 = cg.solve(by_call), cg.solve(by_array)
    np.testing.assert_allclose(r1.policy, r2.policy, atol=1e-12)
    assert r1.action_coords == grid.point(int(np.argmax(r1.policy)))


def test_plain_games_report_the_action_index_as_coordinate():
    game = cg.CommonAgencyGame(cg.Agent([0.0, 1.0, 0.0], beta=0.5), [cg.Principal([1.0, 0, 2])])
    res = cg.solve(game)
    assert res.action_coords == {"action": float(np.argmax(res.policy))}
    assert res.mean_action["action"] == pytest.approx(res.policy @ np.arange(3))


def test_grid_index_point_and_volumes():
    grid = cg.ActionGrid(a=[0.0, 1.0, 3.0], b=[0.0, 2.0])
    assert grid.index(a=1.1, b=1.9) == 3 and grid.point(3) == {"a": 1.0, "b": 2.0}
    vol = grid.cell_volumes(np.array([0.0, 0.0]), np.array([3.0, 2.0]))
    assert vol.sum() == pytest.approx(6.0)  # the cells tile the box
    np.testing.assert_allclose(vol.reshape(3, 2)[:, 0], [0.5, 1.5, 1.0])


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: cg.ActionGrid(), "at least one dimension"),
        (lambda: cg.ActionGrid(t=[0.0, 0.0]), "strictly increasing"),
        (lambda: cg.ActionGrid(t=[[0.0, 1.0]]), "1-D"),
        (lambda: cg.ContinuousActions(t=(1.0, 0.0)), "lo < hi"),
        (lambda: cg.ContinuousActions(t=(0.0, 1.0), resolution=1), "resolution"),
        (
            lambda: cg.CommonAgencyGame(
                cg.Agent(np.zeros(21), beta=0.1),
                [cg.Principal(lambda t: t)],
                actions=cg.ContinuousActions(t=(0.0, 1.0)),
            ),
            "must be a vectorised callable",
        ),
        (
            lambda: cg.CommonAgencyGame(
                cg.Agent(lambda t: t, beta=0.1), [cg.Principal(lambda t: -t)]
            ),
            "actions=cg.ActionGrid",
        ),
        (
            lambda: cg.CommonAgencyGame(
                cg.Agent(lambda t: t, beta=0.1),
                [cg.Principal(lambda s: s)],
                actions=cg.ActionGrid(t=[0.0, 1.0]),
            ),
            "keyword arguments t",
        ),
        (
            lambda: cg.CommonAgencyGame(
                cg.Agent(lambda t: np.ones(5), beta=0.1),
                [cg.Principal(lambda t: t)],
                actions=cg.ActionGrid(t=[0.0, 1.0]),
            ),
            "vectorised callable",
        ),
    ],
)
def test_clear_errors(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_refine_options_are_only_for_continuous_games():
    game = cg.CommonAgencyGame(cg.Agent([0.0, 1.0], beta=0.5), [cg.Principal([1.0, 0.0])])
    with pytest.raises(ValueError, match="ContinuousActions"):
        cg.solve(game, options={"refine_tol": 1e-3})


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=8, unique=True),
    st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=5, unique=True),
)
def test_cells_tile_the_box_and_marginals_are_distributions(xs, ys):
    grid = cg.ActionGrid(x=sorted(xs), y=sorted(ys))
    lower = np.array([min(xs) - 1.0, min(ys) - 0.5])
    upper = np.array([max(xs) + 1.0, max(ys) + 0.5])
    vol = grid.cell_volumes(lower, upper)
    assert np.all(vol > 0)
    assert vol.sum() == pytest.approx(np.prod(upper - lower), rel=1e-12)
    p = np.random.default_rng(len(xs) * 10 + len(ys)).dirichlet(np.ones(grid.size))
    marg = grid.marginals(p)
    assert marg["x"].sum() == pytest.approx(1.0) and marg["y"].sum() == pytest.approx(1.0)
    mean = grid.mean(p)
    assert min(xs) - 1e-12 <= mean["x"] <= max(xs) + 1e-12
    assert mean["y"] == pytest.approx(float(p @ grid.coords["y"]))


def test_a_scalar_only_utility_is_evaluated_point_by_point_with_a_warning():
    import math

    grid = cg.ActionGrid(t=np.linspace(0.0, 1.0, 5))
    with pytest.warns(UserWarning, match="not vectorised"):
        game = cg.CommonAgencyGame(
            cg.Agent(lambda t: math.exp(-t), beta=0.5), [cg.Principal(lambda t: t)], actions=grid
        )
    np.testing.assert_allclose(game.agent.utility, np.exp(-np.linspace(0.0, 1.0, 5)))
