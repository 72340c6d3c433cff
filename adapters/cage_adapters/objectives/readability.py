"""Built-in objective: readability (Flesch reading ease, textstat)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cage_adapters.objectives.sequence import SequenceObjective

__all__ = ['Readability']


class Readability(SequenceObjective):
    """Readability: Flesch reading ease (``textstat==0.7.8``; higher reads more easily), minus
    ``nonword_penalty`` times the share of words that are not English words.

    Flesch rewards few syllables per word and few words per sentence; steered hard on it alone,
    SmolLM2 wrote short pseudo-words ("café-té", "dinein": 18% non-words against 6% for plain
    sampling). The penalty makes a made-up word cost more than any syllable it saves
    (:func:`~cage_adapters.objectives.words.nonword_rate`). Empty texts score 100 (nothing hard
    to read yet); textstat's own value for them is 206.835.

    Parameters
    ----------
    tokenizer
        The base tokenizer.
    nonword_penalty : float, default 100.0
        Flesch points per unit of non-word rate (0 = plain Flesch).
    normalize
        See :class:`~cage_adapters.objectives.Objective`.
    """

    def __init__(self, tokenizer: Any, *, nonword_penalty: float = 100.0,
                 normalize: str | float = "zscore") -> None:
        try:
            import textstat
        except ImportError as e:  # pragma: no cover - declared dependency
            raise ImportError("Readability needs textstat: pip install textstat==0.7.8") from e

        from cage_adapters.objectives.words import nonword_rate

        penalty = float(nonword_penalty)

        def flesch(texts: list[str]) -> list[float]:
            base = [float(textstat.flesch_reading_ease(t)) if t.strip() else 100.0
                    for t in texts]
            if not penalty:
                return base
            return list(np.asarray(base) - penalty * nonword_rate(texts))

        super().__init__(flesch, tokenizer, name="readability", normalize=normalize)
