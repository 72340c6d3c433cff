"""Does steering an objective hard produce degenerate text? (fluency and non-word rate)

For each objective, CAGE decodes with that objective alone at a high strength (default target
KL 1 nat per token, where text quality starts to degrade for every method) and the texts are
compared with plain sampling on the same prompts and seeds: mean log-probability per token
under the base model (fluency) and the share of alphabetic words that are not English words.
A gamed objective shows up as a jump in the non-word rate (glued pseudo-words, stray initials)
or a collapse of fluency.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cage_adapters.evaluate.judges import nonword_rate
from cage_adapters.evaluate.metrics import fluency

__all__ = ["degeneracy_check"]


def degeneracy_check(model: Any, tokenizer: Any, objectives: Sequence[str],
                     prompts: Sequence[str], *, target_kl: float = 1.0, top_k: int = 20,
                     max_new_tokens: int = 48, seed: int = 0, reference: str | None = None
                     ) -> dict[str, dict[str, float]]:
    """Fluency and non-word rate of texts steered hard by each objective, and of plain texts.

    Returns
    -------
    dict
        ``{"plain": {...}, objective: {...}}`` with ``fluency`` (nats/token), ``nonword``,
        ``finished`` (share of texts that ended the turn), ``tokens``, ``mean_kl`` and one
        example ``text``.
    """
    import torch
    from transformers import LogitsProcessorList

    from cage_adapters.decode import build_prompts
    from cage_adapters.objectives import make_objective
    from cage_adapters.processor import CageLogitsProcessor

    dev = next(model.parameters()).device
    inputs = {k: v.to(dev) for k, v in build_prompts(tokenizer, list(prompts)).items()}
    plen = inputs["input_ids"].shape[1]
    out: dict[str, dict[str, float]] = {}
    for name in ["plain", *objectives]:
        kw: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": True,
                              "temperature": 1.0, "top_p": 1.0,
                              "pad_token_id": tokenizer.pad_token_id}
        proc = None
        if name == "plain":
            kw["top_k"] = top_k
        else:
            o = make_objective(name, tokenizer, model=model, reference=reference)
            proc = CageLogitsProcessor([o], [1.0], target_kl=target_kl, top_k=top_k)
            kw.update(top_k=0, logits_processor=LogitsProcessorList([proc]))
        torch.manual_seed(seed)
        with torch.no_grad():
            seqs = model.generate(**inputs, **kw)
        eos = set(proc.eos_ids) if proc is not None else {tokenizer.eos_token_id}
        if proc is None:
            vocab = tokenizer.get_vocab()
            eos |= {vocab[m] for m in ("<|im_end|>", "<|endoftext|>") if m in vocab}
        texts = tokenizer.batch_decode(seqs[:, plen:], skip_special_tokens=True)
        gen = seqs[:, plen:].tolist()
        fin = [any(t in eos for t in row) for row in gen]
        toks = [next((j + 1 for j, t in enumerate(row) if t in eos), len(row)) for row in gen]
        kl = proc.trace.summary()["mean_kl"] if proc is not None else 0.0
        out[name] = {"fluency": float(np.nanmean(fluency(model, seqs, plen,
                                                         tokenizer.pad_token_id,
                                                         frozenset(eos)))),
                     "nonword": float(nonword_rate(texts).mean()),
                     "finished": float(np.mean(fin)), "tokens": float(np.mean(toks)),
                     "mean_kl": float(kl), "text": texts[0].strip()}
    return out
