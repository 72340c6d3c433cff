"""The registry of built-in objectives, as data.

Each :class:`Entry` names a class by its module path, so that adding an objective is one module
and one line in :data:`ENTRIES`; nothing is imported until the objective is built.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from cage_adapters.objectives.base import Objective, UnknownObjectiveError

__all__ = ["ENTRIES", "Entry", "available", "make_objective"]


@dataclass(frozen=True)
class Entry:
    """One registered objective.

    Attributes
    ----------
    name : str
        The name accepted by :func:`make_objective` (and ``cage align --objective``).
    target : str
        ``"module:Class"`` of the objective; built as ``Class(tokenizer, **kwargs)``.
    description : str
        One line, shown by ``cage align --list-objectives``.
    aliases : tuple of str
        Other accepted names.
    needs_reference : bool
        The objective takes ``reference=`` text (a ``ValueError`` without it).
    """

    name: str
    target: str
    description: str
    aliases: tuple[str, ...] = ()
    needs_reference: bool = False

    def load(self) -> type:
        module, cls = self.target.split(":")
        return getattr(importlib.import_module(module), cls)


_P = "cage_adapters.objectives."
ENTRIES: tuple[Entry, ...] = (
    Entry("sentiment", _P + "sentiment:Sentiment", "positive sentiment (VADER compound)",
          ("positive",)),
    Entry("non-offensive", _P + "non_offensive:NonOffensive",
          "1 - profanity probability (alt-profanity-check)",
          ("nonoffensive", "non_offensive", "safety")),
    Entry("readability", _P + "readability:Readability", "Flesch reading ease (textstat)"),
    Entry("similarity", _P + "similarity:Similarity",
          "cosine similarity to --reference (all-MiniLM-L6-v2)", needs_reference=True),
    Entry("brevity", _P + "brevity:Brevity",
          "finish soon: reward for ending the turn and closing sentences", ("brief",)),
)


def _lookup(name: str) -> Entry | None:
    low = name.lower()
    for e in ENTRIES:
        if low == e.name or low in e.aliases:
            return e
    return None


def available() -> dict[str, str]:
    """Names accepted by :func:`make_objective` (and ``cage align --objective``), described."""
    out = {e.name: e.description for e in ENTRIES}
    out["prompt:<instruction>"] = "log-ratio with/without an instruction"
    return out


def make_objective(name: str, tokenizer: Any, *, model: Any = None,
                   reference: str | None = None) -> Objective:
    """Build an objective from its name.

    Parameters
    ----------
    name : str
        One of :func:`available`: a built-in scorer, or ``prompt:<instruction>`` for a
        :class:`~cage_adapters.objectives.PromptedObjective` (which needs ``model``).
    tokenizer
        The base tokenizer.
    model : optional
        Model for prompted objectives: must be the base model (its plain-context distribution
        is read from the processor's input, ``reuse_base=True``).
    reference : str, optional
        Reference text for ``similarity``.

    Raises
    ------
    UnknownObjectiveError
        For an unknown name; the message lists the known ones.
    """
    key = str(name).strip()
    if key.lower().startswith("prompt:"):
        from cage_adapters.objectives.token import PromptedObjective

        instruction = key[len("prompt:"):].strip()
        if not instruction:
            raise ValueError("objective 'prompt:' needs an instruction, e.g. 'prompt:Be brief.'")
        # the model given here is the base model: its plain-context distribution is the
        # processor's input, so only the instructed context needs a forward pass
        return PromptedObjective(instruction, tokenizer, model, reuse_base=True)
    entry = _lookup(key)
    if entry is None:
        raise UnknownObjectiveError(
            f"unknown objective {name!r}; known objectives: {', '.join(sorted(available()))}"
        )
    if entry.needs_reference:
        if not reference:
            raise ValueError(
                f"objective {entry.name!r} needs a reference text (--reference TEXT)")
        return entry.load()(tokenizer, reference)
    return entry.load()(tokenizer)
