"""Built-in objective: readability (Flesch reading ease, textstat)."""

from __future__ import annotations

from typing import Any

from cage_adapters.objectives.sequence import SequenceObjective

__all__ = ['Readability']


class Readability(SequenceObjective):
    """Readability: Flesch reading ease (``textstat==0.7.8``; higher reads more easily).

    Empty texts score 100 (nothing hard to read yet); textstat's own value for them is 206.835.
    """

    def __init__(self, tokenizer: Any, *, normalize: str | float = "zscore") -> None:
        try:
            import textstat
        except ImportError as e:  # pragma: no cover - declared dependency
            raise ImportError("Readability needs textstat: pip install textstat==0.7.8") from e

        def flesch(texts: list[str]) -> list[float]:
            return [float(textstat.flesch_reading_ease(t)) if t.strip() else 100.0
                    for t in texts]

        super().__init__(flesch, tokenizer, name="readability", normalize=normalize)
