"""Built-in objective: non-offensiveness (alt-profanity-check)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cage_adapters.objectives.sequence import SequenceObjective

__all__ = ['NonOffensive']


class NonOffensive(SequenceObjective):
    """Non-offensiveness: ``1 - predict_prob`` of ``alt-profanity-check`` (in [0, 1])."""

    def __init__(self, tokenizer: Any, *, normalize: str | float = "zscore") -> None:
        try:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from profanity_check import predict_prob
        except ImportError as e:  # pragma: no cover - declared dependency
            raise ImportError(
                "NonOffensive needs alt-profanity-check: pip install alt-profanity-check") from e

        def clean(texts: list[str]) -> np.ndarray:
            return 1.0 - np.asarray(predict_prob(list(texts)), dtype=np.float64)

        super().__init__(clean, tokenizer, name="non-offensive", normalize=normalize)
