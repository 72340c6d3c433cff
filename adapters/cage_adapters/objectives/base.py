"""The objective interface: :class:`Objective`, the step context and reward normalisation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Objective", "StepContext", "UnknownObjectiveError", "normalize_rewards"]

_NORMALIZATIONS = ("zscore", "center", "none")


class UnknownObjectiveError(ValueError):
    """An objective name that is not registered; the message lists the known names."""


def _check_normalize(normalize: str | float) -> str | float:
    if isinstance(normalize, str):
        if normalize not in _NORMALIZATIONS:
            raise ValueError(
                f"normalize={normalize!r} is not supported; use one of "
                f"{', '.join(_NORMALIZATIONS)} or a positive float scale"
            )
        return normalize
    try:
        c = float(normalize)
    except (TypeError, ValueError):
        raise TypeError(
            f"normalize must be a string or a positive float, got {type(normalize).__name__}"
        ) from None
    if not (math.isfinite(c) and c > 0):
        raise ValueError(f"normalize scale must be a positive finite float, got {normalize!r}")
    return c


def normalize_rewards(r: Any, mask: Any, how: str | float = "zscore") -> Any:
    """Normalise rewards per row over the valid candidates (see the module doc).

    Parameters
    ----------
    r : torch.Tensor, shape (B, k) or (B, m, k)
        Raw rewards (one row per batch row, or ``m`` objectives' rows stacked: each of the
        ``B * m`` rows is normalised on its own).
    mask : torch.BoolTensor, shape (B, k)
        True for real candidates (other entries are returned as 0).
    how : {"zscore", "center", "none"} or float

    Returns
    -------
    torch.Tensor, the shape of ``r``
    """
    import torch

    if r.dim() == 3 and mask.dim() == 2:
        mask = mask.unsqueeze(1)
    r = torch.where(mask, r, torch.zeros_like(r))
    if how == "none":
        return r
    if not isinstance(how, str):
        return r * float(how)
    n = mask.sum(dim=-1, keepdim=True).clamp_min(1)
    mean = r.sum(dim=-1, keepdim=True) / n
    d = torch.where(mask, r - mean, torch.zeros_like(r))
    if how == "center":
        return d
    std = torch.sqrt((d * d).sum(dim=-1, keepdim=True) / n)
    z = d / std.clamp_min(1e-6)
    return torch.where(std > 1e-6, z, torch.zeros_like(z))


@dataclass
class StepContext:
    """What an objective sees at one decoding step (built by the processor).

    Attributes
    ----------
    input_ids : torch.LongTensor, shape (B, L)
        Prompt (left-padded) plus the tokens generated so far.
    prompt_len : int
        Width of the prompt part of ``input_ids``.
    candidates : torch.LongTensor, shape (B, k)
        Candidate token ids (base vocabulary).
    cand_mask : torch.BoolTensor, shape (B, k)
        True for real candidates (top-p may keep fewer than k).
    active : torch.BoolTensor, shape (B,)
        Rows still generating (finished rows need no rewards).
    parent : torch.LongTensor or None
        Row of the previous step each row continues (beam search reorders); None on the first
        step of a generation.
    first : bool
        First step of a generation.
    tokenizer
        The base tokenizer.
    pad_id : int
        Padding id of the base tokenizer.
    eos_ids : frozenset of int
        Token ids that end a response.
    base_logprobs : torch.Tensor, shape (B, V)
        The base model's next-token log-probabilities (the processor's input).
    shared : dict or None
        Next-token log-probabilities computed for the model-backed objectives in one batched
        forward per model (:class:`~cage_adapters.objectives.shared.SharedForwards`), keyed by
        ``id(objective)``; None when each objective runs its own forward.
    """

    input_ids: Any
    prompt_len: int
    candidates: Any
    cand_mask: Any
    active: Any
    parent: Any
    first: bool
    tokenizer: Any
    pad_id: int
    eos_ids: frozenset[int]
    base_logprobs: Any = None
    shared: dict[int, list[Any]] | None = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def batch_size(self) -> int:
        return int(self.input_ids.shape[0])

    def prompt_ids(self) -> list[list[int]]:
        """Each row's prompt ids without the left padding (from the attention layout)."""
        if "prompt_ids" not in self._cache:
            out = []
            for row in self.input_ids[:, : self.prompt_len].tolist():
                i = 0
                while i < len(row) - 1 and row[i] == self.pad_id:
                    i += 1
                out.append(row[i:])
            self._cache["prompt_ids"] = out
        return self._cache["prompt_ids"]

    def generated_ids(self) -> list[list[int]]:
        """Each row's generated ids so far."""
        if "generated_ids" not in self._cache:
            self._cache["generated_ids"] = self.input_ids[:, self.prompt_len:].tolist()
        return self._cache["generated_ids"]

    def prompt_texts(self, skip_special_tokens: bool = False) -> list[str]:
        key = f"prompt_texts{skip_special_tokens}"
        if key not in self._cache:
            self._cache[key] = self.tokenizer.batch_decode(
                self.prompt_ids(), skip_special_tokens=skip_special_tokens)
        return self._cache[key]

    def response_texts(self) -> list[str]:
        """Each row's response so far (special tokens skipped)."""
        if "response_texts" not in self._cache:
            self._cache["response_texts"] = self.tokenizer.batch_decode(
                self.generated_ids(), skip_special_tokens=True)
        return self._cache["response_texts"]

    def candidate_texts(self) -> tuple[list[str], list[tuple[int, int]]]:
        """Response so far + candidate, for each active row and real candidate.

        Returns
        -------
        texts : list of str
        where : list of (row, column)
            Position of each text in the (B, k) candidate grid.
        """
        if "candidate_texts" not in self._cache:
            gen = self.generated_ids()
            cands = self.candidates.tolist()
            mask = self.cand_mask.tolist()
            active = self.active.tolist()
            seqs, where = [], []
            for r in range(self.batch_size):
                if not active[r]:
                    continue
                for c, (tid, ok) in enumerate(zip(cands[r], mask[r], strict=True)):
                    if ok:
                        seqs.append([*gen[r], tid])
                        where.append((r, c))
            texts = self.tokenizer.batch_decode(seqs, skip_special_tokens=True)
            self._cache["candidate_texts"] = (texts, where)
        return self._cache["candidate_texts"]

    def last_tokens(self) -> Any:
        """The token each row appended since the previous step, shape (B,)."""
        return self.input_ids[:, -1]


class Objective:
    """Base class of a principal's reward source.

    Subclasses implement :meth:`rewards`; :meth:`begin` resets per-generation state;
    :meth:`score` scores finished texts when the objective has a sequence-level meaning.

    Parameters
    ----------
    tokenizer
        The base model's tokenizer (the vocabulary the candidates live in).
    name : str
        Shown in traces, tables and reports.
    normalize : {"zscore", "center", "none"} or float, default "zscore"
        Per-row normalisation of the rewards (module doc).
    """

    def __init__(self, tokenizer: Any, name: str, normalize: str | float = "zscore") -> None:
        if tokenizer is None:
            raise TypeError(f"objective {name!r} needs the base tokenizer (got None)")
        self.tokenizer = tokenizer
        self.name = str(name)
        self.normalize = _check_normalize(normalize)

    def begin(self, ctx: StepContext) -> None:
        """Called on the first step of every generation (reset caches here)."""

    def rewards(self, ctx: StepContext) -> Any:
        """Raw rewards of the candidates, a float tensor of shape (B, k)."""
        raise NotImplementedError

    def score(self, texts: Sequence[str]) -> np.ndarray | None:
        """Sequence-level score of finished texts (higher is better), or None if undefined."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, normalize={self.normalize!r})"


