"""Strength that means what it says: the sequence KL budget, default strength, caps and clips."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from adapters_fixtures import tiny_llama, tiny_tokenizer  # noqa: E402
from cage_adapters import objectives as obj  # noqa: E402
from cage_adapters.processor import (  # noqa: E402
    DEFAULT_TARGET_KL,
    CageLogitsProcessor,
    LinearMixingProcessor,
)
from transformers import LogitsProcessorList  # noqa: E402


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    return tiny_llama(tok)


class _EveryOtherStep(obj.Objective):
    """A reward that ties on every odd step (nothing to steer there) and varies on even ones."""

    def rewards(self, ctx):
        r = (ctx.candidates % 7).float()
        if len(ctx.generated_ids()[0]) % 2:
            r = torch.zeros_like(r)
        return r


class _EverySixthStep(obj.Objective):
    """A reward that varies on one step in six and ties on the others (a sparse reward, like
    brevity's sentence ends)."""

    def rewards(self, ctx):
        r = (ctx.candidates % 7).float()
        if len(ctx.generated_ids()[0]) % 6:
            r = torch.zeros_like(r)
        return r


def _sparse(tok):
    return _EveryOtherStep(tok, "sparse")


def _row_mean_kl(proc):
    kl = np.stack([r.kl for r in proc.trace])  # (steps, B)
    act = np.stack([r.active for r in proc.trace])
    return (kl * act).sum(0) / act.sum(0)


def _generate(model, tok, proc, n=24):
    inp = tok(["The cafe was", "Hello", "A bad day", "Great coffee"], return_tensors="pt",
              padding=True)
    torch.manual_seed(0)
    model.generate(**inp, logits_processor=LogitsProcessorList([proc]), do_sample=True,
                   max_new_tokens=n, min_new_tokens=n, pad_token_id=tok.pad_token_id)
    return _row_mean_kl(proc)


@pytest.mark.parametrize("cls", [CageLogitsProcessor, LinearMixingProcessor])
def test_sequence_budget_carries_unspent_kl(tok, model, cls):
    target = 0.2
    seq = _generate(model, tok, cls([_sparse(tok)], [1.0], target_kl=target, top_k=12))
    step = _generate(model, tok, cls([_sparse(tok)], [1.0], target_kl=target, top_k=12,
                                     kl_budget="step"))
    # per step the target is out of reach wherever every candidate ties: the mean falls short
    np.testing.assert_allclose(step, target / 2, rtol=0.1)
    # carried forward, the rows that can spend it reach the target per sequence
    assert seq.mean() > 1.5 * step.mean()
    np.testing.assert_allclose(seq, target, rtol=0.1)


@pytest.mark.parametrize("cls", [CageLogitsProcessor, LinearMixingProcessor])
def test_sequence_budget_has_no_per_step_cap(tok, model, cls):
    # five steps in six cannot spend anything: the sixth must spend six steps' budget (an
    # earlier cap at 4x the target per step left such rows a third short). 25 tokens: the
    # last step (index 24) can spend, so no budget is left over at the end.
    target = 0.1
    proc = cls([_EverySixthStep(tok, "sparse6")], [1.0], target_kl=target, top_k=12)
    seq = _generate(model, tok, proc, n=25)
    # a row falls short only where a step could not reach its (carried) target: the reward's
    # best candidates already held most of the mass, so no tilt could spend it all
    saturated = ~np.stack([r.kl_reached for r in proc.trace]).all(0)
    ok = np.isclose(seq, target, rtol=0.1)
    assert (ok | saturated).all(), (seq, saturated)
    assert ok.sum() >= 2, seq


def test_default_strength_is_a_target_kl(tok):
    p = CageLogitsProcessor([obj.Brevity(tok)])
    assert p.target_kl == DEFAULT_TARGET_KL
    assert CageLogitsProcessor([obj.Brevity(tok)], beta=0.5).target_kl is None
    with pytest.raises(ValueError, match="kl_budget"):
        CageLogitsProcessor([obj.Brevity(tok)], kl_budget="token")


def test_caps_bound_what_a_principal_pays(tok, model):
    spike = obj.SequenceObjective(lambda ts: [50.0 * t.count("e") for t in ts], tok, name="e",
                                  normalize="none")
    free = CageLogitsProcessor([spike], [1.0], beta=1.0, top_k=12)
    capped = CageLogitsProcessor([spike], [1.0], beta=1.0, top_k=12, caps=0.5)
    _generate(model, tok, free, n=4)
    _generate(model, tok, capped, n=4)
    paid_free = max(float(r.transfers.max()) for r in free.trace)
    paid_cap = max(float(r.transfers.max()) for r in capped.trace)
    assert paid_free > 5.0
    assert paid_cap <= 0.5 + 1e-6
    assert not any(r.fallback.any() for r in capped.trace)
    with pytest.raises(ValueError, match="caps must be > 0"):
        CageLogitsProcessor([spike], caps=0.0)


def test_linear_clip_bounds_each_tilt(tok, model):
    spike = obj.SequenceObjective(lambda ts: [50.0 * t.count("e") for t in ts], tok, name="e",
                                  normalize="none")
    lin = LinearMixingProcessor([spike], [1.0], beta=1.0, top_k=12, clip=0.5)
    inp = tok(["The cafe was"], return_tensors="pt")
    with torch.no_grad():
        scores = model(**inp).logits[:, -1].float()
    out = lin(inp["input_ids"], scores)
    rec = lin.trace[-1]
    cand = torch.as_tensor(rec.candidates)
    q = torch.log_softmax(torch.log_softmax(scores, 1).gather(1, cand), 1)
    ratio = out.gather(1, cand) - q  # log pi - log q = tilt - log Z
    assert float(ratio.max() - ratio.min()) <= 0.5 + 1e-5
