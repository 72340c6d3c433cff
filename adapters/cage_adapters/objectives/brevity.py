"""Built-in objective: brevity."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from cage_adapters.objectives.base import Objective, StepContext

__all__ = ['Brevity']


class Brevity(Objective):
    """Brevity, from length.

    Sequence score of a finished text: minus its number of words (higher is briefer).

    Token reward of a candidate ``a`` after response ``s``::

        r(a) = -(words(s + a) - words(s)) + end_bonus * [a ends the response]
               + end_bonus / 2 * [a ends a sentence]

    i.e. the change in the sequence score, plus a bonus for stopping now (EOS or end-of-turn)
    or at the end of a sentence (``.``, ``!``, ``?`` or a newline), standing in for the words
    a continuation would add.

    Parameters
    ----------
    tokenizer
        The base tokenizer.
    end_bonus : float, default 2.0
        Words saved by stopping; must be >= 0.
    """

    def __init__(self, tokenizer: Any, *, end_bonus: float = 2.0,
                 normalize: str | float = "zscore") -> None:
        super().__init__(tokenizer, "brevity", normalize)
        if not (math.isfinite(end_bonus) and end_bonus >= 0):
            raise ValueError(f"end_bonus must be a finite number >= 0, got {end_bonus!r}")
        self.end_bonus = float(end_bonus)

    def score(self, texts: Sequence[str]) -> np.ndarray:
        return -np.asarray([len(t.split()) for t in texts], dtype=np.float64)

    def rewards(self, ctx: StepContext) -> Any:
        import torch

        texts, where = ctx.candidate_texts()
        prefix_words = [len(t.split()) for t in ctx.response_texts()]
        r = torch.zeros(ctx.candidates.shape, dtype=torch.float32)
        cands = ctx.candidates.tolist()
        responses = ctx.response_texts()
        for text, (row, col) in zip(texts, where, strict=True):
            tid = cands[row][col]
            val = -float(len(text.split()) - prefix_words[row])
            if tid in ctx.eos_ids:
                val += self.end_bonus
            else:
                piece = text[len(responses[row]):] if text.startswith(responses[row]) else text
                stripped = piece.rstrip(" ")
                if "\n" in piece or stripped.endswith((".", "!", "?")):
                    val += self.end_bonus / 2
            r[row, col] = val
        return r
