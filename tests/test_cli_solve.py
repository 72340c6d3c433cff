"""The cage solve command: table, JSON, and one-line errors."""

import json
from pathlib import Path

import pytest
from cage_adapters.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "games"


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.json")))
def test_every_example_game_loads(name):
    import cage_games as cg

    cg.load_game(EXAMPLES / name)


def test_solve_table(capsys):
    assert main(["solve", str(EXAMPLES / "two_objectives.json")]) == 0
    out = capsys.readouterr().out
    assert "helpful" in out and "harmless" in out and "Nash gap" in out and "residual" in out


def test_solve_json(capsys):
    assert main(["solve", str(EXAMPLES / "one_principal.json"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["success"] and data["nash_gap"] < 1e-8
    assert abs(sum(data["policy"]) - 1) < 1e-12


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "not valid JSON"),
        ('{"agent": {"beta": 1, "utility": [0, 1]}}', "principals"),
        ('{"agent": {"utility": [0, 1]}, "principals": [{"utility": [0, 1]}]}', "beta"),
        (
            '{"agent": {"beta": -1, "utility": [0, 1]}, "principals": [{"utility": [0, 1]}]}',
            "beta must be >= 0",
        ),
        (
            '{"agent": {"beta": 1, "utility": [0, 1]}, "principals": [{"utility": [0, 1, 2]}]}',
            "actions",
        ),
        (
            '{"agent": {"beta": 1, "reference": [0, 0]}, "principals": [{"utility": [0, 1]}]}',
            "all zeros",
        ),
    ],
)
def test_bad_files_give_one_line_and_exit_2(tmp_path, capsys, content, match):
    path = tmp_path / "g.json"
    path.write_text(content)
    assert main(["solve", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cage: error:") and match in err and "\n" not in err


def test_missing_file(capsys):
    assert main(["solve", "/nonexistent/game.json"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_closed_pipe_gives_no_traceback(tmp_path):
    # `cage solve big.json --json | head -c 100`: the reader leaves early; no traceback.
    import subprocess
    import sys

    import numpy as np

    import cage_games as cg

    rng = np.random.default_rng(0)
    n = 20000
    game = cg.CommonAgencyGame(
        cg.Agent(rng.normal(size=n), 1.0), [cg.Principal(rng.normal(size=n))]
    )
    path = tmp_path / "big.json"
    cg.save_game(game, path)
    code = "import sys; from cage_adapters.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "solve", str(path), "--json", "--no-certificate"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.read(100)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err, err
    assert proc.returncode in (0, 1)
