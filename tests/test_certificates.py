"""Certificates: best responses and Nash gaps, independent of the threshold solvers."""

import numpy as np
import pytest
from core_games import random_game

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
        br = cg.best_response(game, i, res.transfers)
        assert br.method == "conic" and br.solver == "CLARABEL"
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
    assert cg.nash_gap(game, res.transfers * 0.9).total > 1e-3


def test_capped_best_response_is_a_global_threshold_search():
    game = cg.CommonAgencyGame(
        cg.Agent([0.0, 0.0, 0.0], 1.0),
        [cg.Principal([0.0, 3.0, 1.0], cap=0.8), cg.Principal([2.0, 0.0, 0.0])],
    )
    res = cg.solve(game)
    br = cg.best_response(game, 0, res.transfers)
    assert br.method == "threshold-search"
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
    gap = cg.nash_gap(game, res.transfers)
    assert [b.solver for b in gap.best_responses] == ["SCS", "SCS"]
    assert gap.total <= 1e-8
    assert cg.nash_gap(game, res.transfers * 0.8).total > 1e-4
    assert capfd.readouterr().out == ""
