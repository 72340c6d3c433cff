"""One-call aligned generation: prompts in, responses, scores and equilibrium traces out.

The function :func:`align` is re-exported as ``cage_adapters.align``. This is what
``cage align`` runs; the demo and the benchmark use it too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["AlignResult", "align", "build_prompts", "parse_objective_spec", "score_texts"]

METHODS = ("cage", "linear", "base")


@dataclass
class AlignResult:
    """One prompt's outcome.

    Attributes
    ----------
    prompt : str
    response : str
        The generated text (special tokens removed).
    scores : dict of str to float or None
        Each objective's sequence-level score of the response (None where the objective has
        none, e.g. prompted objectives).
    mean_kl : float
        Mean ``KL(pi || p0|C)`` per generated token (0 for ``method="base"``).
    fallback_steps : int
        Steps at which the equilibrium solve failed and the base distribution was used.
    n_tokens : int
    payments : list of dict
        Per step: token, its text and what each objective paid for it (``Trace.payments``).
    target_kl : float or None
        The KL per token asked for (target-KL mode), or None.
    kl_reached_share : float or None
        Target-KL mode: the share of this prompt's steps at which the target was reached (the
        others used the strongest scale tried and stayed below it); None otherwise.
    """

    prompt: str
    response: str
    scores: dict[str, float | None]
    mean_kl: float = 0.0
    fallback_steps: int = 0
    n_tokens: int = 0
    payments: list[dict[str, Any]] = field(default_factory=list)
    target_kl: float | None = None
    kl_reached_share: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "response": self.response, "scores": self.scores,
                "mean_kl": self.mean_kl, "fallback_steps": self.fallback_steps,
                "n_tokens": self.n_tokens, "payments": self.payments,
                "target_kl": self.target_kl, "kl_reached_share": self.kl_reached_share}


def parse_objective_spec(spec: str) -> tuple[str, float]:
    """Parse ``NAME=WEIGHT`` (``NAME`` alone means weight 1).

    The split is at the last ``=``, so ``prompt:Be warm = kind.=0.5`` works.

    Raises
    ------
    ValueError
        For an empty name or a weight that is not a finite number ``>= 0``.
    """
    text = str(spec).strip()
    if "=" in text:
        name, _, w = text.rpartition("=")
        name = name.strip()
        try:
            weight = float(w)
        except ValueError:
            raise ValueError(
                f"--objective {spec!r}: weight {w.strip()!r} is not a number; write NAME=WEIGHT, "
                "e.g. sentiment=0.8"
            ) from None
    else:
        name, weight = text, 1.0
    if not name:
        raise ValueError(f"--objective {spec!r}: missing objective name; write NAME=WEIGHT")
    if not math.isfinite(weight) or weight < 0:
        raise ValueError(f"--objective {spec!r}: weight must be a finite number >= 0")
    return name, weight


def build_prompts(tokenizer: Any, prompts: Sequence[str], chat: bool = True) -> Any:
    """Tokenise prompts (left-padded batch), through the chat template when there is one."""
    prompts = list(prompts)
    if not prompts:
        raise ValueError("no prompt given: pass at least one prompt text")
    for p in prompts:
        if not isinstance(p, str) or not p.strip():
            raise ValueError("prompts must be non-empty strings")
    if chat and getattr(tokenizer, "chat_template", None):
        texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                               add_generation_prompt=True) for p in prompts]
        return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    return tokenizer(prompts, return_tensors="pt", padding=True)


def score_texts(objectives: Sequence[Any], texts: Sequence[str]) -> list[dict[str, float | None]]:
    """Each objective's sequence score of each text (None where undefined)."""
    out: list[dict[str, float | None]] = [{} for _ in texts]
    for o in objectives:
        vals = o.score(list(texts))
        for i in range(len(texts)):
            out[i][o.name] = None if vals is None else float(np.asarray(vals)[i])
    return out


def _as_prompts(prompts: Any) -> list[str]:
    """``prompts`` as a list of strings: a single string is one prompt, not its letters."""
    if isinstance(prompts, str):
        return [prompts]
    if isinstance(prompts, bytes) or not isinstance(prompts, Sequence):
        raise TypeError(
            f"prompts must be a string or a list of strings, got {type(prompts).__name__}"
        )
    prompts = list(prompts)
    if not prompts:
        raise ValueError("prompts is empty: give at least one prompt")
    for j, p in enumerate(prompts):
        if not isinstance(p, str):
            raise TypeError(f"prompts[{j}] must be a string, got {type(p).__name__}")
    return prompts


