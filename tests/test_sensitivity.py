"""Sensitivity reports: implicit-function derivatives against re-solved finite differences."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import cage_games as cg
from cage_games.sensitivity import WRT, SensitivityReport, sensitivity
from cage_games.solvers import solve

H = 1e-5  # central differences: truncation ~H^2, solver error ~1e-14 / H
RTOL = 1e-5


def make_game(v, us, *, beta=1.0, caps=None, support=None):
    caps = caps or [None] * len(us)
    agent = cg.Agent(v, beta=beta, support=support)
    return cg.CommonAgencyGame(
        agent, [cg.Principal(u, cap=c) for u, c in zip(us, caps, strict=True)]
    )


# Three games: uncapped; capped with an action outside the agent's support; three principals.
rng = np.random.default_rng(11)
CASES = {
    "uncapped": dict(
        v=[0.0, 0.5, -0.3, 0.2], us=[[0.0, 3.0, 1.0, 2.0], [2.5, 0.0, 1.5, 0.5]], beta=0.7
    ),
    "capped+support": dict(
        v=[0.1, -0.2, 0.4, 0.0, 0.3],
        us=[[0.0, 2.4, 1.1, 3.0, 0.2], [1.9, 0.3, 0.0, 2.2, 2.8]],
        beta=0.5,
        caps=[0.8, None],
        support=[True, True, True, False, True],
    ),
    "three": dict(
        v=rng.normal(size=4).tolist(),
        us=rng.uniform(0, 3, size=(3, 4)).tolist(),
        beta=1.3,
        caps=[None, 1.2, None],
    ),
}


def outputs(res):
    return np.concatenate([res.thresholds, res.policy, res.payoffs, [res.agent_payoff]])


def analytic(D, idx):
    sl = (slice(None), *idx)
    return np.concatenate([D.thresholds[sl], D.policy[sl], D.payoffs[sl], [D.agent_payoff[idx]]])


def central(make, x0):
    plus = solve(make(H), tol=1e-14, x0=x0)
    minus = solve(make(-H), tol=1e-14, x0=x0)
    assert plus.success and minus.success
    return (outputs(plus) - outputs(minus)) / (2 * H)


def assert_close(fd, an, what):
    scale = max(1e-2, float(np.max(np.abs(an))))
    err = float(np.max(np.abs(fd - an))) / scale
    assert err < RTOL, f"{what}: relative error {err:.2e}"


@pytest.mark.parametrize("name", list(CASES))
def test_derivatives_match_finite_differences_of_resolved_equilibria(name):
    spec = CASES[name]
    game = make_game(**spec)
    res = solve(game, tol=1e-14)
    rep = sensitivity(game, res, lipschitz_samples=0)
    assert rep.smooth, "the test games must not sit on a kink"
    v = np.array(spec["v"], float)
    U = np.array(spec["us"], float)
    kw = {k: spec[k] for k in ("caps", "support") if k in spec}
    m, n = U.shape
    for j in range(m):

        def scale_w(t, j=j):
            return make_game(v, U * (1 + t * np.eye(m)[j])[:, None], beta=spec["beta"], **kw)

        assert_close(central(scale_w, res.thresholds), analytic(rep["weights"], (j,)), f"w[{j}]")
        for a in range(n):

            def bump_u(t, j=j, a=a):
                U2 = U.copy()
                U2[j, a] += t
                return make_game(v, U2, beta=spec["beta"], **kw)

            assert_close(
                central(bump_u, res.thresholds), analytic(rep["utilities"], (j, a)), f"u[{j},{a}]"
            )
    for a in range(n):

        def bump_v(t, a=a):
            v2 = v.copy()
            v2[a] += t
            return make_game(v2, U, beta=spec["beta"], **kw)

        assert_close(central(bump_v, res.thresholds), analytic(rep["v"], (a,)), f"v[{a}]")

    def bump_beta(t):
        return make_game(v, U, beta=spec["beta"] + t, **kw)

    assert_close(central(bump_beta, res.thresholds), analytic(rep["beta"], ()), "beta")


def test_identities_at_the_root():
    game = make_game(**CASES["capped+support"])
    res = solve(game, tol=1e-14)
    rep = sensitivity(game, res, lipschitz_samples=0)
    for name in WRT:
        D = rep[name]
        # Probabilities stay normalised; payoffs are c_i - beta at the root (fact 2).
        np.testing.assert_allclose(D.policy.sum(axis=0), 0.0, atol=1e-12)
        expected = np.asarray(D.thresholds) - (1.0 if name == "beta" else 0.0)
        np.testing.assert_allclose(D.payoffs, expected, atol=1e-10)
    # Off the agent's support nothing moves.
    np.testing.assert_array_equal(rep["weights"].policy[3], 0.0)
    # Euler: scaling u, v and beta together leaves pi unchanged (the game depends on u / beta);
    # with caps also scaled. Here caps are fixed, so check the uncapped game instead.
    g2 = make_game(**CASES["uncapped"])
    r2 = sensitivity(g2, solve(g2, tol=1e-14), lipschitz_samples=0)
    v = np.asarray(CASES["uncapped"]["v"])
    euler = r2["weights"].policy.sum(axis=1) + r2["v"].policy @ v + r2["beta"].policy * g2.beta
    np.testing.assert_allclose(euler, 0.0, atol=1e-10)


def test_conditioning_and_lipschitz_estimates():
    game = make_game(**CASES["uncapped"])
    res = solve(game, tol=1e-14)
    rep = sensitivity(game, res, lipschitz_samples=6, radius=1e-4, seed=0)
    assert isinstance(rep, SensitivityReport)
    np.testing.assert_allclose(
        rep.jacobian, cg.ThresholdSystem(game).evaluate(res.thresholds / game.beta).J
    )
    assert rep.condition_number == pytest.approx(np.linalg.cond(rep.jacobian))
    D = np.asarray(rep["weights"].policy)
    # The operator norm is attained at a sign vector and bounds every |D s|_1 / 2.
    for s in np.random.default_rng(0).uniform(-1, 1, size=(50, 2)):
        assert 0.5 * np.abs(D @ s).sum() <= rep.lipschitz_tv + 1e-12
    assert rep.lipschitz_tv > 0
    # Over a tiny ball the secants cannot beat the first-order bound by more than O(radius).
    assert rep.sampled_lipschitz_tv <= rep.lipschitz_tv * (1 + 1e-2)
    assert rep.sampled_lipschitz_tv > 0
    text = str(rep)
    assert text.startswith("SensitivityReport") and "cond(J)" in text
    json.dumps(rep.to_dict())


def test_validation():
    game = make_game(**CASES["uncapped"])
    res = solve(game)
    with pytest.raises(ValueError, match="wrt"):
        sensitivity(game, res, wrt="temperature")
    with pytest.raises(ValueError, match="wrt"):
        sensitivity(game, res, wrt=["weights", "cap"])
    with pytest.raises(ValueError, match="wrt is empty"):
        sensitivity(game, res, wrt=[])
    other = make_game([0.0, 0.0, 0.0, 0.0], [[1.0, 0.0, 0.0, 2.0], [0.0, 1.0, 3.0, 0.0]])
    with pytest.raises(ValueError, match="another game"):
        sensitivity(other, res)
    single = make_game([0.0, 0.0, 0.0, 0.0], [[1.0, 0.0, 0.0, 2.0]])
    with pytest.raises(ValueError, match="another game"):
        sensitivity(single, res)
    with pytest.raises(ValueError, match="did not converge"):
        sensitivity(game, dataclasses.replace(res, success=False, status=1))
    with pytest.raises(TypeError, match="EquilibriumResult"):
        sensitivity(game, res.thresholds)
    with pytest.raises(TypeError, match="game must be"):
        sensitivity("game", res)
    with pytest.raises(ValueError, match="radius"):
        sensitivity(game, res, radius=1.5)
    with pytest.raises(ValueError, match="beta > 0"):
        sensitivity(make_game([0.0, 0.0], [[0.0, 1.0]], beta=0.0), res)
    rep = sensitivity(game, res, wrt="v", lipschitz_samples=0)
    assert rep.wrt == ("v",)
    with pytest.raises(KeyError, match="this report has"):
        rep["weights"]
