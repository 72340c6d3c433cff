"""Evaluation metrics: hypervolume against hand-computed fronts, bootstrap on a known case,
judges and text-quality measures."""

from __future__ import annotations

import numpy as np
import pytest
from cage_adapters.evaluate.metrics import bootstrap_diff, hypervolume, pareto_front, spearman


def test_hypervolume_two_d_hand_computed():
    # staircase (3,1), (2,2), (1,3) over reference (0,0): 3*1 + 2*1 + 1*1 = 6
    assert hypervolume([[3, 1], [2, 2], [1, 3]], [0, 0]) == pytest.approx(6.0)
    # a dominated point and a point outside the reference change nothing
    assert hypervolume([[3, 1], [2, 2], [1, 3], [1, 1], [-5, 9]], [0, 0]) == pytest.approx(6.0)
    # single point: a rectangle; with reference (-1,-1)
    assert hypervolume([[0.5, 0.0]], [-1, -1]) == pytest.approx(1.5)
    assert hypervolume([[-2, 4]], [-1, -1]) == 0.0


def test_hypervolume_three_d_hand_computed():
    # two boxes [0,2]x[0,1]x[0,1] and [0,1]x[0,2]x[0,1] overlap in a unit cube: 2 + 2 - 1 = 3
    assert hypervolume([[2, 1, 1], [1, 2, 1]], [0, 0, 0]) == pytest.approx(3.0)
    # agrees with a Monte Carlo estimate on random fronts
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 1, (5, 3))
    u = rng.uniform(0, 1, (200000, 3))
    mc = np.mean([np.any(np.all(pts >= x, axis=1)) for x in u[:20000]])
    assert hypervolume(pts, [0, 0, 0]) == pytest.approx(mc, abs=0.02)


def test_pareto_front_keeps_the_non_dominated():
    f = pareto_front([[1, 1], [2, 0], [0, 2], [0.5, 0.5], [2, 0]])
    assert f.tolist() == [[0, 2], [1, 1], [2, 0]]


def test_bootstrap_known_case():
    # a mean difference of groups drawn around 1.0 with sd 1: the 95% interval of the mean
    # over n = 400 groups is about 1 +- 1.96/20
    rng = np.random.default_rng(1)
    x = rng.normal(1.0, 1.0, 400)
    res = bootstrap_diff(lambda idx: float(x[idx].mean()), range(len(x)), n_boot=2000)
    assert res["estimate"] == pytest.approx(x.mean())
    half = 1.96 * x.std() / np.sqrt(len(x))
    assert res["lo"] == pytest.approx(x.mean() - half, abs=0.02)
    assert res["hi"] == pytest.approx(x.mean() + half, abs=0.02)
    # a constant statistic has a zero-width interval
    c = bootstrap_diff(lambda idx: 3.0, range(10), n_boot=50)
    assert c["lo"] == c["hi"] == 3.0


def test_spearman():
    assert spearman([0, 1, 2, 3], [1, 2, 3, 9]) == pytest.approx(1.0)
    assert spearman([0, 1, 2, 3], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(spearman([0, 1, 2], [1, 1, 1]))


def test_judges_and_quality_measures():
    from cage_adapters.evaluate.judges import distinct_n, judge_for, nonword_rate

    glued = "the library at the S.H.I.E.L.I.D.S.A.s.Cheri.com.com.co."
    clean = "I really loved the cafe, the staff smiled and the cakes were wonderful."
    nw = nonword_rate([glued, clean, ""])
    assert nw[0] > 0.4 and nw[1] == 0.0 and nw[2] == 0.0
    pol = judge_for("sentiment")(["I love this wonderful place", "This is awful and sad"])
    assert pol[0] > 0.3 and pol[1] < -0.3
    short = judge_for("brevity")(["one two three", "S.H.I.E.L.D"])
    assert short.tolist() == [-3.0, -6.0]  # glued letters still count as words
    assert distinct_n(["a b c", "a b d"], 2) == pytest.approx(3 / 4)
    with pytest.raises(KeyError, match="no independent judge"):
        judge_for("non-offensive")


def test_floor_is_the_worst_loss_against_solo():
    from cage_adapters.evaluate.frontier import _floor

    grid = [(1.0, 0.0), (0.5, 0.5), (0.0, 1.0)]
    lst = [(w, [], 0.0) for w in grid]
    # per prompt (2 prompts) normalised means at each weight
    pp = [np.array([[2.0, -1.0], [2.0, -1.0]]),   # solo objective 0: z0 = 2
          np.array([[1.5, 0.0], [0.5, 1.0]]),     # balanced
          np.array([[-1.0, 3.0], [-1.0, 3.0]])]   # solo objective 1: z1 = 3
    f = _floor(lst, pp, grid)
    # balanced means (1.0, 0.5): losses 1.0 - 2 = -1 and 0.5 - 3 = -2.5 -> floor -2.5
    assert f(np.arange(2)) == pytest.approx(-2.5)
    assert f(np.array([0, 0])) == pytest.approx(min(1.5 - 2, 0 - 3))


def test_report_tables_from_results():
    from cage_adapters.evaluate.report import rst_tables

    e = {"weights": [[1, 0], [0, 1]], "points": [[0.5, -30.0], [0.1, -20.0]],
         "points_normalised": [[1.0, 0.5], [-0.2, 1.5]], "hypervolume": 3.25,
         "hv_diff_to_cage": {"kl=0.5": {"estimate": -0.5, "lo": -1.0, "hi": 0.25}},
         "mean_kl": 0.5, "fluency": -2.0, "nonword": 0.05, "distinct_2": 0.9, "finished": 0.25,
         "spearman": {"sentiment": 0.5, "brevity": 0.4}, "tokens_per_s": 12.0}
    res = {"config": {"objectives": ["sentiment", "brevity"]},
           "methods": {"linear": {"kl=0.5": e}}}
    text = rst_tables(res)
    assert "vs kl=0.5: -0.50 [-1.00, +0.25]" in text
    assert "row - column" not in text  # no pairwise table without pairwise differences
    e2 = dict(e, hv_diff={"linear kl=0.5": {"estimate": 0.5, "lo": -0.25, "hi": 1.0}})
    res2 = {"config": res["config"], "methods": {"linear": {"kl=0.5": e},
                                                  "cage": {"kl=0.5": e2}}}
    pair = rst_tables(res2).split("\n\n")[-1]
    assert "row - column" in pair and "+0.50 [-0.25, +1.00]" in pair
    assert "3.25" in text and "(1, 0)" in text and "+1.50" in text
    assert text.splitlines()[0].startswith("======")
