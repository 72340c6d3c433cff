"""The threshold-system kernel: Jacobians against finite differences, log form, the box."""

import numpy as np
import pytest

import cage_games as cg


def _game(rng, n, m, beta, cap=None, scale=2.0):
    return cg.CommonAgencyGame(
        cg.Agent(rng.normal(size=n), beta),
        [cg.Principal(rng.normal(size=n) * scale, cap=cap) for _ in range(m)],
    )


def _fd(f, x, h):
    cols = []
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = h
        cols.append((f(x + e) - f(x - e)) / (2 * h))
    return np.stack(cols, axis=1)


@pytest.mark.parametrize("cap", [None, 1.0])
@pytest.mark.parametrize("seed", range(5))
def test_jacobians_match_finite_differences(seed, cap):
    rng = np.random.default_rng(seed)
    S = cg.ThresholdSystem(_game(rng, 50, 3, 0.5, cap))
    gam = rng.uniform(S.lower + 0.5, S.upper)
    ev = S.evaluate(gam)
    np.testing.assert_allclose(ev.J, _fd(lambda x: S.evaluate(x, False).G, gam, 1e-6), atol=1e-7)
    lev = S.evaluate_log(gam)
    np.testing.assert_allclose(
        lev.JF, _fd(lambda x: S.evaluate_log(x, False).F, gam, 1e-6), atol=1e-7
    )
    # F has the same roots (and signs) as G.
    assert np.all(np.sign(lev.F) == np.sign(ev.G))


def test_log_form_survives_underflow_of_the_unpaid_mass():
    # One dominant action with a logit margin of ~2000: every unpaid action of principal 0 has
    # probability below 1e-300, so 1 + G_0 underflows to 0 while F_0 stays finite.
    n = 6
    v = np.zeros(n)
    u0 = np.array([2000.0, 0.0, 1.0, 2.0, 3.0, 4.0])
    game = cg.CommonAgencyGame(cg.Agent(v, 1.0), [cg.Principal(u0), cg.Principal(-u0 / 10)])
    S = cg.ThresholdSystem(game)
    gam = np.array([10.0, 50.0])
    ev = S.evaluate_log(gam)
    assert 1.0 + ev.G[0] == 0.0  # the plain residual lost all information
    assert np.isfinite(ev.F[0]) and ev.F[0] < -600
    fd = _fd(lambda x: S.evaluate_log(x, False).F, gam, 1e-5)
    np.testing.assert_allclose(ev.JF, fd, rtol=1e-6, atol=1e-6)
    res = cg.solve(game)
    assert res.success and res.residual <= 1e-10


def test_existence_box_signs():
    rng = np.random.default_rng(0)
    for cap in (None, 0.7):
        S = cg.ThresholdSystem(_game(rng, 30, 3, 0.3, cap))
        for _ in range(20):
            gam = rng.uniform(S.lower, S.upper)
            for i in range(3):
                lo, hi = gam.copy(), gam.copy()
                lo[i], hi[i] = S.lower[i], S.upper[i]
                assert S.evaluate(lo, False).G[i] <= -1 + 1e-12
                assert S.evaluate(hi, False).G[i] >= -1e-12


def test_beta_zero_rejected():
    game = cg.CommonAgencyGame(cg.Agent([0.0, 1.0], 0.0), [cg.Principal([1.0, 0.0])])
    with pytest.raises(ValueError, match="beta > 0"):
        cg.ThresholdSystem(game)
