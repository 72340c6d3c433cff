"""``cage align``: aligned decoding from the command line.

Example::

    cage align "Write a short review of a cafe." --objective sentiment=0.8 --objective brevity=0.2

prints the response and each objective's score of it. This module imports nothing heavy at
import time (torch and transformers are imported inside :func:`run`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["register", "run"]

_HELP = "generate text aligned to several objectives (a common-agency game per token)"
_EPILOG = """objectives (NAME=WEIGHT, repeatable):
  sentiment        positive sentiment (VADER)
  non-offensive    1 - profanity probability (alt-profanity-check)
  readability      Flesch reading ease (textstat)
  similarity       similarity to --reference TEXT (all-MiniLM-L6-v2)
  brevity          fewer words
  prompt:TEXT      log-ratio of the model with/without the instruction TEXT

examples:
  cage align "Write a short review of a cafe." --objective sentiment=0.8 --objective brevity=0.2
  cage align "Describe the sea." --objective "prompt:Be poetic.=1" --target-kl 0.3
"""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def _probability(text: str) -> float:
    value = _positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def register(subparsers: Any) -> None:
    """Add the ``align`` sub-command to an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "align",
        help=_HELP,
        description=_HELP,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``cage align`` (shared with the examples)."""
    p.add_argument("prompts", nargs="*", metavar="PROMPT", help="user message(s) to answer")
    p.add_argument(
        "-o",
        "--objective",
        action="append",
        default=[],
        metavar="NAME=WEIGHT",
        help="an objective and its weight (repeatable; see below)",
    )
    p.add_argument("--reference", metavar="TEXT", help="reference text for 'similarity'")
    strength = p.add_mutually_exclusive_group()
    strength.add_argument(
        "--beta",
        type=_positive_float,
        default=None,
        help="agent temperature: smaller moves the model more",
    )
    strength.add_argument(
        "--target-kl",
        type=_positive_float,
        default=None,
        metavar="NATS",
        help="strength as KL per token instead of beta (default: 0.3 when neither is given)",
    )
    p.add_argument(
        "--method",
        choices=["cage", "linear", "base"],
        default="cage",
        help="equilibrium (default), linear-mixing baseline, or the plain model",
    )
    p.add_argument("--top-k", type=_positive_int, default=20, help="candidates per step (20)")
    p.add_argument("--top-p", type=_probability, default=None, help="nucleus of candidates")
    p.add_argument("--max-new-tokens", type=_positive_int, default=48, help="(default 48)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--greedy", action="store_true", help="greedy decoding instead of sampling")
    p.add_argument(
        "--model",
        metavar="PATH",
        default=None,
        help="a local Hugging Face causal LM folder (default: SmolLM2-135M-Instruct)",
    )
    p.add_argument(
        "--no-chat-template",
        action="store_true",
        help="feed prompts as plain text, not as chat messages",
    )
    p.add_argument(
        "--show-equilibrium",
        action="store_true",
        help="print a per-step table of who paid for which token",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document")


def _table(result: Any, names: list[str]) -> str:
    short = [n if len(n) <= 14 else n[:13] + "…" for n in names]
    head = f"{'step':>4}  {'token':<16} {'KL':>6}  " + "  ".join(f"{s:>14}" for s in short)
    lines = [head, "-" * len(head)]
    for e in result.payments:
        tok = repr(e.get("text", ""))[1:-1]
        tok = tok if len(tok) <= 16 else tok[:15] + "…"
        if e["paid"] is None:
            cells = "  ".join(f"{'-':>14}" for _ in names)
        else:
            cells = "  ".join(f"{e['paid'][n]:>14.3f}" for n in names)
        flag = "  (fallback)" if e["fallback"] else ""
        lines.append(f"{e['step']:>4}  {tok:<16} {e['kl']:>6.3f}  {cells}{flag}")
    lines.append(
        "paid = tau_i(token) / beta: the log-boost each objective bought for the token chosen"
    )
    return "\n".join(lines)


def _fail(message: str) -> int:
    print(f"cage align: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    """Run ``cage align``; returns the exit code (errors: one line on stderr, code 2)."""
    from cage_adapters.decode import parse_objective_spec

    prompts = [p for p in (args.prompts or [])]
    if not prompts:
        return _fail(
            'no prompt given; e.g. cage align "Write a short review of a cafe." '
            "--objective sentiment=1"
        )
    if any(not p.strip() for p in prompts):
        return _fail("empty prompt; every PROMPT must contain text")
    if not args.objective:
        return _fail("no objective given; add --objective NAME=WEIGHT (e.g. sentiment=0.8)")
    try:
        specs = [parse_objective_spec(s) for s in args.objective]
    except ValueError as e:
        return _fail(str(e))
    names = [n for n, _ in specs]
    if len(set(names)) != len(names):
        return _fail(f"objective given twice: {sorted({n for n in names if names.count(n) > 1})}")
    from cage_adapters.objectives import available

    known = set(available())
    for n in names:
        low = n.lower()
        if (
            not low.startswith("prompt:")
            and low not in known
            and low not in {"nonoffensive", "non_offensive", "safety", "positive", "brief"}
        ):
            return _fail(f"unknown objective {n!r}; known objectives: {', '.join(sorted(known))}")
    if any(n.lower() == "similarity" for n in names) and not args.reference:
        return _fail("objective 'similarity' needs --reference TEXT")
    try:
        from cage_adapters.models import (
            MissingModelPackageError,
            load_default_model,
            load_model,
        )

        if args.model:
            model, tok = load_model(args.model)
        else:
            model, tok = load_default_model()
    except MissingModelPackageError as e:
        return _fail(str(e).replace("\n", " "))
    except (FileNotFoundError, OSError, ValueError) as e:
        return _fail(f"cannot load the model: {e}")
    from cage_adapters.decode import align

    try:
        results = align(
            model,
            tok,
            prompts,
            specs,
            method=args.method,
            beta=args.beta,
            target_kl=args.target_kl,
            top_k=args.top_k,
            top_p=args.top_p,
            max_new_tokens=args.max_new_tokens,
            seed=args.seed,
            greedy=args.greedy,
            chat=not args.no_chat_template,
            reference=args.reference,
            record=True,
        )
    except (ValueError, TypeError, ImportError) as e:
        return _fail(str(e).replace("\n", " "))
    if args.json:
        doc = {
            "model": args.model or "SmolLM2-135M-Instruct",
            "method": args.method,
            "objectives": dict(specs),
            "beta": args.beta,
            "target_kl": args.target_kl,
            "top_k": args.top_k,
            "top_p": args.top_p,
            "seed": args.seed,
            "results": [
                r.as_dict()
                if args.show_equilibrium
                else {k: v for k, v in r.as_dict().items() if k != "payments"}
                for r in results
            ],
        }
        print(json.dumps(doc, indent=2))
        return 0
    for i, r in enumerate(results):
        if len(results) > 1:
            print(f"=== prompt {i + 1}: {r.prompt}")
        print(r.response)
        print()
        for name, _ in specs:
            val = r.scores.get(name)
            shown = "n/a (token-level objective)" if val is None else f"{val:.4g}"
            print(f"  {name:<24} score {shown}")
        if args.method != "base":
            print(
                f"  {'KL per token':<24} {r.mean_kl:.3f} nats over {r.n_tokens} tokens"
                + (f", {r.fallback_steps} fallback steps" if r.fallback_steps else "")
            )
            if r.target_kl is not None:
                print(f"  {'':<24} {_target_words(r)}")
        if args.show_equilibrium and args.method != "base":
            print()
            print(_table(r, names))
        if i + 1 < len(results):
            print()
    return 0


def _target_words(r: object) -> str:
    """Realised vs asked KL per token, and the share of steps that reached the target."""
    share = r.kl_reached_share  # type: ignore[attr-defined]
    asked = r.target_kl  # type: ignore[attr-defined]
    words = f"asked {asked:g} (target KL), realised {r.mean_kl:.3f}"  # type: ignore[attr-defined]
    if share is None:
        return words
    words += f"; the target was reached at {share:.0%} of the steps"
    if share < 1:
        words += (
            " (at the others even the strongest scale tried stayed below it: the candidates "
            "tie on the objectives, or the target is out of reach; a larger --top-k helps)"
        )
    return words
