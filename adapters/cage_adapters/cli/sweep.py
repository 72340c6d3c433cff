"""``cage sweep GAME.json --vary beta=0.1:1:10 --out results.csv``: equilibria over a grid."""

from __future__ import annotations

import argparse


def _values(text: str) -> list[float]:
    """``a,b,c`` (a list) or ``lo:hi:n`` (``n`` evenly spaced values, ends included)."""
    import numpy as np

    if ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise ValueError(f"a range is lo:hi:n, got {text!r}")
        lo, hi, n = float(parts[0]), float(parts[1]), int(parts[2])
        if n < 1:
            raise ValueError(f"a range needs n >= 1 values, got {text!r}")
        return [float(x) for x in np.linspace(lo, hi, n)]
    return [float(x) for x in text.split(",") if x.strip()]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="solve a game over a parameter grid into a CSV/Parquet table",
        description="Solve a JSON game file (format: docs/cli.rst) once per cell of a grid of "
        "parameters and write one row per cell. Re-running with the same --out resumes: "
        "finished cells are read back, not recomputed.",
    )
    p.add_argument("game", help="path to a JSON game file (the base game)")
    p.add_argument(
        "--vary",
        action="append",
        default=[],
        metavar="PARAM=VALUES",
        help="beta, weight.NAME or cap.NAME, with VALUES a list a,b,c or a range lo:hi:n; "
        "repeat for a product grid",
    )
    p.add_argument("--out", required=True, help="output table (.csv or .parquet)")
    p.add_argument("--method", default="auto", help="solver method (see cage_games.METHODS)")
    p.add_argument("--tol", type=float, default=None, help="residual tolerance")
    p.add_argument("--jobs", type=int, default=1, help="parallel workers (-1: all cores)")
    p.add_argument(
        "--backend",
        default=None,
        choices=["loky", "threading", "dask"],
        help="joblib backend (dask: connect with --scheduler)",
    )
    p.add_argument("--scheduler", default=None, help="Dask scheduler address for --backend dask")
    p.add_argument("--chunk-size", type=int, default=None, help="cells per task")
    p.add_argument("--batch", action="store_true", help="batch same-shape games through torch")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from functools import partial

    import cage_games as cg
    from cage_games.sweep import sweep, vary_game

    base = cg.load_game(args.game)
    grid: dict[str, list[float]] = {}
    for spec in args.vary:
        name, sep, values = spec.partition("=")
        if not sep or not name:
            raise ValueError(f"--vary takes PARAM=VALUES, got {spec!r}")
        if name in grid:
            raise ValueError(f"--vary {name} is given twice")
        grid[name] = _values(values)
    if not grid:
        raise ValueError("give at least one --vary PARAM=VALUES (e.g. --vary beta=0.1:1:10)")
    vary_game(base, **{k: v[0] for k, v in grid.items()})  # bad names fail here, not in workers
    options = {} if args.tol is None else {"tol": args.tol}
    kwargs = dict(
        method=args.method,
        options=options,
        out=args.out,
        n_jobs=args.jobs,
        backend=args.backend,
        chunk_size=args.chunk_size,
        batch=args.batch,
        progress=not args.no_progress,
    )
    if args.backend == "dask":
        from dask.distributed import Client

        with Client(args.scheduler) if args.scheduler else Client(processes=False):
            table = sweep(partial(vary_game, base), grid, **kwargs)
    else:
        table = sweep(partial(vary_game, base), grid, **kwargs)
    failed = int(sum(1 for r in table.rows if not r.get("success")))
    print(
        f"{len(table)} cells ({table.computed} computed, {table.resumed} resumed) in "
        f"{table.elapsed:.3g} s; {failed} did not converge; written to {args.out}"
    )
    return 0 if failed == 0 else 1
