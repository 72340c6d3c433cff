"""``cage check GAME.json``: the existence, uniqueness and stability reports of a game file.

Each report says what it established, by which argument, and what it only sampled (see
docs/existence.rst, docs/uniqueness.rst and docs/stability.rst). Exit status: 0 when existence
is established (and, for ``beta > 0``, the equilibrium was computed for the stability report);
1 otherwise; 2 for a bad game file or bad options.
"""

from __future__ import annotations

import argparse
import json
import sys

_WRT_CHOICES = ("weights", "utilities", "v", "beta", "all")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``check`` sub-command to the ``cage`` parser."""
    p = subparsers.add_parser(
        "check",
        help="verify existence, uniqueness and stability of a game's equilibrium",
        description="Print the existence, uniqueness and stability reports of a JSON game file "
        "(format: docs/cli.rst): what each check proved, by which argument, and what it only "
        "sampled.",
    )
    p.add_argument("game", help="path to a JSON game file")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.add_argument(
        "--samples",
        type=int,
        default=200,
        help="random points for the sampled checks: per face (existence, at most 64) and in "
        "the root box (uniqueness P-matrix test; default 200)",
    )
    p.add_argument(
        "--starts",
        type=int,
        default=8,
        help="random starts of the multi-start solve when uniqueness is not proved",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of every sampled check")
    p.add_argument(
        "--wrt",
        nargs="+",
        default=["weights", "beta"],
        choices=_WRT_CHOICES,
        metavar="PARAM",
        help="parameters to differentiate: weights, utilities, v, beta or all "
        "(default: weights beta)",
    )
    p.add_argument(
        "--lipschitz-samples",
        type=int,
        default=8,
        help="re-solved perturbed games for the sampled Lipschitz estimate",
    )
    p.add_argument(
        "--radius",
        type=float,
        default=0.05,
        help="max-norm radius of the ball of weights sampled (default 0.05)",
    )
    p.add_argument(
        "--no-stability",
        action="store_true",
        help="skip the stability report (no equilibrium is computed)",
    )
    p.set_defaults(func=run)


def _error(message: str) -> int:
    print(f"cage: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    """Run the three checks on ``args.game`` and print them; returns the exit status."""
    for name in ("samples", "starts", "lipschitz_samples"):
        if getattr(args, name) < 0:
            return _error(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if not 0.0 < args.radius < 1.0:
        return _error(f"--radius must be in (0, 1), got {args.radius}")

    import cage_games as cg
    from cage_games.existence import check_existence
    from cage_games.sensitivity import sensitivity
    from cage_games.uniqueness import check_uniqueness

    try:
        game = cg.load_game(args.game)
    except (ValueError, TypeError, OSError) as exc:
        return _error(str(exc))

    existence = check_existence(game, n_samples=min(args.samples, 64), seed=args.seed)
    uniqueness = check_uniqueness(
        game, n_samples=args.samples, n_starts=args.starts, seed=args.seed
    )
    stability = None
    note = None
    status = 0 if existence.established else 1
    if args.no_stability:
        note = "skipped (--no-stability)"
    elif game.beta == 0:
        note = (
            "not applicable at beta = 0: the menu auction's payoffs are set-valued and its "
            "policy is not differentiable"
        )
    else:
        result = cg.solve(game)
        if result.success:
            wrt = "all" if "all" in args.wrt else tuple(args.wrt)
            stability = sensitivity(
                game,
                result,
                wrt=wrt,
                lipschitz_samples=args.lipschitz_samples,
                radius=args.radius,
                seed=args.seed,
            )
        else:
            note = f"no equilibrium computed ({result.message}): nothing to differentiate"
            status = 1

    if args.json:
        out = {
            "game": str(args.game),
            "existence": existence.to_dict(),
            "uniqueness": uniqueness.to_dict(),
            "stability": stability.to_dict() if stability is not None else None,
        }
        if note is not None:
            out["stability_note"] = note
        json.dump(out, sys.stdout, indent=2)
        print()
        return status
    verdicts = [
        ("Existence", existence.message),
        ("Uniqueness", uniqueness.conclusion),
        ("Stability", stability.message if stability is not None else note),
    ]
    for name, verdict in verdicts:  # one line each, details after
        print(f"{name + ':':<12}{_first_sentence(verdict)}")
    print()
    rule = "=" * 100
    for (name, verdict), details in zip(verdicts, (existence, uniqueness, stability), strict=True):
        print(rule)
        print(f"{name}: {verdict}")
        print(rule)
        if details is not None:
            print(details)
        print()
    return status


def _first_sentence(text: object) -> str:
    """The verdict's first sentence, on one line (the details follow)."""
    flat = " ".join(str(text).split())
    cut = flat.find(". ")
    return flat if cut < 0 else flat[: cut + 1]