def align(model: Any, tokenizer: Any, prompts: str | Sequence[str],
          objectives: Mapping[str, float] | Sequence[tuple[Any, float]], *,
          method: str = "cage", beta: float | None = None, target_kl: float | None = None,
          top_k: int | None = 20, top_p: float | None = None, max_new_tokens: int = 48,
          seed: int | None = 0, greedy: bool = False, chat: bool = True,
          reference: str | None = None, record: bool = True,
          processor_options: Mapping[str, Any] | None = None) -> list[AlignResult]:
    """Generate aligned responses to ``prompts``.

    Parameters
    ----------
    model, tokenizer
        The base causal LM and its tokenizer (e.g. from :func:`load_default_model`).
    prompts : str or sequence of str
        User messages (wrapped in the chat template when the tokenizer has one and ``chat``).
        A single string is one prompt.
    objectives : mapping name -> weight, or sequence of (Objective or name, weight)
        Names as in :func:`cage_adapters.objectives.make_objective` (prompted objectives use
        ``model``).
    method : {"cage", "linear", "base"}
        Equilibrium decoding, the linear-mixing baseline, or the plain model.
    beta, target_kl, top_k, top_p
        See :class:`CageLogitsProcessor` (neither strength given: target KL 0.3 per token).
    max_new_tokens : int
    seed : int, optional
        Seed of torch's generator before sampling.
    greedy : bool
        Greedy decoding instead of sampling.
    reference : str, optional
        Reference text of the ``similarity`` objective.

    Returns
    -------
    list of AlignResult
    """
    import torch
    from transformers import LogitsProcessorList

    from cage_adapters.objectives import Objective, make_objective
    from cage_adapters.processor import CageLogitsProcessor, LinearMixingProcessor

    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    prompts = _as_prompts(prompts)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) \
            or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    items = list(objectives.items()) if isinstance(objectives, Mapping) else list(objectives)
    if not items:
        raise ValueError("no objective given: pass at least one, e.g. {'sentiment': 1.0}")
    objs, weights = [], []
    for spec, w in items:
        o = spec if isinstance(spec, Objective) else make_objective(
            spec, tokenizer, model=model, reference=reference)
        objs.append(o)
        weights.append(w)
    inputs = build_prompts(tokenizer, prompts, chat=chat)
    dev = next(model.parameters()).device
    inputs = {k: v.to(dev) for k, v in inputs.items()}
    proc = None
    if method != "base":
        cls = CageLogitsProcessor if method == "cage" else LinearMixingProcessor
        proc = cls(objs, weights=weights, beta=beta, target_kl=target_kl, top_k=top_k,
                   top_p=top_p, record=record, **dict(processor_options or {}))
    if seed is not None:
        torch.manual_seed(int(seed))
    kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": not greedy}
    if method == "base" and not greedy:
        kwargs.update(top_k=top_k or 0, top_p=top_p if top_p is not None else 1.0)
    if proc is not None:
        kwargs["logits_processor"] = LogitsProcessorList([proc])
    with torch.no_grad():
        out = model.generate(**inputs, pad_token_id=tokenizer.pad_token_id, **kwargs)
    plen = inputs["input_ids"].shape[1]
    gen = out[:, plen:]
    responses = tokenizer.batch_decode(gen, skip_special_tokens=True)
    scores = score_texts(objs, responses)
    eos = proc.eos_ids if proc is not None else {tokenizer.eos_token_id}
    results = []
    for i, p in enumerate(prompts):
        ids = gen[i].tolist()
        n = next((j + 1 for j, t in enumerate(ids) if t in eos), len(ids))
        res = AlignResult(prompt=p, response=responses[i].strip(), scores=scores[i], n_tokens=n)
        if proc is not None and proc.trace:
            recs = [r for r in proc.trace if r.active[i]]
            res.mean_kl = float(np.mean([r.kl[i] for r in recs])) if recs else 0.0
            res.fallback_steps = int(sum(bool(r.fallback[i]) for r in recs))
            if proc.target_kl is not None:
                res.target_kl = float(proc.target_kl)
                res.kl_reached_share = (
                    float(np.mean([bool(r.kl_reached[i]) for r in recs])) if recs else None
                )
            pays = proc.trace.payments(out, prompt_len=plen, row=i)
            for entry in pays:
                entry["text"] = tokenizer.decode([entry["token"]])
            res.payments = pays
        results.append(res)
    return results
