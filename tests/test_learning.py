"""No-regret learning dynamics (cage_games.learning): bounds, regret accounting, convergence.

Tolerances on convergence were set from measurements (seed 0; see the comments) with a margin,
and each convergence test has a negative control showing the criterion rejects a learner that
does not learn.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import cage_games as cg
from cage_games.learning import (
    LEARNERS,
    Hedge,
    LearningResult,
    OnlineGradientAscent,
    OptimisticHedge,
    learn,
    plot_learning,
    threshold_payoff_gradients,
    threshold_payoffs,
)
from cage_games.learning._kernel import Kernel

# -- games ------------------------------------------------------------------------------------


def one_principal() -> cg.CommonAgencyGame:
    return cg.CommonAgencyGame(
        cg.Agent([0.0, 0.0, 0.0, 0.0], beta=1.0), [cg.Principal([0.0, 1.0, 2.0, 3.0], name="a")]
    )


def small_stakes() -> cg.CommonAgencyGame:
    """Two principals whose utility ranges are below beta: at the (unique) equilibrium nobody
    pays, and the learners must learn to pay nothing."""
    return cg.CommonAgencyGame(
        cg.Agent([0.0, 0.2, 0.0, 0.1], beta=1.0),
        [
            cg.Principal([0.0, 0.6, 0.3, 0.1], name="a"),
            cg.Principal([0.5, 0.0, 0.2, 0.6], name="b"),
        ],
    )


def competing() -> cg.CommonAgencyGame:
    """Two active principals pulling towards different actions; unique equilibrium (proved by
    the dominance bound of cage_games.uniqueness, spectral radius 0.92)."""
    return cg.CommonAgencyGame(
        cg.Agent([-0.6, 0.4, -0.1, -0.1], beta=1.0),
        [
            cg.Principal([0.3, 1.2, 3.6, 0.2], name="a"),
            cg.Principal([3.4, 1.0, 0.3, 2.3], name="b"),
        ],
    )


def random_game(rng: np.random.Generator, caps: bool, support: bool = False) -> cg.CommonAgencyGame:
    n = int(rng.integers(2, 7))
    m = int(rng.integers(1, 4))
    beta = float(rng.choice([0.2, 0.7, 2.0]))
    sup = None
    if support:
        sup = rng.random(n) < 0.7
        sup[:2] = True  # at least two actions, so thresholds range over an interval
    agent = cg.Agent(rng.normal(size=n), beta, support=sup)
    principals = [
        cg.Principal(rng.uniform(-1.0, 3.0, n), cap=float(rng.uniform(0.3, 2.0)) if caps else None)
        for _ in range(m)
    ]
    return cg.CommonAgencyGame(agent, principals)


# -- the payoff derivative --------------------------------------------------------------------


@pytest.mark.parametrize("caps", [False, True])
def test_gradient_matches_central_finite_differences(caps):
    rng = np.random.default_rng(11 if caps else 7)
    worst, checked = 0.0, 0
    for _ in range(40):
        game = random_game(rng, caps=caps, support=True)
        k = Kernel(game)
        c = rng.uniform(k.low, k.high)
        kinks = np.concatenate([game.utilities, game.utilities - game.caps[:, None]], axis=1)
        if np.min(np.abs(kinks - c[:, None])) < 1e-4:
            continue  # a kink within reach of the difference quotient (tested separately)
        grad = threshold_payoff_gradients(game, c)
        checked += 1
        for i in range(game.n_principals):
            h = 1e-6
            e = np.zeros(game.n_principals)
            e[i] = h
            fd = (threshold_payoffs(game, c + e)[i] - threshold_payoffs(game, c - e)[i]) / (2 * h)
            worst = max(worst, abs(fd - grad[i]))
    assert checked > 30
    assert worst < 1e-7  # measured 6e-10


def test_gradient_is_the_left_derivative_at_a_kink():
    game = one_principal()
    c_top = np.array([3.0])  # = max u: nothing is paid to the right, the right derivative is 0
    h = 1e-7
    backward = (threshold_payoffs(game, c_top)[0] - threshold_payoffs(game, c_top - h)[0]) / h
    forward = (threshold_payoffs(game, c_top + h)[0] - threshold_payoffs(game, c_top)[0]) / h
    assert forward == pytest.approx(0.0, abs=1e-12)
    assert threshold_payoff_gradients(game, c_top)[0] == pytest.approx(backward, abs=1e-5)
    assert abs(backward) > 0.05  # a real kink, so the convention matters


def test_gradient_uncapped_equals_minus_active_mass_times_threshold_residual():
    # dU_i/dc_i = -P(u_i > c_i) G_i(c)/beta: an independent route through ThresholdSystem.
    rng = np.random.default_rng(5)
    for _ in range(20):
        game = random_game(rng, caps=False)
        k = Kernel(game)
        c = rng.uniform(k.low, k.high)
        pi = k.policy(c)
        active = game.utilities > c[:, None]
        mass = (active * pi).sum(axis=1)
        G = cg.ThresholdSystem(game).residual(c)
        np.testing.assert_allclose(threshold_payoff_gradients(game, c), -mass * G, atol=1e-12)


def test_payoff_is_unimodal_but_not_concave_in_the_threshold_without_caps():
    # docs/learning.rst: without caps U_i(c_i) rises then falls (its derivative is
    # -P(A_i) G_i / beta and G_i has one root), yet it is not concave in general (measured:
    # 91 of 300 random sections non-concave), so Zinkevich's bound covers the linearised regret.
    rng = np.random.default_rng(8)
    nonconcave = 0
    for _ in range(60):
        game = random_game(rng, caps=False)
        k = Kernel(game)
        c = rng.uniform(k.low, k.high)
        total, t = k.logits(c)
        xs = np.linspace(k.low[0], k.high[0], 1501)
        u = k.payoff(0, total - t[0], xs)
        steps = np.diff(u)
        signs = np.sign(steps[np.abs(steps) > 1e-12])
        assert np.all(np.diff(signs) <= 0), "rises after falling: not unimodal"
        nonconcave += bool(np.diff(u, 2).max() > 1e-10)
    assert nonconcave > 5


def test_gradient_bound_holds():
    rng = np.random.default_rng(3)
    for _ in range(30):
        game = random_game(rng, caps=bool(rng.integers(2)))
        k = Kernel(game)
        for _ in range(10):
            c = rng.uniform(k.low, k.high)
            assert np.all(np.abs(threshold_payoff_gradients(game, c)) <= k.gradient_bound() + 1e-12)


# -- the learners' bounds against adversaries (no game: gains handed in directly) -------------


class _Gains:
    def __init__(self, gains):
        self.gains = gains

    def payoff(self, grid):
        return self.gains


def _adversarial_regret(cls, k, rounds, adversary):
    learner = cls(0.0, 1.0, 1.0, rounds, np.random.default_rng(0), grid=k)
    own, cum = 0.0, np.zeros(k)
    for t in range(rounds):
        _, p = learner.mixed_strategy()
        g = adversary(t, p)
        own += p @ g
        cum += g
        learner.update(_Gains(g))
    return cum.max() - own, learner.bound().value


def _alternating(t, p):
    g = np.zeros(p.size)
    g[t % 2] = 1.0
    return g


def _against_the_learner(t, p):
    g = np.zeros(p.size)
    g[np.argmin(p)] = 1.0
    return g


@pytest.mark.parametrize("adversary", [_alternating, _against_the_learner])
@pytest.mark.parametrize("cls", [Hedge, OptimisticHedge])
def test_bounds_hold_against_adversaries(cls, adversary):
    for k, rounds in [(2, 200), (10, 1000)]:
        regret, bound = _adversarial_regret(cls, k, rounds, adversary)
        assert regret <= bound


def test_hedge_bound_is_nearly_attained_so_the_check_can_fail():
    # Alternating gains on 2 of 10 arms: regret 28.6 against sqrt(T ln K / 2) = 33.9 (measured).
    # A bound too small by 20% would fail this test.
    regret, bound = _adversarial_regret(Hedge, 10, 1000, _alternating)
    assert 0.8 * bound < regret <= bound
    assert bound == pytest.approx(np.sqrt(1000 * np.log(10) / 2))


# -- regret accounting in the game ------------------------------------------------------------


def _hindsight_total(game, i, x, played):
    """sum_t U_i(x; the others' thresholds of round t), by the public profile function."""
    return sum(threshold_payoffs(game, np.where(np.arange(len(c)) == i, x, c))[i] for c in played)


def test_hedge_regret_within_bound_and_recomputed_independently():
    game = small_stakes()
    res = learn(game, "hedge", 400, seed=1, grid=9, equilibrium=False)
    assert np.all(res.regret <= res.bound)
    assert res.within_bound.all()
    # Independent recomputation of the realised regret from the played thresholds.
    k = Kernel(game)
    for i in range(2):
        grid = np.linspace(k.low[i], k.high[i], 9)
        own = sum(threshold_payoffs(game, c)[i] for c in res.thresholds)
        best = max(_hindsight_total(game, i, x, res.thresholds) for x in grid)
        assert res.realized_regret[i] == pytest.approx(best - own, abs=1e-9)
    # Hedge compares with the grid only: the whole interval can only do better.
    assert np.all(res.interval_regret >= res.regret - 1e-9)


def test_gradient_regret_against_brute_force_hindsight():
    game = small_stakes()
    res = learn(game, "gradient", 60, seed=0, equilibrium=False)
    k = Kernel(game)
    for i in range(2):
        own = sum(threshold_payoffs(game, c)[i] for c in res.thresholds)
        xs = np.linspace(k.low[i], k.high[i], 61)
        totals = [_hindsight_total(game, i, x, res.thresholds) for x in xs]
        brute = max(totals) - own
        # The refined optimum is at least as good as any grid point, and better than the best
        # of the 61-point grid by at most (Lipschitz constant) x (half a cell) per round.
        lipschitz = k.gradient_bound()[i]
        assert res.regret[i] >= brute - 1e-9
        assert res.regret[i] <= brute + res.rounds * lipschitz * (xs[1] - xs[0]) / 2
    assert np.all(res.linearized_regret <= res.bound)
    np.testing.assert_allclose(res.realized_regret, res.regret, atol=1e-10)  # deterministic


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_average_regret_goes_to_zero(name):
    game = small_stakes()
    avg = [
        learn(game, name, T, seed=0, equilibrium=False).average_regret.max()
        for T in (100, 500, 2000)
    ]
    # measured: hedge 0.026, 0.014, 0.0082; optimistic-hedge 0.049, 0.030, 0.018;
    # gradient 0.0072, 0.0033, 0.0016
    assert avg[0] > avg[1] > avg[2]
    assert avg[2] < 0.5 * avg[0]


def test_regret_bounds_on_the_measured_games():
    for game in (one_principal(), small_stakes()):
        for name in LEARNERS:
            res = learn(game, name, 500, seed=2, equilibrium=False)
            assert res.within_bound.all(), (name, res.regret, res.bound)


# -- convergence of the time averages ---------------------------------------------------------


@pytest.mark.parametrize(
    ("game_factory", "name", "tv_limit"),
    [
        # measured TV at T = 100 -> 3000 (seed 0): one/gradient 2.9e-2 -> 5.5e-3,
        # one/hedge 3.3e-2 -> 7.4e-3, small/gradient 6.0e-3 -> 1.1e-3,
        # small/hedge 1.9e-2 -> 6.5e-3, competing/gradient 1.1e-2 -> 2.1e-3
        (one_principal, "gradient", 1.5e-2),
        (one_principal, "hedge", 2.0e-2),
        (small_stakes, "gradient", 4e-3),
        (small_stakes, "hedge", 1.5e-2),
        (competing, "gradient", 5e-3),
    ],
)
def test_time_average_approaches_the_unique_equilibrium(game_factory, name, tv_limit):
    from cage_games.solvers import solve
    from cage_games.uniqueness import dominance_bound

    game = game_factory()
    assert game.n_principals == 1 or dominance_bound(game).proved
    eq = solve(game)
    assert eq.success
    short = learn(game, name, 100, seed=0, equilibrium=eq)
    long = learn(game, name, 3000, seed=0, equilibrium=eq)
    assert long.policy_distance < tv_limit
    assert long.policy_distance < 0.6 * short.policy_distance
    assert np.all(long.transfer_distance < short.transfer_distance)
    # the trajectory is the running average's distance: its last entry is the reported one
    assert long.distance_trajectory[-1] == pytest.approx(long.policy_distance)


def test_convergence_criterion_rejects_a_learner_that_does_not_learn():
    # Negative control: gradient ascent with a negligible step stays where it starts.
    game = one_principal()
    frozen = learn(game, "gradient", 3000, seed=0, step_size=1e-9)
    assert frozen.policy_distance > 1.5e-2  # would fail the test above


# -- reproducibility, records, plots ----------------------------------------------------------


def test_seed_reproduces_the_run():
    game = small_stakes()
    a = learn(game, "hedge", 200, seed=42, equilibrium=False)
    b = learn(game, "hedge", 200, seed=42, equilibrium=False)
    c = learn(game, "hedge", 200, seed=43, equilibrium=False)
    assert np.array_equal(a.thresholds, b.thresholds)
    assert np.array_equal(a.regret, b.regret)
    assert not np.array_equal(a.thresholds, c.thresholds)
    d = learn(game, "hedge", 200, equilibrium=False)  # no seed: the record says which one
    e = learn(game, "hedge", 200, seed=d.seed, equilibrium=False)
    assert np.array_equal(d.thresholds, e.thresholds)


def test_result_is_immutable_and_printable(tmp_path):
    res = learn(one_principal(), "gradient", 50, seed=0)
    assert isinstance(res, LearningResult)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.rounds = 3  # type: ignore[misc]
    with pytest.raises(ValueError):
        res.regret[0] = 0.0
    text = repr(res)
    for key in ("learner: gradient", "regret:", "bound:", "average_policy:", "policy_distance:"):
        assert key in text
    summary = json.loads(json.dumps(res.to_dict()))
    assert summary["learner"] == "gradient" and summary["rounds"] == 50
    out = plot_learning(res, tmp_path / "learn.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert res.plot(tmp_path / "again.png").stat().st_size > 1000


def test_progress_bar_runs():
    res = learn(one_principal(), "hedge", 5, seed=0, progress=True, equilibrium=False)
    assert res.rounds == 5


def test_learners_play_inside_their_interval():
    game = cg.CommonAgencyGame(
        cg.Agent([0.0, 0.3, 0.0], beta=0.5),
        [cg.Principal([0.0, 2.0, 1.0], cap=0.7), cg.Principal([1.5, 0.0, 0.5])],
    )
    k = Kernel(game)
    for name in LEARNERS:
        res = learn(game, name, 200, seed=0)
        assert np.all(res.thresholds >= k.low - 1e-12) and np.all(res.thresholds <= k.high + 1e-12)
        assert res.within_bound.all()
        assert res.average_policy.sum() == pytest.approx(1.0)


def test_learner_classes_are_registered():
    assert LEARNERS == {
        "hedge": Hedge,
        "optimistic-hedge": OptimisticHedge,
        "gradient": OnlineGradientAscent,
    }


# -- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize("rounds", [0, -3])
def test_rounds_must_be_positive(rounds):
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        learn(one_principal(), "hedge", rounds)


def test_rounds_must_be_an_integer():
    with pytest.raises(TypeError, match="rounds"):
        learn(one_principal(), "hedge", 10.5)


def test_unknown_learner_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown learner 'sgd'") as info:
        learn(one_principal(), "sgd", 10)
    for name in LEARNERS:
        assert name in str(info.value)


def test_beta_zero_is_a_clear_error():
    game = cg.CommonAgencyGame(cg.Agent([0.0, 1.0], beta=0.0), [cg.Principal([1.0, 0.0])])
    with pytest.raises(ValueError, match=r"beta is 0.*beta > 0"):
        learn(game, "hedge", 10)


def test_unknown_option_names_the_accepted_ones():
    with pytest.raises(TypeError, match=r"does not take option.*grid.*step_size, start"):
        learn(one_principal(), "gradient", 10, grid=5)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_step_size_must_be_positive(bad):
    with pytest.raises(ValueError, match="step_size"):
        learn(one_principal(), "hedge", 10, step_size=bad)


def test_bad_equilibrium_argument():
    with pytest.raises(TypeError, match="equilibrium must be"):
        learn(one_principal(), "hedge", 10, equilibrium="yes")


# -- command line (cage learn) ----------------------------------------------------------------


def _cage_learn(argv):
    import argparse

    from cage_adapters.cli import learn as learn_cli

    parser = argparse.ArgumentParser(prog="cage")
    learn_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["learn", *argv])
    return args.func(args)


@pytest.fixture
def game_file(tmp_path):
    from cage_games.io import save_game

    path = tmp_path / "game.json"
    save_game(competing(), path)
    return path


def test_cli_json_and_plot(game_file, tmp_path, capsys):
    plot = tmp_path / "out.png"
    code = _cage_learn([str(game_file), "--learner", "hedge", "--rounds", "200", "--seed", "3",
                        "--plot", str(plot), "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["learner"] == "hedge" and out["rounds"] == 200 and out["seed"] == 3
    assert all(out["within_bound"]) and out["plot"] == str(plot)
    assert plot.read_bytes()[:4] == b"\x89PNG"
    direct = learn(competing(), "hedge", 200, seed=3)
    assert out["regret"] == pytest.approx(direct.regret.tolist())


def test_cli_text_output(game_file, capsys):
    assert _cage_learn([str(game_file), "--learner", "gradient", "--rounds", "50",
                        "--no-equilibrium"]) == 0
    text = capsys.readouterr().out
    assert "learner: gradient" in text and "within the bound" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["missing.json"], "no such file"),
        (["{game}", "--learner", "sgd"], "known learners: gradient, hedge, optimistic-hedge"),
        (["{game}", "--rounds", "0"], "rounds must be >= 1"),
        (["{game}", "--learner", "gradient", "--grid", "5"], "does not take option"),
        (["{game}", "--plot", "/no/such/folder/x.png"], "does not exist"),
        (["{bad}"], "not valid JSON"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(game_file, tmp_path, capsys, argv, message):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    argv = [a.format(game=game_file, bad=bad) for a in argv]
    assert _cage_learn(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cage learn: error: ")
    assert message in lines[0] and "Traceback" not in captured.err
