"""One batched forward per model and step for every objective that reads that model.

Model-backed objectives (:class:`~cage_adapters.objectives.token.PromptedObjective`,
:class:`~cage_adapters.objectives.token.TokenModelObjective`) declare *streams*: ``(model,
copies)`` pairs, ``copies`` rows per batch row (a prompted objective without ``reuse_base``
needs its instructed and its plain context: 2 copies). :class:`SharedForwards` groups the streams
of all objectives by model, stacks their rows into one batch (left-padded to a common width) and
runs one forward per model and step with one KV cache, then hands each objective its slice.
Two prompted objectives on the base model with ``reuse_base=True`` therefore cost one extra
forward of ``2B`` rows per step, not two forwards.

Row layout of a group: objective after objective, stream copy after copy, ``B`` rows each
(copy-major), so that the rows of one copy follow the batch order and a beam-search reordering
``parent`` maps to ``parent + offset`` within each block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cage_adapters.objectives.base import Objective, StepContext

__all__ = ["SharedForwards"]


@dataclass
class _Member:
    key: int  # id(objective)
    stream: int  # index of the stream in the objective's streams()
    copies: int


@dataclass
class _Group:
    model: Any
    lm: Any
    members: list[_Member] = field(default_factory=list)

    @property
    def copies(self) -> int:
        return sum(m.copies for m in self.members)


class SharedForwards:
    """Run the streams of several objectives as one forward per distinct model and step.

    Parameters
    ----------
    objectives : sequence of Objective
        Objectives without a ``streams()`` method (sequence scorers) are ignored.

    Attributes
    ----------
    groups : list
        One group per distinct model (by identity), with its :class:`~cage_adapters._lm.CachedLM`.
    forwards : int
        Forward calls run so far (one per group and step).
    """

    def __init__(self, objectives: Sequence[Objective]) -> None:
        from cage_adapters._lm import CachedLM

        self.groups: list[_Group] = []
        self._objectives: dict[int, Objective] = {}
        self.forwards = 0
        by_model: dict[int, _Group] = {}
        for o in objectives:
            streams = getattr(o, "streams", None)
            if streams is None:
                continue
            for s, (model, copies) in enumerate(streams()):
                g = by_model.get(id(model))
                if g is None:
                    g = _Group(model, CachedLM(model, getattr(o, "pad_id", 0)))
                    by_model[id(model)] = g
                    self.groups.append(g)
                g.members.append(_Member(id(o), s, int(copies)))
                self._objectives[id(o)] = o

    def __bool__(self) -> bool:
        return bool(self.groups)

    def run(self, ctx: StepContext) -> dict[int, list[Any]]:
        """Next-token log-probabilities of every stream, ``{id(objective): [(copies*B, V)]}``.

        The first step of a generation runs the contexts the objectives build
        (``stream_contexts``); later steps append the token each row chose, reordered by
        ``ctx.parent`` under beam search.
        """
        import torch

        B = ctx.batch_size
        out: dict[int, list[Any]] = {k: [] for k in self._objectives}
        slots: dict[int, dict[int, Any]] = {k: {} for k in self._objectives}
        contexts: dict[int, list[list[list[int]]]] = {}
        for g in self.groups:
            if ctx.first:
                seqs: list[list[int]] = []
                for mem in g.members:
                    if mem.key not in contexts:
                        contexts[mem.key] = self._objectives[mem.key].stream_contexts(ctx)
                    block = contexts[mem.key][mem.stream]
                    if len(block) != mem.copies * B:
                        raise ValueError(
                            f"objective {self._objectives[mem.key].name!r} built "
                            f"{len(block)} contexts for stream {mem.stream}; expected "
                            f"{mem.copies} x {B}"
                        )
                    seqs.extend(block)
                logp = g.lm.start(seqs)
            else:
                n = g.copies
                tokens = ctx.last_tokens().repeat(n)
                parent = None
                if ctx.parent is not None:
                    parent = torch.cat([ctx.parent + j * B for j in range(n)])
                logp = g.lm.step(tokens, parent)
            self.forwards += 1
            row = 0
            for mem in g.members:
                rows = mem.copies * B
                slots[mem.key][mem.stream] = logp[row:row + rows]
                row += rows
        for k, by_stream in slots.items():
            out[k] = [by_stream[s] for s in sorted(by_stream)]
        return out
