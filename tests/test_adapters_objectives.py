"""Objectives as a package: registry, shared (batched) forwards of model-backed objectives."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from cage_adapters import objectives as obj  # noqa: E402
from cage_adapters.processor import CageLogitsProcessor  # noqa: E402
from transformers import LogitsProcessorList  # noqa: E402


class _Counter:
    """Counts forward calls of a module and the rows of each."""

    def __init__(self, module):
        self.rows: list[int] = []
        self.handle = module.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.rows.append(int(ids.shape[0]))

    def close(self):
        self.handle.remove()


def _alone_check(cls):
    """A subclass that, at every step, also computes its rewards with forwards of its own."""

    class Checked(cls):
        max_err = 0.0
        steps = 0

        def rewards(self, ctx):
            got = super().rewards(ctx)
            if not hasattr(self, "_alone"):
                self._alone = obj.SharedForwards([self])
            alone = self.rewards_from(ctx, self._alone.run(ctx)[id(self)])
            err = float((got - alone)[ctx.cand_mask].abs().max()) if ctx.cand_mask.any() else 0.
            type(self).max_err = max(type(self).max_err, err)
            type(self).steps += 1
            return got

    return Checked


def test_package_keeps_the_public_names(tok):
    for name in ["Objective", "StepContext", "PromptedObjective", "TokenModelObjective",
                 "SequenceObjective", "Sentiment", "Brevity", "NonOffensive", "Readability",
                 "Similarity", "make_objective", "available", "normalize_rewards",
                 "UnknownObjectiveError"]:
        assert hasattr(obj, name), name
    names = {e.name for e in obj.registry.ENTRIES}
    assert set(obj.available()) == names | {"prompt:<instruction>"}
    assert isinstance(obj.make_objective("brief", tok), obj.Brevity)


@pytest.mark.parametrize("mode", ["sample", "beams"])
def test_shared_forwards_give_the_unbatched_rewards(tok, model, guide, mode):
    """Objectives sharing a model get, step by step, what their own forwards would give."""
    P = _alone_check(obj.PromptedObjective)
    T = _alone_check(obj.TokenModelObjective)
    objs = [P("Be kind.", tok, guide, name="kind"),
            P("Be brief.", tok, guide, name="brief", reuse_base=False),
            T(guide, tok, reference=model, name="ratio"),
            P("Be warm.", tok, model, name="warm", reuse_base=True)]
    proc = CageLogitsProcessor(objs, weights=[1.0, 1.0, 0.5, 0.5], beta=0.5, top_k=8)
    inp = tok(["The cafe was warm", "Hi", "A bad day, a good"], return_tensors="pt",
              padding=True)
    kwargs = {"sample": {"do_sample": True, "num_return_sequences": 2},
              "beams": {"num_beams": 3, "do_sample": False}}[mode]
    counter = _Counter(guide)
    torch.manual_seed(0)
    try:
        model.generate(**inp, logits_processor=LogitsProcessorList([proc]), max_new_tokens=6,
                       pad_token_id=tok.pad_token_id, **kwargs)
    finally:
        counter.close()
    assert P.steps >= 2 * 3 and T.steps >= 2
    assert P.max_err < 1e-5 and T.max_err < 1e-5
    # the guide ran once per step for the processor (+ once per step for each checker's own
    # forwards: 2 prompted objectives and the ratio's guide stream)
    steps = len(proc.trace)
    assert len(counter.rows) == steps * (1 + 3)


def test_prompted_objectives_on_the_base_cost_one_extra_forward(tok, model):
    """Two prompted objectives with reuse_base: one extra forward of 2B rows per step."""
    objs = [obj.PromptedObjective("Be kind.", tok, model, reuse_base=True, name="a"),
            obj.PromptedObjective("Be brief.", tok, model, reuse_base=True, name="b")]
    proc = CageLogitsProcessor(objs, weights=[1.0, 1.0], beta=0.5, top_k=8)
    inp = tok(["The cafe was warm", "Hi"], return_tensors="pt", padding=True)
    counter = _Counter(model)
    try:
        model.generate(**inp, logits_processor=LogitsProcessorList([proc]), max_new_tokens=5,
                       min_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
    finally:
        counter.close()
    steps = len(proc.trace)
    assert steps == 5
    # generate's own forward (2 rows) and one shared forward (2 objectives x 2 rows) per step
    assert counter.rows == [2, 4] * steps
    assert proc._shared.forwards == steps


# -- brevity: finishing, not gluing -----------------------------------------------------------
def _brevity_rewards(tok, prefix, cands, **kw):
    from cage_adapters.objectives import StepContext

    ids = tok([prefix], return_tensors="pt")["input_ids"]
    cand = torch.tensor([[tok.convert_tokens_to_ids(c) if isinstance(c, str) else c
                          for c in cands]])
    ctx = StepContext(input_ids=ids, prompt_len=0, candidates=cand,
                      cand_mask=torch.ones_like(cand, dtype=torch.bool),
                      active=torch.tensor([True]), parent=None, first=True, tokenizer=tok,
                      pad_id=tok.pad_token_id, eos_ids=frozenset({tok.eos_token_id}))
    return obj.Brevity(tok, normalize="none", **kw).rewards(ctx)[0].tolist()


def test_brevity_rewards_closing_a_sentence_then_ending(tok):
    eos = tok.eos_token_id
    # an open sentence of 4 words: closing it pays, ending the turn mid-sentence does not
    assert _brevity_rewards(tok, "The cafe was warm", [eos, ".", "Ġday"]) == [0.0, 1.0, 0.0]
    # after a complete sentence: ending the turn pays the full bonus
    assert _brevity_rewards(tok, "The cafe was warm.", [eos, "Ġday"]) == [2.0, 0.0]
    # too short a sentence (a stray initial or a glued domain) earns nothing
    assert _brevity_rewards(tok, "Hello world", [eos, ".", "Ġday"]) == [0.0, 0.0, 0.0]
    assert _brevity_rewards(tok, "Hello world", [eos, "."], min_words=2)[1] == 1.0


@pytest.mark.parametrize("prefix, text, want", [
    ("The cafe was warm", "The cafe was warm.", True),
    ("I love this place", "I love this place!\n", True),
    ("Is it open", "Is it open?\"", True),
    ("the library at the S.H.I", "the library at the S.H.I.", False),
    ("visit cheri", "visit cheri.", False),
    ("visit Cheri.com", "visit Cheri.com.", False),
    ("We met at the cafe.", "We met at the cafe..", False),
    ("Item", "Item 1.", False),
    ("The cafe was warm", "The cafe was warm and", False),
])
def test_closes_sentence_needs_a_real_sentence(prefix, text, want):
    from cage_adapters.objectives.brevity import closes_sentence

    assert closes_sentence(prefix, text) is want


def test_brevity_score_cannot_be_gamed_by_gluing(tok):
    b = obj.Brevity(tok)
    plain, glued = b.score(["the cafe is on the main street", "thecafeisonthemainstreet"])
    assert abs(plain - glued) < 1.5  # characters, not words: gluing saves only the spaces
    assert b.score([""]).tolist() == [0.0]
