"""Solvers: known answers worked by hand, cross-method agreement, properties on random games."""

import numpy as np
import pytest
from core_games import random_game
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import lambertw

import cage_games as cg

THRESHOLD_METHODS = ["newton", "gauss-seidel"]


def game_of(v, beta, *us, caps=None):
    caps = caps or [None] * len(us)
    return cg.CommonAgencyGame(
        cg.Agent(v, beta), [cg.Principal(u, cap=c) for u, c in zip(us, caps, strict=True)]
    )


# -- known answers ---------------------------------------------------------------------------
@pytest.mark.parametrize("method", [*THRESHOLD_METHODS, "diagonalization"])
def test_one_principal_two_actions_closed_form(method):
    # v = 0, beta = 1, u = (0, 3). Paying 3 - c on the right action, G = c * pi_left - 1 = 0
    # with pi_left = 1 / (1 + e^{3-c}); x = c - 1 solves x e^x = e^2, so c = 1 + W(e^2) and the
    # principal's payoff is c - beta = W(e^2).
    res = cg.solve(game_of([0.0, 0.0], 1.0, [0.0, 3.0]), method=method)
    w = float(lambertw(np.e**2).real)
    tol = 1e-6 if method == "diagonalization" else 1e-12
    assert res.success
    assert res.thresholds[0] == pytest.approx(1 + w, abs=tol)
    assert res.payoffs[0] == pytest.approx(w, abs=tol)
    assert res.transfers[0, 0] == pytest.approx(0.0, abs=tol)
    assert res.transfers[0, 1] == pytest.approx(3 - (1 + w), abs=tol)
    assert res.policy[1] == pytest.approx(1 / (1 + np.exp(-(2 - w))), abs=tol)


