"""Sweeps: tidy rows, resumption after an interruption, and the same answers from joblib
processes and a Dask LocalCluster as from the plain loop."""

from __future__ import annotations

import csv

import numpy as np
import pytest

import cage_games as cg
from cage_games.sweep import grid_cells, sweep

GRID = {"beta": [0.2, 1.0], "weight": [0.5, 1.0, 2.0], "seed": list(range(5))}  # 30 games


def build(beta, weight, seed):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(2, 5))
    return cg.CommonAgencyGame(
        cg.Agent(rng.normal(size=5), beta=beta),
        [cg.Principal(weight * u[0], name="a"), cg.Principal(u[1], name="b")],
    )


def _outcomes(table):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in table.rows]


def test_rows_match_individual_solves():
    table = sweep(build, GRID, progress=False)
    assert len(table) == 30 and table.computed == 30
    assert table.columns[:4] == ("cell", "beta", "weight", "seed")
    cells = list(grid_cells(GRID))
    for row, params in zip(table.rows, cells, strict=True):
        res = cg.solve(build(**params))
        assert row["payoff_a"] == res.payoffs[0] and row["payoff_b"] == res.payoffs[1]
        assert row["action"] == res.action and row["success"] == res.success


def test_resumes_after_an_interruption_without_recomputing(tmp_path):
    out = tmp_path / "sweep.csv"
    calls = []

    def flaky(beta, weight, seed):
        calls.append((beta, weight, seed))
        if len(calls) == 17:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C in the middle
        return build(beta, weight, seed)

    with pytest.raises(KeyboardInterrupt):
        sweep(flaky, GRID, out=out, chunk_size=5, progress=False)
    with out.open() as fh:
        saved = list(csv.DictReader(fh))
    assert len(saved) == 15  # three whole chunks were flushed
    calls.clear()
    table = sweep(flaky, GRID, out=out, chunk_size=5, progress=False)
    assert table.resumed == 15 and table.computed == 15 and len(calls) == 15
    fresh = sweep(build, GRID, progress=False)
    assert _outcomes(table) == _outcomes(fresh)
    # Resuming a complete file computes nothing.
    again = sweep(build, GRID, out=out, progress=False)
    assert again.computed == 0 and _outcomes(again) == _outcomes(fresh)


def test_a_different_sweep_on_the_same_file_is_refused(tmp_path):
    out = tmp_path / "sweep.csv"
    sweep(build, {"beta": [0.5], "weight": [1.0], "seed": [0, 1]}, out=out, progress=False)
    with pytest.raises(ValueError, match="different sweep"):
        sweep(build, {"beta": [0.7], "weight": [1.0], "seed": [0, 1]}, out=out, progress=False)


def test_generator_of_games_and_beta_zero_rows():
    def games():
        for k in range(4):
            yield build(0.0, 1.0, k)

    table = sweep(None, games(), progress=False)
    assert list(table.column("method")) == ["menu-auction"] * 4
    assert set(table.column("success")) == {True}


def test_joblib_processes_give_the_same_rows():
    local = sweep(build, GRID, progress=False)
    parallel = sweep(build, GRID, n_jobs=2, chunk_size=8, progress=False)
    assert _outcomes(parallel) == _outcomes(local)


def test_dask_local_cluster_gives_the_same_rows():
    distributed = pytest.importorskip("distributed")
    local = sweep(build, GRID, progress=False)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        remote = sweep(build, GRID, n_jobs=-1, backend="dask", chunk_size=8, progress=False)
    assert _outcomes(remote) == _outcomes(local)


def test_parquet_output(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "sweep.parquet"
    table = sweep(build, GRID, out=out, progress=False)
    data = pq.read_table(out).to_pydict()
    assert data["payoff_a"] == list(table.column("payoff_a"))
    assert not (tmp_path / "sweep.parquet.partial.csv").exists()


def test_batched_through_the_torch_backend_agrees():
    pytest.importorskip("torch")
    batched = sweep(build, GRID, batch=True, progress=False)
    plain = sweep(build, GRID, progress=False)
    assert set(batched.column("method")) == {"torch-batch"}
    for col in ("payoff_a", "payoff_b", "agent_payoff"):
        np.testing.assert_allclose(batched.column(col), plain.column(col), atol=1e-9)
    assert list(batched.column("action")) == list(plain.column("action"))


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"\.csv or \.parquet"):
        sweep(build, GRID, out="x.txt", progress=False)
    with pytest.raises(TypeError, match="parameter dicts or games"):
        sweep(build, [1, 2], progress=False)
    with pytest.raises(ValueError, match="n_jobs"):
        sweep(build, GRID, n_jobs=0, progress=False)


def test_cli_sweep_writes_and_resumes(tmp_path, capsys):
    from pathlib import Path

    from cage_adapters.cli import main

    game = Path(__file__).resolve().parents[1] / "examples" / "games" / "two_objectives.json"
    out = tmp_path / "cli.csv"
    argv = ["sweep", str(game), "--vary", "beta=0.2:1:4", "--vary", "weight.helpful=0.5,2"]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    assert "8 cells (8 computed, 0 resumed)" in capsys.readouterr().out
    assert main([*argv, "--out", str(out), "--no-progress"]) == 0
    assert "(0 computed, 8 resumed)" in capsys.readouterr().out
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    base = cg.load_game(game)
    from cage_games.sweep import vary_game

    res = cg.solve(vary_game(base, beta=1.0, **{"weight.helpful": 2.0}))
    assert float(rows[-1]["payoff_helpful"]) == res.payoffs[0]
    assert main(["sweep", str(game), "--vary", "nope=1", "--out", str(out)]) == 2
    assert "unknown sweep parameter" in capsys.readouterr().err


@pytest.mark.slow
def test_the_10000_game_bar(tmp_path):
    # The bar: 10 000 games with a progress bar, resumed after an interruption, and
    # the same rows on a Dask LocalCluster as locally.
    distributed = pytest.importorskip("distributed")
    grid = {
        "beta": list(np.geomspace(0.05, 2, 10)),
        "weight": list(np.linspace(0.2, 2, 10)),
        "seed": list(range(100)),
    }
    calls = [0]

    def interrupted(beta, weight, seed):
        calls[0] += 1
        if calls[0] == 3001:
            raise KeyboardInterrupt
        return build(beta, weight, seed)

    out = tmp_path / "resumed.csv"
    with pytest.raises(KeyboardInterrupt):
        sweep(interrupted, grid, out=out, progress=True)
    resumed = sweep(build, grid, out=out, progress=True)
    assert resumed.resumed == 3000 and resumed.computed == 7000 and len(resumed) == 10_000
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        remote = sweep(build, grid, n_jobs=-1, backend="dask", progress=True)
    assert _outcomes(remote) == _outcomes(resumed)
    assert all(remote.column("success"))
