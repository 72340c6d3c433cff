"""Certificates: best responses and Nash gaps, independent of the threshold solvers."""

import numpy as np
import pytest
from core_games import random_game
from hypothesis import given, settings
from hypothesis import strategies as st

import cage_games as cg


def test_gap_is_positive_away_from_equilibrium_and_bounds_are_ordered():
    rng = np.random.default_rng(0)
    game = random_game(rng, 20, 3, 0.5)
    res = cg.solve(game)
    for factor in (0.0, 0.5, 1.5):
        gap = cg.nash_gap(game, res.transfers * factor)
        assert gap.total > 1e-4
        assert np.all(gap.lower <= gap.per_principal + 1e-12)
        # The achieved improvement is a real one: re-evaluate it by the forward model.
        for br in gap.best_responses:
            tau = res.transfers * factor
            tau[br.principal] = br.transfer
            assert cg.payoffs(game, tau)[br.principal] == pytest.approx(br.payoff, abs=1e-12)


def test_best_response_to_equilibrium_is_the_equilibrium_schedule():
    rng = np.random.default_rng(1)
    game = random_game(rng, 15, 2, 1.0)
    res = cg.solve(game)
    for i in range(2):
        for method, solver in (("threshold", "bisection+brent"), ("conic", "CLARABEL")):
            br = cg.best_response(game, i, res.transfers, method=method)
            assert br.method == method and br.solver == solver
            np.testing.assert_allclose(br.transfer, res.transfers[i], atol=1e-7)
            assert br.improvement <= 1e-9
            assert br.payoff == pytest.approx(res.payoffs[i], abs=1e-9)


def test_harsh_game_stubborn_reference_large_stakes():
    # A reference giving ~1e-300 to some actions and stakes 100x beta: the conic solver's own
    # objective is off here; the certificate must still be tight.
    rng = np.random.default_rng(2)
    logits = rng.normal(size=50) * 3
    logits[:10] = -690.0
    p0 = np.exp(logits - logits.max())
    beta = 0.5
    game = cg.CommonAgencyGame(
        cg.Agent.kl_regularized(p0 / p0.sum(), beta),
        [cg.Principal(rng.uniform(0, 100 * beta, size=50)) for _ in range(3)],
    )
    res = cg.solve(game)
    gap = cg.nash_gap(game, res.transfers)
    assert gap.total <= 1e-8, gap
    assert gap.consistent is True and gap.cross_checked == 3
    off = cg.nash_gap(game, res.transfers * 0.9)
    assert off.total > 1e-3 and off.consistent is True
    _assert_brackets_agree(off)


def test_capped_best_response_is_a_global_threshold_search():
    game = cg.CommonAgencyGame(
        cg.Agent([0.0, 0.0, 0.0], 1.0),
        [cg.Principal([0.0, 3.0, 1.0], cap=0.8), cg.Principal([2.0, 0.0, 0.0])],
    )
    res = cg.solve(game)
    br = cg.best_response(game, 0, res.transfers)
    assert br.method == "threshold"
    assert br.improvement <= 1e-9
    assert np.all(br.transfer <= 0.8)


def test_certificate_input_validation():
    game = cg.CommonAgencyGame(cg.Agent([0.0, 1.0], 1.0), [cg.Principal([1.0, 0.0], cap=1.0)])
    with pytest.raises(ValueError, match="shape"):
        cg.nash_gap(game, np.zeros((2, 2)))
    with pytest.raises(ValueError, match=">= 0"):
        cg.nash_gap(game, [[-1.0, 0.0]])
    with pytest.raises(ValueError, match="finite"):
        cg.nash_gap(game, [[np.nan, 0.0]])
    with pytest.raises(ValueError, match="cap"):
        cg.nash_gap(game, [[2.0, 0.0]])
    with pytest.raises(ValueError, match="principal index"):
        cg.best_response(game, 3, [[0.0, 0.0]])
    zero = cg.CommonAgencyGame(cg.Agent([0.0, 1.0], 0.0), [cg.Principal([1.0, 0.0])])
    with pytest.raises(NotImplementedError):
        cg.nash_gap(zero, [[0.0, 0.0]])


