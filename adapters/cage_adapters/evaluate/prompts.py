"""The prompt suites shipped with the package (written for this project).

160 prompts over five categories (reviews, advice, explanations, instructions, short stories),
32 each, split into ``dev`` (80: every even-numbered prompt of each category) and ``heldout``
(80: the odd-numbered ones). Tuning and exploration use ``dev`` only; reported results use
``heldout``, which no tuning looks at.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

__all__ = ["SPLITS", "load_split", "resolve_prompts"]

SPLITS = ("dev", "heldout")


def load_split(name: str, with_category: bool = False) -> list:
    """The prompts of a shipped split (``"dev"`` or ``"heldout"``)."""
    if name not in SPLITS:
        raise ValueError(f"unknown prompt split {name!r}; shipped splits: {', '.join(SPLITS)}")
    text = resources.files("cage_adapters").joinpath(f"data/prompts_{name}.jsonl").read_text(
        encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return rows if with_category else [r["prompt"] for r in rows]


def resolve_prompts(spec: str | os.PathLike[str]) -> list[str]:
    """Prompts from a shipped split name or a file (``.jsonl`` with ``prompt`` keys, or text).

    Raises
    ------
    FileNotFoundError
        When ``spec`` is neither a split nor an existing file.
    """
    if str(spec) in SPLITS:
        return load_split(str(spec))
    p = Path(spec)
    if not p.exists():
        raise FileNotFoundError(
            f"prompt file {str(spec)!r} not found (or use a shipped split: {', '.join(SPLITS)})")
    from cage_adapters.evaluate.frontier import load_prompts

    return load_prompts(p)
