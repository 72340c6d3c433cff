"""Sequence-level objectives: any text scorer applied to *response so far + candidate*."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from cage_adapters.objectives.base import Objective, StepContext

__all__ = ['SequenceObjective']


class SequenceObjective(Objective):
    """Reward = ``scorer(response so far + candidate)`` for each candidate (ARGS-style).

    Parameters
    ----------
    scorer : callable
        ``scorer(list_of_texts) -> sequence of floats`` (higher is better), called once per
        step with every active row's candidates; must return one finite number per text.
    tokenizer
        The base tokenizer.
    name : str, default "scorer"
    normalize
        See :class:`Objective`.

    Raises
    ------
    ValueError
        During decoding, if the scorer returns the wrong number of scores or a non-finite one.
    """

    def __init__(self, scorer: Callable[[list[str]], Sequence[float]], tokenizer: Any, *,
                 name: str = "scorer", normalize: str | float = "zscore") -> None:
        if not callable(scorer):
            raise TypeError(
                f"scorer must be callable (texts -> scores), got {type(scorer).__name__}")
        super().__init__(tokenizer, name, normalize)
        self.scorer = scorer

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Scores of ``texts`` as a float array, validated (finite, one per text)."""
        texts = list(texts)
        if not texts:
            return np.zeros(0)
        raw = self.scorer(texts)
        try:
            out = np.asarray(raw, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise ValueError(
                f"scorer of objective {self.name!r} must return numbers, got {type(raw).__name__}"
            ) from None
        if out.size != len(texts):
            raise ValueError(
                f"scorer of objective {self.name!r} returned {out.size} scores for "
                f"{len(texts)} texts; return one score per text"
            )
        bad = ~np.isfinite(out)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"scorer of objective {self.name!r} returned {out[i]} (non-finite) for "
                f"{int(bad.sum())} of {len(texts)} texts, e.g. {texts[i][:60]!r}; scores must be "
                "finite numbers"
            )
        return out

    def rewards(self, ctx: StepContext) -> Any:
        import torch

        texts, where = ctx.candidate_texts()
        r = torch.zeros(ctx.candidates.shape, dtype=torch.float32)
        if texts:
            vals = torch.as_tensor(self.score(texts), dtype=torch.float32)
            rows = torch.as_tensor([w[0] for w in where])
            cols = torch.as_tensor([w[1] for w in where])
            r[rows, cols] = vals
        return r
