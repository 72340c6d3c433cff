"""Baselines that a user would pick instead of the equilibrium, on the same objective sources.

Every baseline uses the objects :class:`~cage_adapters.CageLogitsProcessor` uses: the same
:class:`~cage_adapters.objectives.Objective` instances (so the same rewards and normalisation)
and the same candidates (the base model's top-k).

:class:`LinearMixingProcessor` (in :mod:`cage_adapters.processor`)
    ``pi ∝ p0 exp(sum_i w_i r_i / beta)`` at a fixed ``beta`` or a target KL.
:class:`ArgsProcessor`
    Reward-guided search in the ARGS form (Khanov et al., 2024): each top-k candidate is
    re-scored ``log p0(a) + w * sum_i w_i r_i(a)``; greedy takes the best candidate, sampled
    draws from the softmax of the scores. ``w`` is ARGS' guidance weight (fixed, not a KL).
:func:`best_of_n`
    N plain samples per prompt; the one with the best weighted sum of the objectives'
    *sequence* scores (each standardised over the pool) is kept.
Unguided base
    Sampling from the base model's top-k (``generate(top_k=k)``), the reference of every
    comparison.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from cage_adapters.objectives import Objective
from cage_adapters.processor import LinearMixingProcessor

__all__ = ["ArgsProcessor", "best_of_n", "best_of_n_kl", "sequence_scores"]


class ArgsProcessor(LinearMixingProcessor):
    """ARGS: top-k candidates re-scored by ``log p0 + w * sum_i w_i r_i``.

    Parameters
    ----------
    objectives, weights, top_k, top_p, eos_token_id, record
        As in :class:`~cage_adapters.CageLogitsProcessor`.
    w : float, default 1.5
        ARGS' guidance weight on the (normalised) weighted reward (the ARGS paper's 1.5).
    greedy : bool, default True
        ARGS-greedy: only the best re-scored candidate keeps a finite score (so any decoding
        mode takes it). ``False``: ARGS-stochastic, the softmax of the scores (identical to
        linear mixing at ``beta = 1 / w``).

    Notes
    -----
    The trace records, per step, ``KL(pi || p0|C)`` of the policy actually used: for greedy,
    ``-log p0|C(chosen)``.
    """

    kind = "args"

    def __init__(self, objectives: Sequence[Objective], weights: Any = None, *, w: float = 1.5,
                 greedy: bool = True, top_k: int | None = 20, top_p: float | None = None,
                 eos_token_id: int | Sequence[int] | None = None, record: bool = True) -> None:
        if not (isinstance(w, (int, float)) and math.isfinite(w) and w > 0):
            raise ValueError(f"w must be a positive finite number, got {w!r}")
        super().__init__(objectives, weights, beta=1.0 / float(w), top_k=top_k, top_p=top_p,
                         eos_token_id=eos_token_id, record=record)
        self.w = float(w)
        self.greedy = bool(greedy)

    def _policy(self, logq: torch.Tensor, u: torch.Tensor, mask: torch.Tensor,
                beta: torch.Tensor, target_mode: bool = False) -> dict[str, torch.Tensor]:
        res = super()._policy(logq, u, mask, beta, target_mode)
        if not self.greedy:
            return res
        lp = torch.where(mask, res["log_policy"], torch.full_like(logq, -math.inf))
        best = lp.argmax(dim=1, keepdim=True)
        one = torch.full_like(logq, -math.inf).scatter(1, best, 0.0)
        res["log_policy"] = torch.where(mask, one, torch.zeros_like(one))
        res["kl"] = -logq.gather(1, best).squeeze(1)
        return res


def sequence_scores(objectives: Sequence[Objective], texts: Sequence[str]) -> np.ndarray:
    """The objectives' sequence scores of ``texts``, shape (len(texts), m).

    Raises
    ------
    ValueError
        If an objective has no sequence score (token-level models, prompted objectives).
    """
    cols = []
    for o in objectives:
        s = o.score(list(texts))
        if s is None:
            raise ValueError(
                f"objective {o.name!r} has no sequence score, so best-of-N cannot rank texts "
                "by it; use sequence-level objectives (e.g. sentiment, brevity) for best-of-N"
            )
        cols.append(np.asarray(s, dtype=np.float64))
    return np.stack(cols, axis=1) if cols else np.zeros((len(texts), 0))


def best_of_n(scores: np.ndarray, weights: Any, n: int) -> np.ndarray:
    """Index of the best of the first ``n`` candidates of each group.

    Parameters
    ----------
    scores : array, shape (G, N, m)
        Sequence scores of N candidates for each of G groups (prompt x seed).
    weights : array_like, shape (m,)
    n : int
        Use candidates ``0..n-1`` (so one pool serves every N up to its size).

    Returns
    -------
    numpy.ndarray of int, shape (G,)
        The chosen candidate of each group. Each objective's scores are standardised over the
        whole pool (all groups, the first ``n`` candidates) before weighting, so weights are
        comparable across objectives as the token-level z-scores make them for the decoders.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 3:
        raise ValueError(f"scores must have shape (groups, N, m), got {s.shape}")
    if not 1 <= n <= s.shape[1]:
        raise ValueError(f"n must be in 1..{s.shape[1]}, got {n}")
    s = s[:, :n]
    flat = s.reshape(-1, s.shape[2])
    sd = flat.std(axis=0)
    z = (s - flat.mean(axis=0)) / np.where(sd > 1e-12, sd, 1.0)
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    return np.argmax(z @ w, axis=1)


def best_of_n_kl(n: int) -> float:
    """KL of best-of-n from the base, per sequence: ``log n - (n - 1) / n`` (the usual bound)."""
    return float(math.log(n) - (n - 1) / n)
