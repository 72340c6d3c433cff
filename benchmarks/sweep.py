"""The 10 000-game sweep of docs/sweeps.rst: local, interrupted and resumed, Dask, batched.

Games: two principals, six actions, random utilities (``seed``), ten temperatures and ten
weights on the first principal: ``10 x 10 x 100`` cells. Runs, each on a fresh file:

``local``     one process;
``loky``      ``--jobs`` joblib worker processes;
``resume``    one process interrupted (SIGINT from a timer) after ``--interrupt`` seconds,
              then run again on the same file, which computes only the missing cells;
``dask``      a Dask ``LocalCluster`` (``--jobs`` workers x 1 thread, in-process), through
              joblib's Dask backend;
``batch``     one process, same-shape chunks solved by the torch backend.

Every table is compared with the ``local`` one, column by column (``seconds`` excepted):
``identical`` means equal to the last digit.

Usage::

    python benchmarks/sweep.py                 # all runs, 100 seeds (10 000 games)
    python benchmarks/sweep.py --seeds 10      # 1 000 games
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import cage_games as cg
from cage_games.sweep import sweep


def build(beta, weight, seed):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(2, 6))
    return cg.CommonAgencyGame(
        cg.Agent(rng.normal(size=6), beta=beta),
        [cg.Principal(weight * u[0], name="a"), cg.Principal(u[1], name="b")],
    )


def grid(seeds: int) -> dict:
    return {
        "beta": list(np.geomspace(0.05, 2, 10)),
        "weight": list(np.linspace(0.2, 2, 10)),
        "seed": list(range(seeds)),
    }


def load(path: Path) -> dict:
    with path.open() as fh:
        return {r["cell"]: r for r in csv.DictReader(fh)}


def compare(a: dict, b: dict) -> str:
    cols = [c for c in next(iter(a.values())) if c not in ("seconds", "method")]
    exact = all(a[k][c] == b[k][c] for k in a for c in cols)
    if exact:
        return "identical"
    num = [c for c in cols if c.startswith(("payoff", "agent_payoff"))]
    d = max(abs(float(a[k][c]) - float(b[k][c])) for k in a for c in num)
    return f"payoffs within {d:.1e}"


def child(args) -> None:
    """Run one sweep in this process (used for the interrupted run)."""
    sweep(build, grid(args.seeds), out=args.child, progress=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=100)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--interrupt", type=float, default=3.0)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    tmp = Path(tempfile.mkdtemp())
    g = grid(args.seeds)
    n = int(np.prod([len(v) for v in g.values()]))
    print(f"{n} games; files in {tmp}")
    t = sweep(build, g, out=tmp / "local.csv", progress=True)
    ref = load(tmp / "local.csv")
    print(f"local   {t.elapsed:7.2f} s")
    t = sweep(build, g, out=tmp / "loky.csv", n_jobs=args.jobs, progress=True)
    print(f"loky    {t.elapsed:7.2f} s  {compare(ref, load(tmp / 'loky.csv'))}")
    proc = subprocess.Popen(
        [sys.executable, __file__, "--seeds", str(args.seeds), "--child", str(tmp / "r.csv")],
        env={**os.environ},
    )
    time.sleep(args.interrupt)
    proc.send_signal(signal.SIGINT)
    proc.wait()
    done = len(load(tmp / "r.csv"))
    t = sweep(build, g, out=tmp / "r.csv", progress=True)
    print(
        f"resume  {t.elapsed:7.2f} s for {t.computed} cells after an interruption at {done}  "
        f"{compare(ref, load(tmp / 'r.csv'))}"
    )
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        print("dask    skipped (pip install cage-games[sweep])")
    else:
        with (
            LocalCluster(
                n_workers=args.jobs, threads_per_worker=1, processes=False, dashboard_address=None
            ) as cluster,
            Client(cluster),
        ):
            t = sweep(build, g, out=tmp / "dask.csv", n_jobs=-1, backend="dask", progress=True)
        print(f"dask    {t.elapsed:7.2f} s  {compare(ref, load(tmp / 'dask.csv'))}")
    try:
        import torch  # noqa: F401
    except ImportError:
        print("batch   skipped (no torch)")
    else:
        t = sweep(build, g, out=tmp / "batch.csv", batch=True, progress=True)
        print(f"batch   {t.elapsed:7.2f} s  {compare(ref, load(tmp / 'batch.csv'))}")


if __name__ == "__main__":
    main()
