"""The ``cage`` command: one sub-command per module in this package.

Each sub-command module exposes ``register(subparsers)`` (adds its argparse parser and sets
``func=run``) and ``run(args) -> int``. Modules import heavy libraries (torch, transformers)
inside ``run`` only, so ``cage solve`` starts fast with the core dependencies alone.
Bad input prints one ``cage: error: ...`` line on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

SUBCOMMANDS = ("solve", "check", "learn", "align", "frontier")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered sub-command."""
    from cage_games import __version__

    parser = argparse.ArgumentParser(
        prog="cage",
        description="Common-agency games: solve, check and learn equilibria; align LLM decoding.",
    )
    parser.add_argument("--version", action="version", version=f"cage-games {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cage`` console script; returns the exit status."""
    # torch's OpenMP threads spin while they wait; when another process holds a core, a
    # decoding run of ``cage align`` became ten times slower (16 s -> 154 s on 2 cores).
    # Passive waiting costs nothing measurable otherwise. It must be set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, NotImplementedError, FileNotFoundError) as exc:
        print(f"cage: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cage: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (``cage solve ... --json | head``): silence the final flush of
        # stdout, as the Python documentation recommends, instead of printing a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