@pytest.mark.parametrize("method", THRESHOLD_METHODS)
def test_two_principals_two_actions_symmetric(method):
    # u1 = (0, 3), u2 = (3, 0): each pays for its own action; by symmetry pi = (1/2, 1/2),
    # G_i = c_i / 2 - 1 = 0 gives c = 2, transfers 1, payoffs 1.
    res = cg.solve(game_of([0.0, 0.0], 1.0, [0.0, 3.0], [3.0, 0.0]), method=method)
    np.testing.assert_allclose(res.thresholds, [2.0, 2.0], atol=1e-12)
    np.testing.assert_allclose(res.transfers, [[0.0, 1.0], [1.0, 0.0]], atol=1e-12)
    np.testing.assert_allclose(res.payoffs, [1.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(res.policy, [0.5, 0.5], atol=1e-12)


@pytest.mark.parametrize("method", [*THRESHOLD_METHODS, "diagonalization"])
def test_caps_binding(method):
    # As above with caps 0.5: both caps bind (3 - c > 0.5), pi stays (1/2, 1/2), and
    # c_i = beta + E[u_i - tau_i] = 1 + (3 - 0.5) / 2 = 2.25; payoffs 1.25.
    game = game_of([0.0, 0.0], 1.0, [0.0, 3.0], [3.0, 0.0], caps=[0.5, 0.5])
    res = cg.solve(game, method=method)
    tol = 1e-6 if method == "diagonalization" else 1e-12
    np.testing.assert_allclose(res.transfers, [[0.0, 0.5], [0.5, 0.0]], atol=tol)
    np.testing.assert_allclose(res.payoffs, [1.25, 1.25], atol=tol)
    if method != "diagonalization":
        np.testing.assert_allclose(res.thresholds, [2.25, 2.25], atol=1e-12)
    assert float(cg.nash_gap(game, res.transfers)) < 1e-8


def test_caps_are_respected_on_random_games():
    rng = np.random.default_rng(5)
    for _ in range(20):
        game = random_game(rng, 30, 3, 0.5, caps=True)
        res = cg.solve(game)
        assert res.success
        assert np.all(res.transfers <= game.caps[:, None] + 1e-12)
        assert np.all(res.transfers >= 0)


def test_kl_agent_zero_reference_gets_zero_probability():
    game = cg.CommonAgencyGame(
        cg.Agent.kl_regularized([0.5, 0.5, 0.0], 1.0), [cg.Principal([0.0, 1.0, 100.0])]
    )
    res = cg.solve(game)
    assert res.policy[2] == 0.0 and res.transfers[0, 2] == 0.0
    assert res.success and float(cg.nash_gap(game, res.transfers)) < 1e-8


def test_result_record_is_immutable_and_printable():
    res = cg.solve(game_of([0.0, 1.0], 1.0, [1.0, 0.0]))
    text = repr(res)
    for key in ("message", "success", "status", "method", "residual", "nit", "policy"):
        assert key in text
    with pytest.raises(AttributeError):
        res.success = False  # type: ignore[misc]
    with pytest.raises(ValueError):
        res.policy[0] = 0.5
    assert res.params["tol"] == 1e-10 and res.history[-1] == res.residual


def test_beta_zero_dispatches_to_the_menu_auction():
    res = cg.solve(game_of([0.0, 1.0], 0.0, [3.0, 0.0]))
    assert res.method == "menu-auction" and res.success
    assert res.policy.tolist() == [1.0, 0.0]
    with pytest.raises(NotImplementedError, match="menu auction"):
        cg.solve(game_of([0.0, 1.0], 0.0, [1.0, 0.0]), method="newton")
    with pytest.raises(ValueError, match="beta = 0"):
        cg.solve(game_of([0.0, 1.0], 1.0, [1.0, 0.0]), method="menu-auction")


def test_bad_solver_arguments():
    game = game_of([0.0, 1.0], 1.0, [1.0, 0.0])
    with pytest.raises(ValueError, match="method must be one of"):
        cg.solve(game, method="simplex")
    with pytest.raises(ValueError, match="tol"):
        cg.solve(game, tol=-1.0)
    with pytest.raises(TypeError, match="max_iter"):
        cg.solve(game, max_iter=2.5)
    with pytest.raises(ValueError, match="x0"):
        cg.solve(game, x0=[1.0, 2.0])
    with pytest.raises(TypeError, match="game"):
        cg.solve("game.json")


# -- properties on random games --------------------------------------------------------------
games = st.builds(
    lambda seed, n, m, logbeta, kl: random_game(
        np.random.default_rng(seed), n, m, 10**logbeta, kl=kl
    ),
    st.integers(0, 2**32 - 1),
    st.integers(1, 40),
    st.integers(1, 4),
    st.floats(-1.5, 1.0),
    st.booleans(),
)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(games)
def test_newton_equilibrium_is_certified(game):
    res = cg.solve(game, method="newton")
    assert res.success and res.residual <= 1e-10
    assert np.all(np.isfinite(res.policy)) and res.policy.sum() == pytest.approx(1.0, abs=1e-12)
    gap = cg.nash_gap(game, res.transfers)
    assert gap.total <= 1e-8, gap


@SETTINGS
@given(games)
def test_newton_and_gauss_seidel_agree(game):
    a = cg.solve(game, method="newton")
    b = cg.solve(game, method="gauss-seidel")
    assert a.success and b.success
    np.testing.assert_allclose(a.policy, b.policy, atol=1e-9)
    np.testing.assert_allclose(a.payoffs, b.payoffs, atol=1e-9 * (1 + np.abs(a.payoffs).max()))


@SETTINGS
@given(games, st.floats(-50, 50))
def test_adding_a_constant_to_v_changes_nothing(game, k):
    shifted = cg.CommonAgencyGame(
        cg.Agent(game.agent.utility + k, game.beta, game.agent.support), game.principals
    )
    a, b = cg.solve(game), cg.solve(shifted)
    np.testing.assert_allclose(a.policy, b.policy, atol=1e-9)
    np.testing.assert_allclose(
        a.transfers, b.transfers, atol=1e-8 * (1 + np.abs(a.transfers).max())
    )
    assert b.agent_payoff == pytest.approx(a.agent_payoff + k, abs=1e-8 * (1 + abs(k)))


@SETTINGS
@given(games, st.floats(0.1, 10.0))
def test_scaling_u_v_beta_together_scales_the_answer(game, s):
    scaled = cg.CommonAgencyGame(
        cg.Agent(game.agent.utility * s, game.beta * s, game.agent.support),
        [cg.Principal(p.utility * s, p.name) for p in game.principals],
    )
    a, b = cg.solve(game), cg.solve(scaled)
    np.testing.assert_allclose(b.policy, a.policy, atol=1e-9)
    np.testing.assert_allclose(b.thresholds, s * a.thresholds, rtol=1e-9, atol=1e-9 * s)


@SETTINGS
@given(games, st.floats(-10, 10))
def test_principal_with_constant_utility_pays_nothing(game, k):
    flat = cg.Principal(np.full(game.n_actions, k), name="flat")
    extended = cg.CommonAgencyGame(game.agent, [*game.principals, flat])
    res = cg.solve(extended)
    assert res.success
    assert np.all(res.transfers[-1] == 0.0)
    assert res.payoffs[-1] == pytest.approx(k, abs=1e-9 * (1 + abs(k)))
    np.testing.assert_allclose(res.policy, cg.solve(game).policy, atol=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_diagonalization_agrees_with_newton(seed):
    rng = np.random.default_rng(seed)
    game = random_game(rng, 12, 3, 0.5)
    a, b = cg.solve(game, method="newton"), cg.solve(game, method="diagonalization")
    assert b.success and b.method == "diagonalization"
    np.testing.assert_allclose(a.policy, b.policy, atol=1e-6)
    np.testing.assert_allclose(a.thresholds, b.thresholds, atol=1e-5)


def test_hard_small_temperature_games_converge():
    # Large stakes relative to beta (u / beta ~ 1e4): Newton needs its temperature continuation.
    rng = np.random.default_rng(11)
    for _ in range(10):
        game = random_game(rng, 400, 6, 0.01, spread=2.0)
        res = cg.solve(game)
        assert res.success and res.residual <= 1e-10, res


@pytest.mark.parametrize("method", THRESHOLD_METHODS)
def test_tight_tolerance_stops_at_the_rounding_floor(method):
    # tol below what float64 can resolve polishes to the floor and stops there, reporting
    # success, instead of running to max_iter (a regression: Newton used to loop until the
    # limit when the residual sat at 2e-16 above tol / 100).
    rng = np.random.default_rng(7)
    game = random_game(rng, 4, 3, 1.3)
    res = cg.solve(game, method=method, tol=1e-14)
    assert res.success and res.residual <= 1e-14
    assert res.nit < 50
