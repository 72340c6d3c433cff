"""English words: the alphabetic words of a text and the share that are not English words.

Used by :class:`~cage_adapters.objectives.Readability` (a readable text is made of real words)
and by the evaluation's quality measures (:mod:`cage_adapters.evaluate.judges`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import numpy as np

__all__ = ["nonword_rate", "words"]

_WORD = re.compile(r"[A-Za-z]+")


def words(text: str) -> list[str]:
    """Alphabetic words of ``text`` (runs of ASCII letters), lower-cased."""
    return [w.lower() for w in _WORD.findall(text)]



@functools.lru_cache(maxsize=1)
def _english() -> frozenset[str]:
    from english_words import get_english_words_set

    return frozenset(get_english_words_set(["web2", "gcide"], lower=True))


def nonword_rate(texts: Sequence[str]) -> np.ndarray:
    """Per text, the fraction of its alphabetic words that are not English words (0 if none).

    Single letters other than "a" and "i" count as non-words (initials glued by dots). Plural
    ``-s`` and common inflections (``-ed``, ``-ing``, ``-ly``, ``'s``) are accepted when
    the stem is a word.
    """
    eng = _english()

    def known(w: str) -> bool:
        if len(w) == 1:
            return w in ("a", "i")
        if w in eng:
            return True
        for suf in ("s", "es", "ed", "d", "ing", "ly", "er", "est"):
            if w.endswith(suf) and len(w) > len(suf) + 1:
                stem = w[: -len(suf)]
                if stem in eng or stem + "e" in eng:
                    return True
        return False

    out = []
    for t in texts:
        ws = words(t)
        out.append(sum(not known(w) for w in ws) / len(ws) if ws else 0.0)
    return np.asarray(out, dtype=np.float64)
