"""Issue 11: strict game files, a lossless round trip, and one-line CLI failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cage_adapters.cli import main

import cage_games as cg
from cage_games.io import game_from_dict, game_to_dict, parse_game

GOOD = {
    "agent": {"utility": [0.0, 0.5, 1.0], "beta": 0.5},
    "principals": [{"name": "a", "utility": [0.0, 1.0, 2.0]}, {"utility": [2.0, 1.0, 0.0]}],
}


def _with(path: str, value: object) -> dict:
    """GOOD with one field set (path like 'principals.0.Cap')."""
    data = json.loads(json.dumps(GOOD))
    keys = path.split(".")
    node = data
    for k in keys[:-1]:
        node = node[int(k)] if k.isdigit() else node[k]
    node[keys[-1]] = value
    return data


# -- strict schema --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "data, match",
    [
        (_with("principals.0.Cap", 0.1), r"'Cap' \(did you mean 'cap'\?\)"),
        (_with("agent.Beta", 0.1), "unknown field.*'agent'"),
        (_with("agent.temperature", 1), "unknown field"),
        (_with("principals.1.weight", 2), r"principals\[1\]"),
        (_with("agent.utility", ["0", "1", "2"]), "must be a number, got str"),
        (_with("agent.utility", [True, False, True]), "must be a number, got bool"),
        (_with("principals.0.utility", [0, 1, True]), "must be a number, got bool"),
        (_with("agent.beta", "0.5"), "beta must be a real number"),
        (_with("agent.beta", True), "beta must be a real number"),
        (_with("principals.0.cap", "1"), "cap must be a real number"),
        (_with("principals.0.cap", False), "cap must be a real number"),
        (_with("agent.support", [1, 1, 0]), "true/false"),
        (_with("actions", "abc"), "list of strings"),
        ({**GOOD, "agent": {"reference": [0.5, 0.5, 0.0], "beta": 1, "support": [True] * 3}},
         "support' goes with 'utility'"),
    ],
)
def test_schema_is_strict(data, match):
    with pytest.raises(ValueError, match=match):
        game_from_dict(data)


@pytest.mark.parametrize(
    "text, match",
    [
        ('{"agent": {"utility": [0, 1], "beta": 1, "beta": 2}, "principals": []}', "duplicated"),
        ('{"agent": {"utility": [0, NaN], "beta": 1}, "principals": [{"utility": [1, 0]}]}',
         "NaN is not a JSON number"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        (b"\x89PNG\r\n\x1a\n\x00\xff", "not a text file"),
        (b'{"a": "\x00"}', "not a text file"),
    ],
)
def test_bad_text_is_a_value_error_naming_the_source(text, match):
    with pytest.raises(ValueError, match=match) as info:
        parse_game(text, "game.json")
    assert str(info.value).startswith("game.json: ")


def test_principal_refuses_strings_and_booleans_as_numbers():
    for bad in (["0", "1"], [True, False], np.array([True, False]), np.array(["1", "2"])):
        with pytest.raises(TypeError):
            cg.Principal(bad)
    with pytest.raises(TypeError):
        cg.Agent([0.0, True], beta=1.0)
    assert cg.Principal(np.arange(3)).utility.tolist() == [0.0, 1.0, 2.0]


def test_support_survives_save_and_load(tmp_path):
    # The example: a reference [0.5, 0.5, 0] gave policy [0.5, 0.5, 0] before saving
    # and [0.196, 0.196, 0.609] after loading, because the support was dropped.
    game = cg.CommonAgencyGame(
        cg.Agent.kl_regularized([0.5, 0.5, 0.0], beta=1.0),
        [cg.Principal([0.0, 0.1, 3.0], cap=0.7), cg.Principal([0.3, 0.0, 0.0])],
        action_names=("x", "y", "z"),
    )
    cg.save_game(game, tmp_path / "g.json")
    back = cg.load_game(tmp_path / "g.json")
    assert back.agent.support.tolist() == [True, True, False]
    np.testing.assert_array_equal(back.agent.utility, game.agent.utility)
    np.testing.assert_array_equal(back.utilities, game.utilities)
    np.testing.assert_array_equal(back.caps, game.caps)
    assert back.names == game.names and back.action_names == game.action_names
    a, b = cg.solve(game), cg.solve(back)
    np.testing.assert_array_equal(a.policy, b.policy)
    assert a.policy[2] == 0.0


def test_round_trip_is_exact_on_random_games(tmp_path):
    rng = np.random.default_rng(0)
    for _ in range(5):
        n = int(rng.integers(1, 30))
        support = rng.random(n) < 0.7
        support[0] = True
        game = cg.CommonAgencyGame(
            cg.Agent(rng.normal(size=n) * 1e3, float(rng.random()), support=support),
            [cg.Principal(rng.normal(size=n) / 3, cap=float(rng.random()) or None)],
        )
        cg.save_game(game, tmp_path / "r.json")
        back = cg.load_game(tmp_path / "r.json")
        assert game_to_dict(back) == game_to_dict(game)


# -- the CLI: one line, the file named, non-zero exit ------------------------------------------
def _game_file(tmp_path: Path, content: str | bytes, name: str = "g.json") -> Path:
    p = tmp_path / name
    (p.write_bytes if isinstance(content, bytes) else p.write_text)(content)
    return p


HUGE = json.dumps({"agent": {"utility": [0, 0], "beta": 1},
                   "principals": [{"utility": [1e300, -1e300]}]})  # fmt: skip
TINY_BETA = json.dumps({"agent": {"utility": [0, 0], "beta": 1e-300},
                        "principals": [{"utility": [1, 0]}]})  # fmt: skip


@pytest.mark.parametrize("command", ["solve", "check", "learn"])
@pytest.mark.parametrize(
    "content, match",
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        (HUGE, "rescale"),
        (TINY_BETA, "rescale"),
        (bytes(range(128, 256)), "not a text file"),
        (json.dumps(_with("principals.0.Cap", 0.1)), "did you mean 'cap'"),
    ],
    ids=["deep", "1e300", "beta1e-300", "binary", "Cap"],
)
def test_cli_failures_are_one_line_naming_the_file(tmp_path, capsys, command, content, match):
    path = _game_file(tmp_path, content)
    argv = [command, str(path)] + (["--rounds", "5"] if command == "learn" else [])
    with _no_warnings():
        code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(path) in lines[0] and match in lines[0]
    assert "Traceback" not in err


class _no_warnings:
    def __enter__(self):
        import warnings

        self._cm = warnings.catch_warnings(record=True)
        self.caught = self._cm.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._cm.__exit__(*exc)
        assert not self.caught, [str(w.message) for w in self.caught]


def test_cli_reads_the_game_from_stdin():
    text = json.dumps(GOOD)
    out = subprocess.run(
        [sys.executable, "-m", "cage_games", "solve", "-", "--json"],
        input=text, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["success"] is True
    bad = subprocess.run(
        [sys.executable, "-m", "cage_adapters", "solve", "-"],
        input="{", capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.startswith("cage: error: <stdin>: not valid JSON")


def test_cli_internal_errors_are_one_line(tmp_path, capsys, monkeypatch):
    path = _game_file(tmp_path, json.dumps(GOOD))

    def boom(*args, **kwargs):
        raise ZeroDivisionError("simulated")

    monkeypatch.setattr(cg, "solve", boom)
    assert main(["solve", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: ZeroDivisionError: simulated" in err


def test_cli_warnings_are_summarised_in_one_line(tmp_path, capsys, monkeypatch):
    import warnings

    path = _game_file(tmp_path, json.dumps(GOOD))
    real = cg.solve

    def noisy(*args, **kwargs):
        for _ in range(12):
            warnings.warn("overflow encountered", RuntimeWarning, stacklevel=1)
        return real(*args, **kwargs)

    monkeypatch.setattr(cg, "solve", noisy)
    assert main(["solve", str(path)]) == 0
    err = capsys.readouterr().err
    want = "cage: warning: overflow encountered (and 11 more warnings)"
    assert err.strip().splitlines() == [want]


def test_api_errors_are_value_errors():
    game = cg.CommonAgencyGame(cg.Agent([0.0, 0.0], 1.0), [cg.Principal([1e300, -1e300])])
    with pytest.raises(ValueError, match="rescale"):
        cg.solve(game)
    with pytest.raises(ValueError, match="rescale"):
        cg.nash_gap(game, np.zeros((1, 2)))


def test_diagonalization_status_says_what_was_reached():
    # It reported "Converged" at residual 2.3e-8 with tol 1e-10.
    from core_games import random_game

    game = random_game(np.random.default_rng(3), 30, 3, 0.2, kl=True)
    res = cg.solve(game, method="diagonalization", tol=1e-10)
    assert not res.message.startswith("Converged")
    assert f"residual {res.residual:.2e}" in res.message
    if res.residual > 1e-10:
        assert "above tol" in res.message


# -- what a newcomer expects to find ---------------------------------------------------------
def test_packaging_basics():
    import importlib.metadata

    import cage_adapters

    root = Path(__file__).resolve().parents[1]
    assert "Apache License" in (root / "LICENSE").read_text()
    assert "END OF TERMS AND CONDITIONS" in (root / "LICENSE").read_text()
    assert (Path(cg.__file__).parent / "py.typed").is_file()
    assert (Path(cage_adapters.__file__).parent / "py.typed").is_file()
    assert cage_adapters.__version__ == cg.__version__ == importlib.metadata.version("cage-games")
    for module in ("cage_games", "cage_adapters"):
        out = subprocess.run(
            [sys.executable, "-m", module, "--version"], capture_output=True, text=True, check=False
        )
        assert out.returncode == 0 and out.stdout.strip() == f"cage-games {cg.__version__}"


def test_check_prints_one_verdict_line_per_check_first(capsys):
    example = Path(__file__).resolve().parents[1] / "examples" / "games" / "two_objectives.json"
    assert main(["check", str(example), "--samples", "8", "--starts", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split(":")[0] for ln in lines[:3]] == ["Existence", "Uniqueness", "Stability"]
    assert lines[3] == "" and lines[4].startswith("=====")
    assert all(len(ln) < 200 for ln in lines[:3])


@pytest.mark.parametrize(
    "transfers", [[["1", "0"]], [[True, False]], np.array([[True, False]]), None, "ab"]
)
def test_transfers_must_be_numbers(transfers):
    game = cg.CommonAgencyGame(cg.Agent([0.0, 0.0], 1.0), [cg.Principal([1.0, 0.0])])
    with pytest.raises(TypeError, match="transfers"):
        cg.nash_gap(game, transfers)


def test_byte_order_mark_and_huge_integers(tmp_path):
    assert parse_game("\ufeff" + json.dumps(GOOD)).n_actions == 3
    assert parse_game(b"\xef\xbb\xbf" + json.dumps(GOOD).encode()).n_actions == 3
    text = json.dumps(GOOD).replace("0.5,", "1" + "0" * 5000 + ",", 1)
    with pytest.raises(ValueError, match="more than 4300 digits"):
        parse_game(text)
    with pytest.raises(TypeError, match="file path"):
        cg.load_game(3)


def test_cross_check_on_an_extreme_game_is_bounded_and_inconclusive():
    # beta = 1e-100: the conic bounds used to loop for minutes (a bracket that could not grow);
    # now the dual bound gives up (inf) and the cross-check says it is inconclusive.
    import time

    game = cg.CommonAgencyGame(
        cg.Agent([0.0, 0.0], 1e-100), [cg.Principal([1.0, 0.0]), cg.Principal([0.0, 1.0])]
    )
    tau = np.eye(2)
    start = time.perf_counter()
    gap = cg.nash_gap(game, tau)
    assert time.perf_counter() - start < 30
    assert gap.total <= 1e-12 and gap.cross_checked == 2 and gap.consistent is None


@pytest.mark.parametrize(
    "argv", [["solve", "x.json", "--tol", "abc"], [], ["learn", "g.json", "--rounds", "x"]]
)
def test_usage_errors_are_one_line(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err and "--help" in err


def test_certificate_never_swaps_the_process_stdout():
    # The SCS fallback used to send file descriptor 1 to /dev/null for the whole process
    # (every thread's output lost meanwhile); the solvers' own verbosity settings do it now.
    # In a subprocess: pytest's own output capture uses os.dup2.
    code = """
import os, sys, numpy as np, cvxpy as cp
sys.path.insert(0, "tests")
import cage_games as cg
from core_games import random_game
original = cp.Problem.solve
def clarabel_fails(self, *args, **kwargs):
    if kwargs.get("solver") == "CLARABEL":
        raise cp.error.SolverError("forced failure")
    assert kwargs.get("verbose") is False
    return original(self, *args, **kwargs)
def no_dup2(*args):
    raise AssertionError("os.dup2 called: file descriptor 1 swapped")
cp.Problem.solve = clarabel_fails
os.dup2 = no_dup2
game = random_game(np.random.default_rng(4), 12, 2, 0.5)
gap = cg.nash_gap(game, cg.solve(game).transfers, cross_check=True)
assert [b.cross_check.solver for b in gap.best_responses] == ["SCS", "SCS"]
print("ok")
"""
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "ok\n"
