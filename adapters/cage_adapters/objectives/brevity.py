"""Built-in objective: brevity, as *finishing* (close sentences, then end the turn)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from cage_adapters.objectives.base import Objective, StepContext

__all__ = ["Brevity", "closes_sentence", "sentence_words"]

_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
_CLOSE = re.compile(r"""[A-Za-z0-9)'"\u2019\u201d][.!?]+["'\u2019\u201d)]*\s*$""")
_BREAK = re.compile(r"[.!?\n]")


def sentence_words(text: str) -> int:
    """Alphabetic words in the last, unfinished sentence of ``text``.

    The sentence starts after the last ``.``, ``!``, ``?`` or newline of the text (the
    closing punctuation of ``text`` itself, if any, is ignored).
    """
    body = text.rstrip()
    body = body.rstrip(".!?\"')\u2019\u201d")
    cut = max((m.end() for m in _BREAK.finditer(body)), default=0)
    return len(_WORD.findall(body[cut:]))


def closes_sentence(prefix: str, text: str, min_words: int = 3) -> bool:
    """Whether ``text`` (= ``prefix`` + a candidate) closes a real sentence that ``prefix`` left
    open: it ends with ``.``, ``!`` or ``?`` right after a word character, and the sentence
    it closes has at least ``min_words`` alphabetic words (``"S.H.I."`` or ``"co.com."`` do not
    count)."""
    if len(text.rstrip()) <= len(prefix.rstrip()) or ends_complete(prefix):
        return False
    if not _CLOSE.search(text):
        return False
    return sentence_words(text) >= min_words


def ends_complete(text: str) -> bool:
    """Whether a response ends on closed sentence punctuation (a finished thought)."""
    return bool(text.strip()) and bool(re.search(r"""[.!?]["'\u2019\u201d)]*\s*$""", text))


class Brevity(Objective):
    """Brevity: finish the answer soon, with whole sentences.

    Sequence score of a finished text: minus its length in characters divided by 6 (a length
    in "standard words" that gluing words together cannot shorten).

    Token reward of a candidate ``a`` after response ``s``::

        r(a) = end_bonus       if a ends the turn (EOS or end-of-turn) and s ends a sentence
               sentence_bonus  if s + a closes a sentence of >= min_words real words
               0               otherwise

    Every other candidate ties at 0, so the objective only ever pushes towards closing the
    current sentence and then ending the turn. It pays nothing for fewer, longer words (an
    earlier version rewarded the drop in the word count, and hard steering glued words into
    ``"S.H.I.E.L.I.D.S.A.s.Cheri.com.com.co."``), nothing for a full stop after an initial or a
    domain (a sentence needs ``min_words`` alphabetic words) and nothing for ending in the
    middle of a sentence.

    Parameters
    ----------
    tokenizer
        The base tokenizer.
    end_bonus : float, default 2.0
        Reward for ending the turn after a complete sentence; must be >= 0.
    sentence_bonus : float, optional
        Reward for closing a sentence (default ``end_bonus / 2``); must be >= 0.
    min_words : int, default 3
        Alphabetic words a sentence needs for its closing punctuation to count.
    normalize
        See :class:`~cage_adapters.objectives.Objective`.
    """

    def __init__(self, tokenizer: Any, *, end_bonus: float = 2.0,
                 sentence_bonus: float | None = None, min_words: int = 3,
                 normalize: str | float = "zscore") -> None:
        super().__init__(tokenizer, "brevity", normalize)
        if not (math.isfinite(end_bonus) and end_bonus >= 0):
            raise ValueError(f"end_bonus must be a finite number >= 0, got {end_bonus!r}")
        if sentence_bonus is None:
            sentence_bonus = end_bonus / 2
        if not (math.isfinite(sentence_bonus) and sentence_bonus >= 0):
            raise ValueError(
                f"sentence_bonus must be a finite number >= 0, got {sentence_bonus!r}")
        if isinstance(min_words, bool) or not isinstance(min_words, int) or min_words < 1:
            raise ValueError(f"min_words must be a positive integer, got {min_words!r}")
        self.end_bonus = float(end_bonus)
        self.sentence_bonus = float(sentence_bonus)
        self.min_words = min_words

    def score(self, texts: Sequence[str]) -> np.ndarray:
        return -np.asarray([len(t.strip()) / 6.0 for t in texts], dtype=np.float64)

    def rewards(self, ctx: StepContext) -> Any:
        import torch

        texts, where = ctx.candidate_texts()
        r = torch.zeros(ctx.candidates.shape, dtype=torch.float32)
        cands = ctx.candidates.tolist()
        responses = ctx.response_texts()
        complete = [ends_complete(s) for s in responses]
        for text, (row, col) in zip(texts, where, strict=True):
            if cands[row][col] in ctx.eos_ids:
                val = self.end_bonus if complete[row] else 0.0
            elif closes_sentence(responses[row], text, self.min_words):
                val = self.sentence_bonus
            else:
                val = 0.0
            r[row, col] = val
        return r
