"""Token-level objectives: a model's next-token distribution is the reward.

:class:`TokenModelObjective` (an autoregressive reward model, or a tuned/untuned log-ratio) and
:class:`PromptedObjective` (with/without an instruction under one model). Both declare the
forwards they need as *streams* ``(model, copies)``; the processor runs the streams of every
objective that shares a model in one batched forward per step
(:class:`~cage_adapters.objectives.shared.SharedForwards`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from cage_adapters.objectives.base import Objective, StepContext

__all__ = ["PromptedObjective", "TokenModelObjective"]


class TokenModelObjective(Objective):
    """Reward = a causal LM's next-token log-probability (minus a reference model's).

    Parameters
    ----------
    model : transformers causal LM
        The reward (guide) model; ``r(s, a) = log p_model(a | s)``.
    tokenizer
        The **base** tokenizer.
    reference : transformers causal LM, optional
        With a reference, ``r = log p_model - log p_reference`` (both on the guide's tokens).
    guide_tokenizer : optional
        The guide models' tokenizer when it differs from the base one. Then ``vocab_map`` is
        required, and the guide recomputes its whole context every step from the text (no KV
        cache: its token boundaries may change as text is appended).
    vocab_map : VocabMap or "auto", optional
        Map of base ids onto guide ids (``"auto"`` builds one).
    context : callable, optional
        ``context(prompt_text, response_text) -> str``: the guide's context when its tokenizer
        differs (default: the prompt's text without special tokens, then the response).
    name, normalize
        See :class:`Objective`.
    """

    def __init__(self, model: Any, tokenizer: Any, *, reference: Any = None,
                 guide_tokenizer: Any = None, vocab_map: Any = None,
                 context: Callable[[str, str], str] | None = None,
                 name: str = "token-model", normalize: str | float = "zscore") -> None:
        super().__init__(tokenizer, name, normalize)
        from cage_adapters._lm import CachedLM
        from cage_adapters.vocab import VocabMap, same_vocabulary

        self.model = model
        self.reference = reference
        self.guide_tokenizer = guide_tokenizer
        self.context = context
        mismatch = guide_tokenizer is not None and not same_vocabulary(tokenizer, guide_tokenizer)
        if mismatch:
            if vocab_map is None:
                raise ValueError(
                    f"objective {name!r}: the guide tokenizer ({len(guide_tokenizer)} tokens) "
                    f"differs from the base tokenizer ({len(tokenizer)} tokens); pass "
                    "vocab_map=VocabMap(base_tokenizer, guide_tokenizer) or vocab_map='auto'"
                )
            if vocab_map == "auto":
                vocab_map = VocabMap(tokenizer, guide_tokenizer)
        elif vocab_map == "auto":
            vocab_map = None
        self.vocab_map = vocab_map if mismatch else None
        n_out = _output_size(model)
        if not mismatch and n_out is not None and n_out < len(tokenizer):
            raise ValueError(
                f"objective {name!r}: the model predicts {n_out} tokens but the base tokenizer "
                f"has {len(tokenizer)}; give the guide's tokenizer as guide_tokenizer= with a "
                "vocab_map"
            )
        if reference is not None:
            n_ref = _output_size(reference)
            if n_out is not None and n_ref is not None and n_ref != n_out:
                raise ValueError(
                    f"objective {name!r}: model and reference predict over different "
                    f"vocabularies ({n_out} vs {n_ref}); they must share a tokenizer"
                )
        gpad = guide_tokenizer if guide_tokenizer is not None else tokenizer
        self.pad_id = gpad.pad_token_id if gpad.pad_token_id is not None else 0
        self._lms = [CachedLM(mdl, self.pad_id) for mdl in self._models()]

    def _guide_contexts(self, ctx: StepContext) -> list[list[int]]:
        prompts = ctx.prompt_texts(skip_special_tokens=True)
        responses = ctx.response_texts()
        fn = self.context or (lambda p, r: p + r)
        texts = [fn(p, r) for p, r in zip(prompts, responses, strict=True)]
        enc = self.guide_tokenizer(texts, add_special_tokens=True)["input_ids"]
        return enc

    def _models(self) -> list[Any]:
        return [self.model] + ([self.reference] if self.reference is not None else [])

    def streams(self) -> list[tuple[Any, int]]:
        """``(model, copies)`` per forward this objective needs each step (shared forwards).

        A guide with another vocabulary re-reads its text every step and is not batched with
        other objectives (it returns no streams and runs its own forwards).
        """
        if self.vocab_map is not None:
            return []
        return [(mdl, 1) for mdl in self._models()]

    def stream_contexts(self, ctx: StepContext) -> list[list[list[int]]]:
        """First step: the token contexts of each stream (``copies * B`` sequences each)."""
        seqs = [p + g for p, g in zip(ctx.prompt_ids(), ctx.generated_ids(), strict=True)]
        return [seqs for _ in self._models()]

    def rewards_from(self, ctx: StepContext, outs: Sequence[Any]) -> Any:
        """Rewards from the streams' next-token log-probabilities (one (B, V) per stream)."""
        logp = outs[0] - outs[1] if len(outs) == 2 else outs[0]
        cands = ctx.candidates.to(logp.device)
        return logp.gather(1, cands.clamp(0, logp.shape[1] - 1))

    def rewards(self, ctx: StepContext) -> Any:
        if self.vocab_map is not None:
            seqs = self._guide_contexts(ctx)
            outs = [lm.rerun(seqs) for lm in self._lms]
            logp = outs[0] - outs[1] if len(outs) == 2 else outs[0]
            return self.vocab_map.gather(logp, ctx.candidates.to(logp.device))
        return self.rewards_from(ctx, _own_forwards(self, ctx))


def _output_size(model: Any) -> int | None:
    try:
        return int(model.get_output_embeddings().weight.shape[0])
    except (AttributeError, TypeError):
        cfg = getattr(model, "config", None)
        return getattr(cfg, "vocab_size", None)


class PromptedObjective(Objective):
    """Reward = ``log p(a | instruction, s) - log p(a | s)`` under one model (training-free).

    The instructed context is the row's prompt with the instruction inserted: when the decoded
    prompt ends with the tokenizer's chat generation prompt (e.g. ``<|im_start|>assistant``),
    the instruction becomes a new paragraph at the end of the last user message; otherwise it
    is prepended as ``instruction + "\\n\\n"``. The plain context is the prompt itself. Both
    are run in one batch (2B rows) with a KV cache of their own.

    Parameters
    ----------
    instruction : str
        E.g. ``"Be warm and positive."``.
    tokenizer
        The base tokenizer; the model must share it.
    model : transformers causal LM
        Typically the base model itself (weights shared, caches separate) or a small model with
        the same tokenizer.
    name : str, optional
        Default: ``"prompt:" + instruction``.
    normalize
        See :class:`Objective`.
    reuse_base : bool, default False
        Take ``log p(a | s)`` from the processor's input (the base model's distribution)
        instead of running ``model`` on the plain context (B rows per step instead of 2B; on
        a CPU at small batches the forward is overhead-bound, so the saving is small). Valid
        only when
        ``model`` *is* the base model and no logits processor placed before this one changes
        the scores (e.g. a repetition penalty).
    """

    def __init__(self, instruction: str, tokenizer: Any, model: Any, *, name: str | None = None,
                 normalize: str | float = "zscore", reuse_base: bool = False) -> None:
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError("instruction must be a non-empty string, e.g. 'Be warm and positive.'")
        super().__init__(tokenizer, name or f"prompt:{instruction}", normalize)
        if model is None:
            raise TypeError(
                f"objective {self.name!r} needs a model (e.g. the base model) to read its "
                "next-token distribution with and without the instruction"
            )
        n_out = _output_size(model)
        if n_out is not None and n_out < len(tokenizer):
            raise ValueError(
                f"objective {self.name!r}: the model predicts {n_out} tokens but the tokenizer "
                f"has {len(tokenizer)}; a prompted objective needs the base tokenizer's model"
            )
        self.instruction = instruction.strip()
        self.model = model
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._marker = _generation_marker(tokenizer)
        self.reuse_base = bool(reuse_base)

    def instructed(self, prompt_text: str) -> str:
        """The prompt text with the instruction inserted (see the class doc)."""
        marker = self._marker
        if marker and prompt_text.endswith(marker):
            head = prompt_text[: len(prompt_text) - len(marker)]
            return f"{head}\n\n{self.instruction}{marker}"
        return f"{self.instruction}\n\n{prompt_text}"

    def streams(self) -> list[tuple[Any, int]]:
        """One stream on ``model``: the instructed context, then the plain one unless
        ``reuse_base`` (``2B`` rows, instructed first)."""
        return [(self.model, 1 if self.reuse_base else 2)]

    def stream_contexts(self, ctx: StepContext) -> list[list[list[int]]]:
        """First step: the instructed contexts (then the plain ones unless ``reuse_base``)."""
        texts = [self.instructed(t) for t in ctx.prompt_texts(skip_special_tokens=False)]
        with_ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        gen = ctx.generated_ids()
        seqs = [w + g for w, g in zip(with_ids, gen, strict=True)]
        if not self.reuse_base:
            seqs += [p + g for p, g in zip(ctx.prompt_ids(), gen, strict=True)]
        return [seqs]

    def rewards_from(self, ctx: StepContext, outs: Sequence[Any]) -> Any:
        """Rewards from the stream's log-probabilities (``copies * B`` rows)."""
        logp = outs[0]
        B = ctx.batch_size
        if self.reuse_base:
            if ctx.base_logprobs is None:
                raise ValueError(f"objective {self.name!r}: reuse_base=True needs the base "
                                 "distribution in the step context")
            base = ctx.base_logprobs.to(logp.device)
            width = min(base.shape[1], logp.shape[1])
            ratio = logp[:, :width] - base[:, :width]
        else:
            ratio = logp[:B] - logp[B:]
        cands = ctx.candidates.to(ratio.device)
        return ratio.gather(1, cands.clamp(0, ratio.shape[1] - 1))

    def rewards(self, ctx: StepContext) -> Any:
        return self.rewards_from(ctx, _own_forwards(self, ctx))


def _own_forwards(objective: Any, ctx: StepContext) -> list[Any]:
    """The objective's stream outputs: shared ones from the context, else its own forwards."""
    if ctx.shared is not None and id(objective) in ctx.shared:
        return ctx.shared[id(objective)]
    from cage_adapters.objectives.shared import SharedForwards

    own = objective.__dict__.get("_own_shared")
    if own is None:
        own = SharedForwards([objective])
        objective._own_shared = own
    return own.run(ctx)[id(objective)]


def _generation_marker(tokenizer: Any) -> str | None:
    """The text a chat template puts after the last user message when asking for a reply."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    probe = "\u2063cage-probe\u2063"
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": probe}], tokenize=False, add_generation_prompt=True)
    except Exception:
        return None
    if not isinstance(text, str) or probe not in text:
        return None
    return text[text.rindex(probe) + len(probe):] or None


