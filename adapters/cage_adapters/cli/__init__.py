"""The ``cage`` command: one sub-command per module in this package.

Each sub-command module exposes ``register(subparsers)`` (adds its argparse parser and sets
``func=run``) and ``run(args) -> int``. Modules import heavy libraries (torch, transformers)
inside ``run`` only, so ``cage solve`` starts fast with the core dependencies alone.

Every failure is one line on stderr, never a traceback: bad input prints
``cage: error: FILE: what is wrong and how to fix it`` and exits with status 2; an unexpected
failure prints ``cage: internal error: ...`` and exits with status 1 (set ``CAGE_DEBUG=1`` to see
the traceback). Warnings raised while a command runs are collected and summarised in one line.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Sequence
from typing import NoReturn

SUBCOMMANDS = ("solve", "check", "learn", "align", "sweep", "frontier")


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what is wrong, and where the help is)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered sub-command."""
    from cage_games import __version__

    parser = _OneLineParser(
        prog="cage",
        description="Common-agency games: solve, check and learn equilibria; align LLM decoding.",
    )
    parser.add_argument("--version", action="version", version=f"cage-games {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def with_source(source: object, exc: BaseException | str) -> str:
    """``"SOURCE: message"`` on one line, unless the message already starts with the source."""
    text = " ".join(str(exc).split())
    if source is None:
        return text
    name = "<stdin>" if str(source) == "-" else str(source)
    return text if text.startswith(name) else f"{name}: {text}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cage`` console script; returns the exit status."""
    # torch's OpenMP threads spin while they wait; when another process holds a core, a
    # decoding run of ``cage align`` became ten times slower (16 s -> 154 s on 2 cores).
    # Passive waiting costs nothing measurable otherwise. It must be set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    source = getattr(args, "game", None)
    debug = bool(os.environ.get("CAGE_DEBUG"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            status = int(args.func(args) or 0)
        except (ValueError, TypeError, NotImplementedError, FileNotFoundError) as exc:
            if debug:
                raise
            print(f"cage: error: {with_source(source, exc)}", file=sys.stderr)
            status = 2
        except RecursionError:
            if debug:
                raise
            print(
                f"cage: error: {with_source(source, 'the input is nested too deeply')}",
                file=sys.stderr,
            )
            status = 2
        except MemoryError:
            print(
                f"cage: error: {with_source(source, 'out of memory; try a smaller game')}",
                file=sys.stderr,
            )
            status = 1
        except KeyboardInterrupt:
            print("cage: interrupted", file=sys.stderr)
            status = 130
        except BrokenPipeError:
            # The reader went away (``cage solve ... --json | head``): silence the final flush
            # of stdout, as the Python documentation recommends, instead of printing a traceback.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 1
        except OSError as exc:
            if debug:
                raise
            where = exc.filename if exc.filename is not None else source
            print(f"cage: error: {with_source(where, exc.strerror or exc)}", file=sys.stderr)
            status = 1
        except Exception as exc:  # the promise is one line, never a traceback
            if debug:
                raise
            print(
                f"cage: internal error: {type(exc).__name__}: {' '.join(str(exc).split())} "
                "(please report it; CAGE_DEBUG=1 shows the traceback)",
                file=sys.stderr,
            )
            status = 1
    _summarise_warnings(caught)
    return status


def _summarise_warnings(caught: list[warnings.WarningMessage]) -> None:
    """One stderr line for the warnings of a run (the first one, and how many more)."""
    if not caught:
        return
    first = " ".join(str(caught[0].message).split())
    more = f" (and {len(caught) - 1} more warnings)" if len(caught) > 1 else ""
    print(f"cage: warning: {first}{more}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