def test_fallback_to_scs_stays_tight_and_quiet(monkeypatch, capfd):
    # When CLARABEL fails, the certificate falls back to SCS (first-order, less accurate, and
    # its C code prints warnings). The bounds never trust the solver, so the gap stays tight.
    import cvxpy as cp

    original = cp.Problem.solve

    def clarabel_fails(self, *args, **kwargs):
        if kwargs.get("solver") == "CLARABEL":
            raise cp.error.SolverError("forced failure")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cp.Problem, "solve", clarabel_fails)
    rng = np.random.default_rng(4)
    game = random_game(rng, 30, 2, 0.5)
    res = cg.solve(game)
    for factor in (1.0, 0.8):
        brs = [cg.best_response(game, i, res.transfers * factor, method="conic") for i in range(2)]
        assert [b.solver for b in brs] == ["SCS", "SCS"]
        gap = sum(b.improvement for b in brs)
        assert gap <= 1e-8 if factor == 1.0 else gap > 1e-4
    assert capfd.readouterr().out == ""


def _assert_brackets_agree(gap, tol=1e-9):
    """Threshold and conic brackets overlap, and each is tight."""
    for br in gap.best_responses:
        x = br.cross_check
        if x is None:  # a capped principal: no convex program
            continue
        assert x.method == "conic"
        scale = max(1.0, abs(br.payoff))
        assert br.payoff <= br.upper_bound + 1e-15 * scale
        assert x.payoff <= br.upper_bound + tol * scale, (x, br)
        assert br.payoff <= x.upper_bound + tol * scale, (x, br)
        assert br.upper_bound - br.payoff <= 1e-10 * scale


