"""Vocabulary maps: read a guide model's next-token distribution on the base model's vocabulary.

A guide (reward) model with a different tokenizer predicts over its own vocabulary. To score the
base model's candidate tokens with it, every base token is mapped to a guide token by comparing
the **bytes** the two tokens stand for (byte-level normalisation):

- byte-level BPE tokens (GPT-2, Llama 3, SmolLM2: ``"Ġworld"``) are mapped back through the
  GPT-2 byte-to-unicode table, so partial UTF-8 sequences compare exactly;
- SentencePiece tokens (Gemma, Llama 2: ``"▁world"``, ``"<0x0A>"``) turn ``▁`` into a space and
  ``<0xNN>`` byte-fallback tokens into that byte;
- other tokenizers use their decoder on the single token.

A base token whose bytes are one guide token is mapped **exactly**. Otherwise (the fallback) it
is mapped to the guide token that is the **longest byte prefix** of it: the guide's probability
of that first piece is an upper bound on the probability of the whole string, and is what the
guide says about starting that way. If no guide token is a prefix (a byte the guide cannot
represent), the candidate gets the **row minimum** of the mapped rewards. Special tokens map by
role: base EOS to guide EOS (extend with ``special``); other special tokens fall back to the row
minimum. :attr:`VocabMap.exact` tells which tokens were mapped exactly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["VocabMap", "same_vocabulary", "token_bytes"]


@lru_cache(maxsize=1)
def _unicode_to_byte() -> dict[str, int]:
    """Inverse of GPT-2's ``bytes_to_unicode`` table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


def _decoder_kind(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return "decode"
    try:
        spec = json.dumps(json.loads(backend.to_str()).get("decoder"))
    except (ValueError, AttributeError):
        return "decode"
    if "ByteLevel" in spec:
        return "bytelevel"
    if "ByteFallback" in spec or "Metaspace" in spec or "\u2581" in spec:
        return "sentencepiece"
    return "decode"


def token_bytes(tokenizer: Any) -> list[bytes | None]:
    """The bytes each token id stands for (``None`` for special tokens).

    Parameters
    ----------
    tokenizer : transformers tokenizer
        A fast (``tokenizers``-backed) or slow tokenizer.

    Returns
    -------
    list of bytes or None
        One entry per id in ``range(len(tokenizer))``.
    """
    n = len(tokenizer)
    tokens = tokenizer.convert_ids_to_tokens(list(range(n)))
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    for tid, added in getattr(tokenizer, "added_tokens_decoder", {}).items():
        if getattr(added, "special", False):
            special.add(int(tid))
    kind = _decoder_kind(tokenizer)
    table = _unicode_to_byte()
    out: list[bytes | None] = []
    for tid, tok in enumerate(tokens):
        if tid in special or tok is None:
            out.append(None)
            continue
        if kind == "bytelevel":
            try:
                out.append(bytes(table[c] for c in tok))
            except KeyError:  # an added (non byte-level) token
                out.append(tok.encode("utf-8"))
        elif kind == "sentencepiece":
            if len(tok) == 6 and tok.startswith("<0x") and tok.endswith(">"):
                try:
                    out.append(bytes([int(tok[3:5], 16)]))
                    continue
                except ValueError:
                    pass
            out.append(tok.replace("\u2581", " ").encode("utf-8"))
        else:
            out.append(tokenizer.decode([tid]).encode("utf-8"))
    return out


def same_vocabulary(a: Any, b: Any) -> bool:
    """Whether two tokenizers assign the same ids to the same token strings."""
    if a is b:
        return True
    if len(a) != len(b):
        return False
    return a.get_vocab() == b.get_vocab()


class VocabMap:
    """Map of every base token id onto a guide tokenizer's vocabulary (see the module doc).

    Parameters
    ----------
    base_tokenizer, guide_tokenizer : transformers tokenizers
    special : mapping of int to int, optional
        Extra base-id to guide-id pairs for special tokens (e.g. end-of-turn markers). The base
        EOS is always mapped to the guide EOS when both exist.

    Attributes
    ----------
    index : ndarray of int64, shape (len(base_tokenizer),)
        Guide id for each base id; ``-1`` where no guide token applies (row-minimum fallback).
    exact : ndarray of bool, shape (len(base_tokenizer),)
        True where the base token is exactly one guide token.
    """

    def __init__(self, base_tokenizer: Any, guide_tokenizer: Any,
                 special: Mapping[int, int] | None = None) -> None:
        self.base_tokenizer = base_tokenizer
        self.guide_tokenizer = guide_tokenizer
        base = token_bytes(base_tokenizer)
        guide = token_bytes(guide_tokenizer)
        lookup: dict[bytes, int] = {}
        for gid, b in enumerate(guide):
            if b and b not in lookup:
                lookup[b] = gid
        index = np.full(len(base), -1, dtype=np.int64)
        exact = np.zeros(len(base), dtype=bool)
        for tid, b in enumerate(base):
            if not b:
                continue
            gid = lookup.get(b)
            if gid is not None:
                index[tid] = gid
                exact[tid] = True
                continue
            for cut in range(len(b) - 1, 0, -1):
                gid = lookup.get(b[:cut])
                if gid is not None:
                    index[tid] = gid
                    break
        pairs = dict(special or {})
        be, ge = base_tokenizer.eos_token_id, guide_tokenizer.eos_token_id
        if be is not None and ge is not None:
            pairs.setdefault(int(be), int(ge))
        for bid, gid in pairs.items():
            if not 0 <= bid < len(base) or not 0 <= gid < len(guide):
                raise ValueError(
                    f"special pair {bid}->{gid} is out of range: base ids are < {len(base)}, "
                    f"guide ids < {len(guide)}"
                )
            index[bid] = gid
            exact[bid] = True
        self.index = index
        self.exact = exact
        self._torch_index: dict[Any, Any] = {}

    def __len__(self) -> int:
        return int(self.index.size)

    @property
    def coverage(self) -> float:
        """Share of (non-special) base tokens mapped exactly."""
        return float(self.exact.mean())

    def gather(self, guide_scores: Any, candidates: Any) -> Any:
        """Read guide scores at the guide tokens of base candidates.

        Parameters
        ----------
        guide_scores : torch.Tensor, shape (B, V_guide)
            E.g. the guide's next-token log-probabilities.
        candidates : torch.LongTensor, shape (B, k)
            Base token ids (any id ``>= len(self)`` counts as unmapped).

        Returns
        -------
        torch.Tensor, shape (B, k)
            Mapped scores; unmapped candidates get their row's minimum over mapped ones.
        """
        import torch

        dev = guide_scores.device
        idx = self._torch_index.get(dev)
        if idx is None:
            idx = torch.as_tensor(self.index, device=dev)
            self._torch_index[dev] = idx
        cand = candidates.clamp(0, len(self) - 1)
        gids = idx[cand]
        gids = torch.where(candidates < len(self), gids, torch.full_like(gids, -1))
        ok = gids >= 0
        vals = guide_scores.gather(1, gids.clamp_min(0))
        big = torch.finfo(vals.dtype).max
        row_min = torch.where(ok, vals, torch.full_like(vals, big)).amin(dim=1, keepdim=True)
        row_min = torch.where(torch.isfinite(row_min) & (row_min < big), row_min,
                              torch.zeros_like(row_min))
        return torch.where(ok, vals, row_min.expand_as(vals))
