"""A causal LM run alongside decoding: batched, left-padded, with its own KV cache."""

from __future__ import annotations

from collections.abc import Sequence

import torch


class CachedLM:
    """Next-token log-probabilities of a causal LM over a batch that grows one token a step.

    ``start(seqs)`` runs the contexts (left-padded); ``step(tokens, parent)`` appends one token
    per row, after reordering rows by ``parent`` (beam search reorders beams between steps).
    ``rerun(seqs)`` recomputes without a cache (used when the token ids of a context are not
    known incrementally, e.g. a guide with a different tokenizer).
    """

    def __init__(self, model: torch.nn.Module, pad_id: int = 0) -> None:
        self.model = model
        self.pad_id = int(pad_id)
        self.cache = None
        self.mask: torch.Tensor | None = None
        self.positions: torch.Tensor | None = None
        import inspect

        params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                 cache) -> tuple[torch.Tensor, object]:
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                         use_cache=True, **{self._cache_kw: cache})
        logits = out.logits[:, -1, :].float()
        new = getattr(out, "cache", None)
        if new is None:
            new = getattr(out, "past_key_values", None)
        return torch.log_softmax(logits, dim=-1), new if new is not None else cache

    def _pad(self, seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(1, max(len(s) for s in seqs))
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):
            if len(s):
                ids[r, width - len(s):] = torch.as_tensor(list(s), dtype=torch.long)
                mask[r, width - len(s):] = 1
        return ids.to(self.device), mask.to(self.device)

    @torch.no_grad()
    def start(self, seqs: Sequence[Sequence[int]]) -> torch.Tensor:
        """Run the contexts; returns (B, V) next-token log-probabilities."""
        from transformers import DynamicCache

        ids, mask = self._pad(seqs)
        positions = (mask.cumsum(1) - 1).clamp_min(0)
        cache = DynamicCache()
        logp, cache = self._forward(ids, mask, positions, cache)
        self.cache, self.mask = cache, mask
        self.positions = positions[:, -1]
        return logp

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, parent: torch.Tensor | None = None) -> torch.Tensor:
        """Append ``tokens`` (B,) after reordering rows by ``parent``; returns (B, V)."""
        if self.cache is None or self.mask is None or self.positions is None:
            raise RuntimeError("CachedLM.step called before start")
        dev = self.device
        if parent is not None:
            parent = parent.to(dev)
            self.cache.reorder_cache(parent)
            self.mask = self.mask.index_select(0, parent)
            self.positions = self.positions.index_select(0, parent)
        ones = torch.ones((self.mask.shape[0], 1), dtype=self.mask.dtype, device=dev)
        self.mask = torch.cat([self.mask, ones], dim=1)
        self.positions = self.positions + 1
        logp, self.cache = self._forward(tokens.to(dev).view(-1, 1), self.mask,
                                         self.positions.view(-1, 1), self.cache)
        return logp

    @torch.no_grad()
    def rerun(self, seqs: Sequence[Sequence[int]]) -> torch.Tensor:
        """Full forward without a cache; returns (B, V)."""
        ids, mask = self._pad(seqs)
        positions = (mask.cumsum(1) - 1).clamp_min(0)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                         use_cache=False)
        return torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)

    def reset(self) -> None:
        self.cache = self.mask = self.positions = None
