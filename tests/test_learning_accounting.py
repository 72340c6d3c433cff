"""Issue 11: the regret accounting after the rounds is O(T n + T K), and long runs show progress."""

from __future__ import annotations

import numpy as np
import pytest
from core_games import random_game
from hypothesis import given, settings
from hypothesis import strategies as st

import cage_games as cg
from cage_games.learning import dynamics, learn
from cage_games.learning._kernel import Kernel


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(2, 30),  # random_game's caps need two distinct utilities
    m=st.integers(1, 3),
    beta=st.sampled_from([0.02, 0.3, 2.0]),
    kl=st.booleans(),
    caps=st.booleans(),
)
def test_prefix_sum_accounting_equals_direct_evaluation(seed, n, m, beta, kl, caps):
    rng = np.random.default_rng(seed)
    game = random_game(rng, n, m, beta, kl=kl, caps=caps, spread=2.0)
    kernel = Kernel(game)
    played = rng.uniform(kernel.low - 1, kernel.high + 1, size=(23, m))
    for i in range(m):
        cs = np.concatenate(
            [np.linspace(kernel.low[i] - 1, kernel.high[i] + 1, 40), game.utilities[i]]
        )  # thresholds on the breakpoints too
        fast = dynamics._hindsight_sums(kernel, i, played, cs)
        slow = dynamics._hindsight_sums_direct(kernel, i, played, cs)
        np.testing.assert_allclose(fast, slow, rtol=1e-11, atol=1e-11 * np.abs(slow).max())


def test_stubborn_reference_and_huge_caps_stay_finite():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=40) * 3
    logits[:8] = -690.0
    p0 = np.exp(logits - logits.max())
    game = cg.CommonAgencyGame(
        cg.Agent.kl_regularized(p0 / p0.sum(), 0.01),
        [cg.Principal(rng.uniform(0, 20, 40), cap=15.0), cg.Principal(rng.uniform(0, 20, 40))],
    )
    kernel = Kernel(game)
    played = rng.uniform(kernel.low, kernel.high, size=(11, 2))
    for i in range(2):
        cs = np.linspace(kernel.low[i], kernel.high[i], 30)
        fast = dynamics._hindsight_sums(kernel, i, played, cs)
        slow = dynamics._hindsight_sums_direct(kernel, i, played, cs)
        assert np.isfinite(fast).all()
        np.testing.assert_allclose(fast, slow, rtol=1e-10, atol=1e-10 * np.abs(slow).max())


def test_grid_accounting_never_evaluates_each_threshold(monkeypatch):
    # The old accounting evaluated the agent's response for every (round, threshold): O(T n K).
    rng = np.random.default_rng(0)
    game = random_game(rng, 50, 2, 0.5)
    kernel = Kernel(game)
    played = rng.uniform(kernel.low, kernel.high, size=(30, 2))

    def forbidden(*args, **kwargs):
        raise AssertionError("per-threshold evaluation in the grid accounting")

    monkeypatch.setattr(kernel, "payoff", forbidden)
    out = dynamics._hindsight_sums(kernel, 0, played, np.linspace(kernel.low[0], 2, 201))
    assert out.shape == (201,)


def test_long_runs_show_progress_by_default(monkeypatch, capsys):
    game = cg.CommonAgencyGame(cg.Agent([0.0, 0.0, 0.0], 1.0), [cg.Principal([0.0, 1.0, 2.0])])
    learn(game, "hedge", rounds=20, seed=0, equilibrium=False)
    assert "regret in hindsight" not in capsys.readouterr().err
    monkeypatch.setattr(dynamics, "_LONG_RUN", 10)
    learn(game, "hedge", rounds=20, seed=0, equilibrium=False)
    err = capsys.readouterr().err
    assert "learn[hedge]" in err and "regret in hindsight" in err
    learn(game, "hedge", rounds=20, seed=0, equilibrium=False, progress=False)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("learner", ["hedge", "optimistic-hedge", "gradient"])
def test_regrets_unchanged_by_the_faster_accounting(monkeypatch, learner):
    rng = np.random.default_rng(1)
    game = random_game(rng, 12, 2, 0.4, caps=True)
    fast = learn(game, learner, rounds=40, seed=5, equilibrium=False)
    monkeypatch.setattr(dynamics, "_hindsight_sums", dynamics._hindsight_sums_direct)
    slow = learn(game, learner, rounds=40, seed=5, equilibrium=False)
    np.testing.assert_allclose(fast.regret, slow.regret, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(fast.interval_regret, slow.interval_regret, rtol=1e-9, atol=1e-9)
