"""``cage learn GAME.json``: no-regret learning dynamics between the principals of a game.

Runs :func:`cage_games.learning.learn` and prints the record (regret per principal with the
learner's theoretical bound, time averages, distance to the equilibrium), or JSON with
``--json``; ``--plot out.png`` saves the regret/T and distance curves.
"""

from __future__ import annotations

import argparse
import json
import sys

_LEARNER_HELP = "hedge (default), optimistic-hedge or gradient"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "learn",
        help="run no-regret learning dynamics on a game file",
        description="Repeated play of a JSON game file (format: docs/cli.rst): every principal "
        "runs an online learner over truthful-threshold schedules, the agent responds each "
        "round. Reports each principal's regret against its theoretical bound and the distance "
        "of the time-averaged play to the computed equilibrium (docs/learning.rst).",
    )
    p.add_argument("game", metavar="GAME.json", help="path to a JSON game file")
    p.add_argument("--learner", default="hedge", help=_LEARNER_HELP)
    p.add_argument("--rounds", type=int, default=1000, help="number of rounds T (default 1000)")
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the run (default: fresh; the seed used is reported)",
    )
    p.add_argument(
        "--grid", type=int, default=None, help="grid size K of the Hedge learners (default 41)"
    )
    p.add_argument(
        "--step-size",
        type=float,
        default=None,
        help="learner step size (default: the fixed-horizon step of its bound)",
    )
    p.add_argument(
        "--no-equilibrium",
        action="store_true",
        help="skip solving the game and the distances to its equilibrium",
    )
    p.add_argument(
        "--plot",
        metavar="PATH",
        default=None,
        help="save the regret/T and distance plot (png, pdf, svg)",
    )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars on stderr for the rounds and the regret accounting (default: on "
        "long runs only)",
    )
    p.set_defaults(func=run)


def _fail(message: object) -> int:
    text = " ".join(str(message).split())
    print(f"cage learn: error: {text}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    if args.plot is not None:
        from pathlib import Path

        folder = Path(args.plot).expanduser().resolve().parent
        if not folder.is_dir():
            return _fail(f"--plot {args.plot}: folder {folder} does not exist; create it first")
    try:
        from cage_games.io import load_game
        from cage_games.learning import learn

        game = load_game(args.game)
        options = {}
        if args.grid is not None:
            options["grid"] = args.grid
        if args.step_size is not None:
            options["step_size"] = args.step_size
        res = learn(
            game,
            args.learner,
            args.rounds,
            seed=args.seed,
            equilibrium=False if args.no_equilibrium else None,
            progress=args.progress,
            **options,
        )
    except (ValueError, TypeError, OSError, NotImplementedError) as exc:
        from cage_adapters.cli import with_source

        return _fail(with_source(args.game, exc))
    plot_path = None
    if args.plot is not None:
        try:
            plot_path = str(res.plot(args.plot))
        except (OSError, ImportError, ValueError) as exc:
            return _fail(f"cannot write the plot to {args.plot}: {exc}")
    if args.json:
        out = res.to_dict()
        out["plot"] = plot_path
        json.dump(out, sys.stdout, indent=2)
        print()
        return 0
    print(res)
    print()
    for name, reg, bound, ok in zip(
        res.names, res.regret, res.bound, res.within_bound, strict=True
    ):
        print(
            f"{name}: regret {reg:.6g} ({reg / res.rounds:.3g} per round), bound {bound:.6g}"
            f" ({'within' if ok else 'NOT within'} the bound)"
        )
    if res.linearized_regret is not None:
        print("(gradient ascent: the bound controls the linearised regret; see bound_covers)")
    if plot_path is not None:
        print(f"plot written to {plot_path}")
    return 0