def _brute_force_best(game, i, tau, rng, starts=6):
    """Best payoff found by L-BFGS-B on the box from random starts (a lower bound on the best)."""
    from scipy import optimize

    others = tau.sum(axis=0) - tau[i]
    cap = game.caps[i]
    hi = cap if np.isfinite(cap) else float(np.ptp(game.utilities[i])) + 1.0

    def neg(t):
        full = tau.copy()
        full[i] = t
        return -cg.payoffs(game, full)[i]

    best = -np.inf
    for k in range(starts):
        x0 = rng.uniform(0, hi, size=game.n_actions) if k else np.zeros(game.n_actions)
        r = optimize.minimize(neg, x0, bounds=[(0, hi)] * game.n_actions, method="L-BFGS-B")
        best = max(best, -r.fun)
    del others
    return best


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(2, 25),
    m=st.integers(1, 3),
    beta=st.sampled_from([0.05, 0.3, 1.0, 4.0]),
    kind=st.sampled_from(["plain", "kl", "stubborn"]),
    caps=st.booleans(),
    factor=st.sampled_from([0.0, 0.5, 1.0, 1.7]),
)
def test_threshold_certificate_agrees_with_the_conic_program(seed, n, m, beta, kind, caps, factor):
    # Two independent methods (a 1-D search justified by KKT, and an exponential-cone program
    # with a Lagrange dual bound) must give overlapping, tight brackets on random profiles;
    # capped principals (no convex program) are covered by the local-search test below.
    rng = np.random.default_rng(seed)
    game = random_game(rng, n, m, beta, kl=kind != "plain", caps=caps, spread=1.5)
    if kind == "stubborn":  # a reference giving ~1e-300 to some actions, stakes up to 100 beta
        logits = rng.normal(size=n) * 3
        logits[: max(1, n // 4)] = -690.0
        p0 = np.exp(logits - logits.max())
        agent = cg.Agent.kl_regularized(p0 / p0.sum(), beta)
        game = cg.CommonAgencyGame(agent, [
            cg.Principal(rng.uniform(0, 100 * beta, size=n), cap=p.cap) for p in game.principals
        ])  # fmt: skip
    tau = cg.solve(game).transfers * factor
    tau = np.minimum(tau, game.caps[:, None])
    gap = cg.nash_gap(game, tau, cross_check=True)
    if gap.cross_checked:
        assert gap.consistent is True
        _assert_brackets_agree(gap, tol=1e-8)
    for br in gap.best_responses:
        scale = max(1.0, abs(br.payoff))
        assert br.current_payoff <= br.payoff + 1e-12 * scale <= br.upper_bound + 2e-12 * scale
        assert br.upper_bound - br.payoff <= 1e-10 * scale


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(2, 8),
    beta=st.sampled_from([0.1, 0.5, 2.0]),
    factor=st.sampled_from([0.0, 0.5, 1.0]),
)
def test_capped_threshold_certificate_beats_local_search_and_brackets_it(seed, n, beta, factor):
    # With a cap there is no convex program; the bracket must contain every payoff that a
    # multi-start local search over the whole box [0, cap]^n finds, and reach the best of them.
    rng = np.random.default_rng(seed)
    game = random_game(rng, n, 2, beta, caps=True)
    tau = cg.solve(game).transfers * factor
    br = cg.best_response(game, 0, tau)
    assert np.isfinite(game.caps[0]) and np.all(br.transfer <= game.caps[0] * (1 + 1e-12))
    found = _brute_force_best(game, 0, tau, rng)
    scale = max(1.0, abs(br.payoff))
    assert found <= br.upper_bound + 1e-9 * scale
    assert br.payoff >= found - 1e-7 * scale
    assert br.upper_bound - br.payoff <= 1e-10 * scale


def test_capped_harsh_game_certificate_is_tight():
    # Stubborn reference (1e-300 entries), stakes 100x beta, caps that bind on some actions.
    rng = np.random.default_rng(12)
    logits = rng.normal(size=60) * 3
    logits[:10] = -690.0
    p0 = np.exp(logits - logits.max())
    beta = 0.5
    game = cg.CommonAgencyGame(
        cg.Agent.kl_regularized(p0 / p0.sum(), beta),
        [cg.Principal(rng.uniform(0, 50, size=60), cap=c) for c in (5.0, None, 0.3)],
    )
    res = cg.solve(game)
    assert res.success
    gap = cg.nash_gap(game, res.transfers)
    assert gap.total <= 1e-8, gap
    assert gap.cross_checked == 1 and gap.consistent is True
    assert cg.nash_gap(game, res.transfers * 0.9).total > 1e-3


def test_certificate_scales_to_200000_actions():
    # The old conic certificate had not finished after 120 s here; the threshold search is
    # O(n log n). (Timing against the solve is in benchmarks/certificate.py, not here.)
    rng = np.random.default_rng(5)
    game = random_game(rng, 200_000, 2, 0.5, kl=True, caps=True)
    res = cg.solve(game)
    gap = cg.nash_gap(game, res.transfers)
    assert gap.cross_checked == 0
    assert gap.total <= 1e-8
    assert all(b.upper_bound - b.payoff <= 1e-10 for b in gap.best_responses)


def test_conic_is_bounded_by_size_and_refuses_caps():
    rng = np.random.default_rng(6)
    game = random_game(rng, 5, 2, 1.0, caps=True)
    tau = np.zeros((2, 5))
    with pytest.raises(ValueError, match="capped"):
        cg.best_response(game, 0, tau, method="conic")
    with pytest.raises(ValueError, match="method"):
        cg.best_response(game, 1, tau, method="grid")
    with pytest.raises(ValueError, match="time_limit"):
        cg.best_response(game, 1, tau, method="conic", time_limit=-1)
    big = random_game(rng, cg.certificates.CONIC_MAX_ACTIONS + 1, 1, 1.0)
    with pytest.raises(ValueError, match="limited to"):
        cg.best_response(big, 0, np.zeros((1, big.n_actions)), method="conic")
    with pytest.raises(TypeError, match="cross_check"):
        cg.nash_gap(game, tau, cross_check="yes")
    with pytest.raises(ValueError, match="not an installed cvxpy solver"):
        cg.nash_gap(game, tau, solver="NOPE")
    with pytest.raises(TypeError, match="solver"):
        cg.nash_gap(game, tau, solver=3)


@pytest.mark.parametrize(
    "scale, beta",
    [(1e300, 1.0), (1.0, 1e-300), (1e200, 1e-200)],
    ids=["u1e300", "beta1e-300", "mix"],
)
def test_overflowing_games_raise_a_value_error(scale, beta):
    game = cg.CommonAgencyGame(
        cg.Agent([0.0, 0.0, 0.0], beta),
        [cg.Principal([scale, -scale, 0.0]), cg.Principal([0.0, scale, -scale])],
    )
    with pytest.raises(ValueError, match="rescale"):
        cg.nash_gap(game, np.zeros((2, 3)))
