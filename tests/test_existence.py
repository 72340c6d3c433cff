"""Existence reports: the Poincaré–Miranda sign conditions, the root box, and beta = 0.

The sign conditions are re-checked here with an independent evaluation of ``G`` (written out
from the model's definitions, sharing no code with the threshold kernel), on random games and
random points of the faces.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cage_games as cg
from cage_games.existence import ExistenceReport, check_existence
from cage_games.solvers import solve


def make_game(v, us, *, beta=1.0, caps=None, support=None):
    caps = caps or [None] * len(us)
    agent = cg.Agent(v, beta=beta, support=support)
    return cg.CommonAgencyGame(
        agent, [cg.Principal(u, cap=c) for u, c in zip(us, caps, strict=True)]
    )


def G_direct(game, c):
    """``G_i(c) = c_i - beta - E_pi[u_i - tau_i]`` in utility units, straight from the model."""
    u, beta, S = game.utilities, game.beta, game.agent.support
    tau = np.minimum(np.maximum(u - np.asarray(c)[:, None], 0.0), game.caps[:, None])
    z = (game.agent.utility + tau.sum(axis=0)) / beta
    z = np.where(S, z, -np.inf)
    pi = np.exp(z - z.max())
    pi /= pi.sum()
    return c - beta - (u - tau) @ pi


@st.composite
def games(draw):
    m = draw(st.integers(1, 4))
    n = draw(st.integers(2, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    beta = float(draw(st.sampled_from([0.05, 0.3, 1.0, 4.0])))
    scale = float(draw(st.sampled_from([0.1, 1.0, 10.0])))
    caps = [None if rng.random() < 0.5 else float(rng.uniform(0.1, 2.0) * scale) for _ in range(m)]
    support = rng.random(n) < 0.8
    support[rng.integers(n)] = True
    return make_game(
        rng.normal(size=n) * scale,
        rng.normal(size=(m, n)) * scale,
        beta=beta,
        caps=caps,
        support=support,
    ), rng


@settings(max_examples=40, deadline=None)
@given(games())
def test_sign_conditions_hold_on_random_faces(case):
    game, rng = case
    beta, S = game.beta, game.agent.support
    lo = game.utilities[:, S].min(axis=1)
    hi = game.utilities[:, S].max(axis=1) + beta
    m = game.n_principals
    for _ in range(20):
        c = lo + rng.random(m) * (hi - lo)
        for i in range(m):
            at_lo, at_hi, at_root = c.copy(), c.copy(), c.copy()
            at_lo[i], at_hi[i], at_root[i] = lo[i], hi[i], lo[i] + beta
            tol = 1e-9 * (1.0 + np.abs(game.utilities).max())
            assert G_direct(game, at_lo)[i] <= -beta + tol
            assert G_direct(game, at_hi)[i] >= -tol
            assert G_direct(game, at_root)[i] <= tol
    rep = check_existence(game, n_samples=8, seed=1)
    assert rep.established and rep.argument == "Poincaré–Miranda"
    assert rep.numerical_ok
    tol = 1e-9 * (1.0 + np.abs(game.utilities).max())
    assert np.all(rep.lower_face_max <= -beta + tol)
    assert np.all(rep.upper_face_min >= -tol)
    assert np.all(rep.root_face_max <= tol)
    np.testing.assert_allclose(rep.bracket, np.column_stack([lo, hi]))
    np.testing.assert_allclose(rep.root_box, np.column_stack([lo + beta, hi]))


def test_known_bracket_and_report_text():
    # u_0 = (0, 2): bracket [0, 3], root box [1, 3];  u_1 = (1, 0): bracket [0, 2], root box [1, 2].
    game = make_game([0.0, 0.0], [[0.0, 2.0], [1.0, 0.0]])
    rep = check_existence(game)
    assert isinstance(rep, ExistenceReport)
    np.testing.assert_allclose(rep.bracket, [[0.0, 3.0], [0.0, 2.0]])
    np.testing.assert_allclose(rep.root_box, [[1.0, 3.0], [1.0, 2.0]])
    # On c_0 = min u_0 = 0 principal 0 pays u_0 - 0 everywhere (uncapped): G_0 = -beta exactly.
    assert rep.lower_face_max[0] == pytest.approx(-1.0)
    # 3 faces per principal, each: 2 corners of the other coordinate + 64 random points.
    assert rep.n_points == 2 * 3 * (2 + 64)
    text = str(rep)
    assert text.startswith("ExistenceReport")
    for phrase in ("Poincaré–Miranda", "Lower faces", "Upper faces", "root box", "sampled"):
        assert phrase in text
    assert repr(rep) == text
    json.dumps(rep.to_dict())


def test_every_solved_equilibrium_lies_in_the_root_box():
    rng = np.random.default_rng(7)
    for _ in range(10):
        m, n = int(rng.integers(1, 4)), int(rng.integers(2, 6))
        caps = [None if rng.random() < 0.5 else 1.0 for _ in range(m)]
        game = make_game(rng.normal(size=n), 3 * rng.random((m, n)), beta=0.5, caps=caps)
        res = solve(game)
        assert res.success
        box = check_existence(game, n_samples=0).root_box
        assert np.all(res.thresholds >= box[:, 0] - 1e-9)
        assert np.all(res.thresholds <= box[:, 1] + 1e-9)


def test_menu_auction_argument_for_beta_zero():
    game = make_game([1.0, 0.0], [[0.0, 1.0], [0.0, 1.0]], beta=0.0)
    rep = check_existence(game)
    assert rep.established and rep.argument == "Bernheim–Whinston"
    assert rep.bracket is None and rep.numerical_ok is None and rep.n_points == 0
    assert rep.details["efficient_actions"] == (1,)
    assert "Bernheim and Whinston" in str(rep)
    json.dumps(rep.to_dict())


def test_menu_auction_with_binding_caps_is_established_by_a_certified_construction():
    # The truthful schedule must pay 1 to move the agent off action 0; caps of 0.1 forbid it.
    # Bernheim-Whinston does not apply, but paying nothing (the agent stays on action 0) is an
    # equilibrium: together the principals can offer 0.2 < 1. The quantal limit finds it and
    # the exact beta = 0 oracle certifies it.
    game = make_game([1.0, 0.0], [[0.0, 3.0], [0.0, 3.0]], beta=0.0, caps=[0.1, 0.1])
    rep = check_existence(game)
    assert rep.established and rep.argument == "constructed (certified)"
    assert rep.details["taken_action"] == 0
    assert rep.details["certificate_residual"] <= 1e-9
    assert any("caps bind" in r for r in rep.reasons)


def test_validation():
    with pytest.raises(TypeError, match="game must be"):
        check_existence("game.json")
    game = make_game([0.0, 0.0], [[0.0, 1.0]])
    with pytest.raises(ValueError, match="n_samples"):
        check_existence(game, n_samples=-1)
    with pytest.raises(TypeError, match="n_samples"):
        check_existence(game, n_samples=2.5)


# -- the `cage check` command (registered by the lead's dispatcher; built here directly) ------

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "games"


def cage_check(argv):
    import argparse

    from cage_adapters.cli import check

    parser = argparse.ArgumentParser(prog="cage")
    check.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["check", *argv])
    return args.func(args)


def test_cage_check_prints_three_reports(capsys):
    path = EXAMPLES / "two_objectives.json"
    assert cage_check([str(path), "--samples", "20", "--starts", "2"]) == 0
    out = capsys.readouterr().out
    for phrase in ("ExistenceReport", "UniquenessReport", "SensitivityReport", "Poincaré–Miranda"):
        assert phrase in out


def test_cage_check_json(capsys, tmp_path):
    path = tmp_path / "g.json"
    path.write_text(
        '{"agent": {"utility": [1, 0], "beta": 0}, '
        '"principals": [{"name": "a", "utility": [0, 1]}, {"name": "b", "utility": [0, 1]}]}'
    )
    assert cage_check([str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["existence"]["argument"] == "Bernheim–Whinston"
    assert data["uniqueness"]["conclusion"].startswith("not unique")
    assert data["stability"] is None and "beta = 0" in data["stability_note"]


@pytest.mark.parametrize(
    ("content", "argv", "match"),
    [
        ("{not json", [], "not valid JSON"),
        ('{"agent": {"beta": 1, "utility": [0, 1]}}', [], "principals"),
        (
            '{"agent": {"beta": 1, "utility": [0, 1]}, "principals": [{"utility": [0, 1]}]}',
            ["--samples", "-1"],
            "--samples",
        ),
        (
            '{"agent": {"beta": 1, "utility": [0, 1]}, "principals": [{"utility": [0, 1]}]}',
            ["--radius", "2"],
            "--radius",
        ),
    ],
)
def test_cage_check_bad_input_is_one_line_and_exit_2(tmp_path, capsys, content, argv, match):
    path = tmp_path / "g.json"
    path.write_text(content)
    assert cage_check([str(path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cage: error:") and match in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cage_check_missing_file(capsys, tmp_path):
    assert cage_check([str(tmp_path / "nope.json")]) == 2
    assert "no such file" in capsys.readouterr().err
