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

Layout
------
``base`` (the interface and normalisation), ``token`` (model-backed objectives), ``shared``
(one batched forward per model and step), ``sequence`` (text scorers), one module per built-in
objective, and ``registry`` (the names, as data). A new built-in is one module plus one
:class:`~cage_adapters.objectives.registry.Entry`.

The sequence score of a finished text (:meth:`Objective.score`) is what ``cage align`` reports;
it is defined for the sequence scorers and :class:`Brevity`, not for token-level models.
"""


from __future__ import annotations

from cage_adapters.objectives.base import (
    Objective,
    StepContext,
    UnknownObjectiveError,
    normalize_rewards,
)
from cage_adapters.objectives.brevity import Brevity
from cage_adapters.objectives.non_offensive import NonOffensive
from cage_adapters.objectives.readability import Readability
from cage_adapters.objectives.registry import available, make_objective
from cage_adapters.objectives.sentiment import Sentiment
from cage_adapters.objectives.sequence import SequenceObjective
from cage_adapters.objectives.shared import SharedForwards
from cage_adapters.objectives.similarity import Similarity
from cage_adapters.objectives.token import PromptedObjective, TokenModelObjective

__all__ = [
    "Brevity",
    "NonOffensive",
    "Objective",
    "PromptedObjective",
    "Readability",
    "Sentiment",
    "SequenceObjective",
    "SharedForwards",
    "Similarity",
    "StepContext",
    "TokenModelObjective",
    "UnknownObjectiveError",
    "available",
    "make_objective",
    "normalize_rewards",
]
