"""Metrics of an evaluation: fronts, hypervolume, bootstrap intervals, controllability, fluency.

Conventions
-----------
Every objective axis is "higher is better". A method's *points* are, per weight of the grid, the
mean judge score of each objective over the texts of that weight (prompts x seeds).

Normalisation and reference point of the hypervolume
    Each axis is normalised by the unguided base model (``plain``) on the same prompts and
    seeds: ``z = (score - mean_plain) / sd_plain``, where ``sd_plain`` is the standard
    deviation of the plain texts' scores (per text, not of the mean). So 1 unit is one
    standard deviation of what the base model writes, and the base model's mean sits at 0.
    The reference point is ``(-1, ..., -1)``: one standard deviation worse than the base on
    every axis. The hypervolume is the area (volume) dominated by the front and dominating the
    reference point; points worse than the reference on some axis add nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["bootstrap_diff", "fluency", "hypervolume", "pareto_front", "spearman"]


def pareto_front(points: Any) -> np.ndarray:
    """The non-dominated points of ``points`` (n, d), maximising every axis, sorted by axis 0."""
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"points must be a 2-d array (n, d), got shape {p.shape}")
    keep = []
    for i in range(len(p)):
        dominated = np.any(np.all(p >= p[i], axis=1) & np.any(p > p[i], axis=1))
        if not dominated:
            keep.append(i)
    front = np.unique(p[keep], axis=0)
    return front[np.argsort(front[:, 0])] if len(front) else front


def hypervolume(points: Any, reference: Any) -> float:
    """Volume dominated by ``points`` (n, d) and dominating ``reference`` (d,), maximising.

    Exact for any ``d`` by inclusion over a grid of the points' coordinates (fine for the
    handful of points of a weight grid); 2-d uses the sweep.
    """
    p = np.asarray(points, dtype=np.float64).reshape(-1, len(np.atleast_1d(reference)))
    ref = np.asarray(reference, dtype=np.float64)
    p = p[np.all(p > ref, axis=1)]
    if not len(p):
        return 0.0
    if p.shape[1] == 1:
        return float(p[:, 0].max() - ref[0])
    if p.shape[1] == 2:
        f = pareto_front(p)
        f = f[np.argsort(-f[:, 0])]  # decreasing x, increasing y along the front
        vol, y_prev = 0.0, ref[1]
        for x, y in f:
            vol += (x - ref[0]) * (y - y_prev)
            y_prev = y
        return float(vol)
    # d >= 3: cells of the coordinate grid, each counted if some point dominates its corner
    axes = [np.unique(np.concatenate([[ref[j]], p[:, j]])) for j in range(p.shape[1])]
    vol = 0.0
    for idx in np.ndindex(*[len(a) - 1 for a in axes]):
        hi = np.array([axes[j][i + 1] for j, i in enumerate(idx)])
        lo = np.array([axes[j][i] for j, i in enumerate(idx)])
        if np.any(np.all(p >= hi, axis=1)):
            vol += float(np.prod(hi - lo))
    return vol


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either is constant."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def bootstrap_diff(stat: Callable[[np.ndarray], float], groups: Sequence[Any], *,
                   n_boot: int = 1000, seed: int = 0, level: float = 0.95
                   ) -> dict[str, float]:
    """Percentile bootstrap over groups (prompts) of a statistic of resampled groups.

    Parameters
    ----------
    stat : callable
        ``stat(indices) -> float``: the statistic (e.g. a hypervolume difference between two
        methods) computed from the groups at ``indices`` (with repeats).
    groups : sequence
        The resampling units (e.g. prompt indices); only its length matters.
    n_boot : int
    seed : int
    level : float

    Returns
    -------
    dict
        ``estimate`` (on all groups), ``lo``, ``hi`` (the percentile interval), ``n_boot``.
    """
    n = len(groups)
    if n == 0:
        raise ValueError("bootstrap_diff needs at least one group")
    rng = np.random.default_rng(seed)
    est = float(stat(np.arange(n)))
    vals = np.array([stat(rng.integers(0, n, n)) for _ in range(n_boot)], dtype=np.float64)
    vals = vals[np.isfinite(vals)]
    a = (1 - level) / 2
    lo, hi = (np.quantile(vals, [a, 1 - a]) if vals.size else (np.nan, np.nan))
    return {"estimate": est, "lo": float(lo), "hi": float(hi), "n_boot": int(n_boot)}


def fluency(model: Any, sequences: Any, prompt_len: int, pad_id: int,
            eos_ids: frozenset[int] | set[int] = frozenset()) -> np.ndarray:
    """Mean log-probability per generated token under ``model`` (the base), per row.

    Parameters
    ----------
    model : causal LM
    sequences : torch.LongTensor, shape (B, L)
        Left-padded prompts followed by the generated tokens (what ``generate`` returned).
    prompt_len : int
        Width of the prompt part.
    pad_id : int
        Padding id (also the fill after a row finished).
    eos_ids : set of int
        End tokens: the first one counts, what follows it does not.

    Returns
    -------
    numpy.ndarray, shape (B,)
        Nats per token (NaN for a row that generated nothing).
    """
    import torch

    seq = sequences
    B = seq.shape[0]
    attn = torch.ones_like(seq)
    attn[:, :prompt_len] = (seq[:, :prompt_len] != pad_id).long()
    gen = seq[:, prompt_len:]
    live = torch.ones_like(gen, dtype=torch.bool)
    for r in range(B):
        row = gen[r].tolist()
        for j, t in enumerate(row):
            if t in eos_ids:
                live[r, j + 1:] = False
                break
    attn[:, prompt_len:] = live.long()
    pos = (attn.cumsum(1) - 1).clamp_min(0)
    with torch.no_grad():
        logits = model(input_ids=seq, attention_mask=attn, position_ids=pos).logits
    logp = torch.log_softmax(logits[:, prompt_len - 1:-1].float(), dim=-1)
    tok_lp = logp.gather(2, gen.unsqueeze(2)).squeeze(2)
    tok_lp = torch.where(live, tok_lp, torch.zeros_like(tok_lp))
    n = live.sum(1)
    out = (tok_lp.sum(1) / n.clamp_min(1)).cpu().numpy().astype(np.float64)
    out[(n == 0).cpu().numpy()] = np.nan
    return out
