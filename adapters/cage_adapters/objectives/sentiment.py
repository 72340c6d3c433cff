"""Built-in objective: positive sentiment (VADER)."""

from __future__ import annotations

from typing import Any

from cage_adapters.objectives.sequence import SequenceObjective

__all__ = ['Sentiment']


class Sentiment(SequenceObjective):
    """Positive sentiment: VADER's compound score in [-1, 1] (``vaderSentiment``)."""

    def __init__(self, tokenizer: Any, *, normalize: str | float = "zscore") -> None:
        try:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
        except ImportError as e:  # pragma: no cover - declared dependency
            raise ImportError("Sentiment needs vaderSentiment: pip install vaderSentiment") from e
        analyzer = SentimentIntensityAnalyzer()

        def vader(texts: list[str]) -> list[float]:
            return [analyzer.polarity_scores(t)["compound"] if t.strip() else 0.0 for t in texts]

        super().__init__(vader, tokenizer, name="sentiment", normalize=normalize)
