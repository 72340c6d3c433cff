"""Fast tests of the adapter layer on tiny random models (no real model, nothing downloaded)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from adapters_fixtures import (  # noqa: E402
    numpy_solve_batch,
    tiny_gpt2,
    tiny_llama,
    tiny_tokenizer,
)
from cage_adapters import objectives as obj  # noqa: E402
from cage_adapters.objectives import normalize_rewards  # noqa: E402
from cage_adapters.processor import (  # noqa: E402
    CageLogitsProcessor,
    LinearMixingProcessor,
)
from transformers import LogitsProcessorList  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _inputs(tok, prompts):
    return tok(list(prompts), return_tensors="pt", padding=True)


def _logits(model, inputs):
    with torch.no_grad():
        return model(**inputs).logits[:, -1].float()


def _last_char(text):
    return float(ord(text[-1])) if text else 0.0


def _keyword_scorer(word):
    return lambda texts: [float(t.count(word)) for t in texts]


# -- package hygiene ------------------------------------------------------------------------------
def test_import_is_cheap():
    code = ("import sys, cage_adapters, cage_adapters.cli.align; "
            "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    env = {"PYTHONPATH": f"{ROOT}:{ROOT / 'adapters'}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_lazy_exports():
    import cage_adapters

    assert cage_adapters.CageLogitsProcessor is CageLogitsProcessor
    assert cage_adapters.objectives is obj
    with pytest.raises(AttributeError, match="no attribute"):
        cage_adapters.nothing_here  # noqa: B018


# -- normalisation --------------------------------------------------------------------------------
def test_zscore_over_valid_candidates_only():
    r = torch.tensor([[1.0, 2.0, 3.0, 100.0], [5.0, 5.0, 5.0, 5.0]])
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    z = normalize_rewards(r, mask, "zscore")
    assert torch.allclose(z[0, :3].mean(), torch.tensor(0.0), atol=1e-6)
    assert torch.allclose(z[0, :3].pow(2).mean(), torch.tensor(1.0), atol=1e-5)
    assert z[0, 3] == 0
    assert torch.equal(z[1], torch.zeros(4))  # ties carry no information
    c = normalize_rewards(r, mask, "center")
    assert torch.allclose(c[0, :3], torch.tensor([-1.0, 0.0, 1.0]))
    assert torch.allclose(normalize_rewards(r, mask, 2.0)[0, :3], torch.tensor([2.0, 4.0, 6.0]))
    assert torch.equal(normalize_rewards(r, mask, "none")[0, :3], r[0, :3])


@pytest.mark.parametrize("how", ["zscore", "center", "none", 0.5])
def test_stacked_objectives_are_normalised_row_by_row(how):
    gen = torch.Generator().manual_seed(0)
    r = torch.randn(3, 4, 6, generator=gen)
    r[1, 2] = 7.0  # a tie: zero after z-scoring
    mask = torch.rand(3, 6, generator=gen) > 0.3
    one = normalize_rewards(r, mask, how)
    for i in range(4):
        assert torch.allclose(one[:, i], normalize_rewards(r[:, i], mask, how), atol=1e-6)


class _Spiky(obj.Objective):
    """Finite rewards except on one candidate of row 0 (for the non-finite check)."""

    def rewards(self, ctx):
        r = ctx.candidates.float()
        r[0, 1] = math.inf
        return r


def test_a_non_finite_token_reward_names_its_objective(tok, model):
    fine = obj.Brevity(tok)
    proc = CageLogitsProcessor([fine, _Spiky(tok, "spiky")], weights=[1.0, 1.0], top_k=4)
    inp = _inputs(tok, ["Hi", "Hello"])
    with pytest.raises(ValueError, match="objective 'spiky' returned a non-finite reward for 1 "
                                         "candidates"):
        proc(inp["input_ids"], _logits(model, inp))


@pytest.mark.parametrize("bad", ["minmax", -1.0, 0.0, float("nan")])
def test_bad_normalization_is_rejected(tok, bad):
    with pytest.raises(ValueError, match="normalize"):
        obj.Sentiment(tok, normalize=bad)


# -- the equilibrium on one step ------------------------------------------------------------------
def _direct_game(proc, model, tok, prompts):
    inp = _inputs(tok, prompts)
    scores = _logits(model, inp)
    out = proc(inp["input_ids"], scores)
    return inp, scores, out, proc.trace[-1]


def test_processor_matches_the_numpy_core(tok, model):
    """New scores = log pi* of the game (v = beta log p0|C, u_i = w_i z(r_i)) solved by the core."""
    from cage_games import Agent, CommonAgencyGame, Principal
    from cage_games.solvers import solve

    objs = [obj.SequenceObjective(_keyword_scorer("a"), tok, name="a"),
            obj.SequenceObjective(lambda ts: [float(len(t)) for t in ts], tok, name="len")]
    beta = 0.3
    proc = CageLogitsProcessor(objs, weights=[1.0, 0.7], beta=beta, top_k=6)
    inp, scores, out, rec = _direct_game(proc, model, tok, ["The cafe", "Hello world, how"])
    logp = torch.log_softmax(scores, 1)
    for b in range(2):
        cand = rec.candidates[b]
        q = logp[b, cand].double().numpy()
        q = np.exp(q - np.logaddexp.reduce(q))
        # rebuild the rewards exactly as the objectives define them
        gen = inp["input_ids"][b, inp["input_ids"].shape[1]:].tolist()
        texts = tok.batch_decode([[*gen, int(c)] for c in cand], skip_special_tokens=True)
        raw = np.array([[t.count("a") for t in texts], [len(t) for t in texts]], float)
        z = raw - raw.mean(1, keepdims=True)
        sd = np.sqrt((z**2).mean(1, keepdims=True))
        z = np.where(sd > 1e-6, z / np.maximum(sd, 1e-6), 0.0)
        u = np.array([[1.0], [0.7]]) * z
        game = CommonAgencyGame(Agent.kl_regularized(q, beta),
                                [Principal(utility=u[0]), Principal(utility=u[1])])
        ref = solve(game)
        got = np.exp(out[b, cand].double().numpy())
        np.testing.assert_allclose(got, ref.policy, atol=2e-5)
        np.testing.assert_allclose(rec.thresholds[b] * beta, ref.thresholds, atol=2e-4)
        assert rec.success[b] and not rec.fallback[b]
        assert np.isclose(got.sum(), 1.0, atol=1e-5)
    outside = torch.ones_like(out, dtype=torch.bool)
    outside.scatter_(1, torch.as_tensor(rec.candidates), False)
    assert torch.isinf(out[outside]).all() and (out[outside] < 0).all()


def test_torch_solver_agrees_with_reference_solver(tok, model):
    objs = [obj.SequenceObjective(_keyword_scorer("e"), tok, name="e"), obj.Brevity(tok)]
    a = CageLogitsProcessor(objs, weights=[1.0, 1.0], beta=0.2, top_k=10)
    b = CageLogitsProcessor(objs, weights=[1.0, 1.0], beta=0.2, top_k=10,
                            solver=numpy_solve_batch)
    *_, out_a, _ = _direct_game(a, model, tok, ["The cafe", "Hello"])
    *_, out_b, _ = _direct_game(b, model, tok, ["The cafe", "Hello"])
    fin = torch.isfinite(out_b)
    assert torch.equal(fin, torch.isfinite(out_a))
    assert torch.allclose(out_a[fin], out_b[fin], atol=1e-4)


def test_zero_weights_leave_the_base_distribution(tok, model):
    proc = CageLogitsProcessor([obj.Brevity(tok)], weights=[0.0], beta=1.0, top_k=5)
    _, scores, out, rec = _direct_game(proc, model, tok, ["The cafe"])
    logp = torch.log_softmax(scores, 1)
    cand = torch.as_tensor(rec.candidates)
    q = logp.gather(1, cand)
    q = q - torch.logsumexp(q, 1, keepdim=True)
    assert torch.allclose(out.gather(1, cand), q, atol=1e-5)
    assert rec.kl[0] == pytest.approx(0.0, abs=1e-6)
    assert rec.shares[0].sum() == 0


def test_linear_baseline_is_exponential_tilting(tok, model):
    s = obj.SequenceObjective(_keyword_scorer("o"), tok, name="o", normalize="none")
    proc = LinearMixingProcessor([s], weights=[0.5], beta=0.25, top_k=8)
    _, scores, out, rec = _direct_game(proc, model, tok, ["Hello"])
    cand = torch.as_tensor(rec.candidates)
    texts = tok.batch_decode([[int(c)] for c in cand[0]], skip_special_tokens=True)
    r = torch.tensor([[float(t.count("o")) for t in texts]])
    want = torch.log_softmax(torch.log_softmax(scores, 1).gather(1, cand) + 0.5 * r / 0.25, 1)
    assert torch.allclose(out.gather(1, cand), want, atol=1e-5)


def test_per_row_weights(tok, model):
    objs = [obj.SequenceObjective(lambda ts: [_last_char(t) for t in ts], tok, name="up"),
            obj.SequenceObjective(lambda ts: [-_last_char(t) for t in ts], tok, name="down")]
    proc = CageLogitsProcessor(objs, weights=[[3.0, 0.0], [0.0, 3.0]], beta=0.2, top_k=12)
    *_, rec = _direct_game(proc, model, tok, ["The cafe", "The cafe"])
    assert rec.shares[0, 1] == 0 and rec.shares[1, 0] == 0
    assert rec.shares[0, 0] > 0 and rec.shares[1, 1] > 0
    with pytest.raises(ValueError, match="weights has 2 rows but the batch has 3 rows"):
        _direct_game(proc, model, tok, ["a", "b", "c"])


@pytest.mark.parametrize("cls", [CageLogitsProcessor, LinearMixingProcessor])
def test_target_kl_is_reached(tok, model, cls):
    short = obj.SequenceObjective(lambda ts: [-float(len(t)) for t in ts], tok, name="short")
    objs = [obj.SequenceObjective(_keyword_scorer("e"), tok, name="e"), short]
    for target in (0.05, 0.3):
        proc = cls(objs, weights=[1.0, 0.5], target_kl=target, top_k=12)
        *_, rec = _direct_game(proc, model, tok, ["The cafe was", "Hello", "A bad day"])
        reached = rec.kl_reached & rec.active
        assert reached.any()
        np.testing.assert_allclose(rec.kl[reached], target, rtol=0.05)
        assert (rec.kl[~reached] <= target * 1.05).all()


def test_candidates_top_p_and_wide_logits(tok):
    model = tiny_llama(tok, vocab_size=len(tok) + 37)  # logits wider than the tokenizer
    proc = CageLogitsProcessor([obj.Brevity(tok)], weights=[1.0], top_k=None, top_p=0.5)
    inp = _inputs(tok, ["The cafe"])
    scores = _logits(model, inp)
    scores[:, len(tok):] = scores.max() + 10  # the padded ids would win if they were candidates
    out = proc(inp["input_ids"], scores)
    assert torch.isinf(out[:, len(tok):]).all()
    rec = proc.trace[-1]
    p = torch.softmax(scores[:, : len(tok)], 1)[0].sort(descending=True).values
    want = int((torch.cumsum(p, 0) - p < 0.5).sum())
    assert rec.n_candidates[0] == want


# -- generation: batching, padding, caches, beams -------------------------------------------------
class _CheckedTokenModel(obj.TokenModelObjective):
    """Compares the KV-cached rewards with a fresh full forward at every step."""

    max_err = 0.0

    def rewards(self, ctx):
        got = super().rewards(ctx)
        seqs = [p + g for p, g in zip(ctx.prompt_ids(), ctx.generated_ids(), strict=True)]
        fresh = self._lms[0].rerun(seqs)
        if len(self._lms) == 2:
            fresh = fresh - self._lms[1].rerun(seqs)
        want = fresh.gather(1, ctx.candidates)
        err = float((got - want)[ctx.cand_mask].abs().max()) if ctx.cand_mask.any() else 0.0
        _CheckedTokenModel.max_err = max(_CheckedTokenModel.max_err, err)
        return got


@pytest.mark.parametrize("mode", ["sample", "beams", "greedy"])
def test_kv_caches_follow_rows_and_beams(tok, model, guide, mode):
    _CheckedTokenModel.max_err = 0.0
    checked = _CheckedTokenModel(guide, tok, reference=model, name="guide")
    objs = [checked, obj.PromptedObjective("Be kind.", tok, model)]
    proc = CageLogitsProcessor(objs, weights=[1.0, 1.0], beta=0.5, top_k=8)
    inp = _inputs(tok, ["The cafe was warm", "Hi", "A bad day, a good"])
    kwargs = {"sample": {"do_sample": True, "num_return_sequences": 2},
              "beams": {"num_beams": 3, "do_sample": False},
              "greedy": {"do_sample": False}}[mode]
    torch.manual_seed(0)
    out = model.generate(**inp, logits_processor=LogitsProcessorList([proc]),
                         max_new_tokens=6, pad_token_id=tok.pad_token_id, **kwargs)
    assert out.shape[1] > inp["input_ids"].shape[1]
    assert len(proc.trace) >= 2
    assert _CheckedTokenModel.max_err < 1e-4


def test_batch_equals_single_rows_and_rows_finish_independently(tok, model):
    """Greedy decoding of a padded batch gives each row what it gets alone."""
    objs = [obj.SequenceObjective(_keyword_scorer("a"), tok, name="a"),
            obj.PromptedObjective("Be brief.", tok, model)]
    eos = tok.eos_token_id

    def run(prompts):
        proc = CageLogitsProcessor(objs, weights=[1.0, 0.5], beta=0.3, top_k=6,
                                   eos_token_id=[eos, tok.convert_tokens_to_ids(".")])
        inp = _inputs(tok, prompts)
        out = model.generate(**inp, logits_processor=LogitsProcessorList([proc]),
                             do_sample=False, max_new_tokens=8, pad_token_id=tok.pad_token_id,
                             eos_token_id=[eos, tok.convert_tokens_to_ids(".")])
        gen = out[:, inp["input_ids"].shape[1]:]
        return [tok.decode(g, skip_special_tokens=True) for g in gen], proc

    prompts = ["The cafe was warm and lovely", "Hi", "Write a short review"]
    batch, proc = run(prompts)
    alone = [run([p])[0][0] for p in prompts]
    assert batch == alone
    # rows that stopped are marked inactive afterwards and left untouched
    if any(not r.active.all() for r in proc.trace):
        rec = next(r for r in proc.trace if not r.active.all())
        assert (rec.kl[~rec.active] == 0).all()


def test_trace_payments_report_the_chosen_tokens(tok, model):
    objs = [obj.SequenceObjective(_keyword_scorer("e"), tok, name="e"), obj.Brevity(tok)]
    proc = CageLogitsProcessor(objs, weights=[2.0, 2.0], beta=0.2, top_k=8)
    inp = _inputs(tok, ["The cafe"])
    torch.manual_seed(1)
    out = model.generate(**inp, logits_processor=LogitsProcessorList([proc]), do_sample=True,
                         max_new_tokens=5, pad_token_id=tok.pad_token_id)
    pays = proc.trace.payments(out, prompt_len=inp["input_ids"].shape[1])
    assert [p["token"] for p in pays] == out[0, inp["input_ids"].shape[1]:][: len(pays)].tolist()
    for p, rec in zip(pays, proc.trace, strict=False):
        j = int(np.flatnonzero(rec.candidates[0] == p["token"])[0])
        assert p["paid"] == {"e": pytest.approx(float(rec.transfers[0, 0, j])),
                             "brevity": pytest.approx(float(rec.transfers[0, 1, j]))}
    s = proc.trace.summary()
    assert s["steps"] == len(proc.trace) and 0 <= s["fallback_rate"] <= 1


# -- failures never corrupt generation ------------------------------------------------------------
def _failing_solver(kind):
    def solver(v, u, beta, mask=None, **_):
        if kind == "raise":
            raise RuntimeError("boom")
        B, m, n = u.shape
        return SimpleNamespace(log_policy=torch.full((B, n), math.nan, dtype=v.dtype),
                               thresholds=torch.zeros(B, m, dtype=v.dtype),
                               residual=torch.ones(B, dtype=v.dtype),
                               nit=torch.full((B,), 100), success=torch.zeros(B, dtype=torch.bool))
    return solver


@pytest.mark.parametrize("kind", ["raise", "nan"])
def test_solver_failure_falls_back_to_the_base(tok, model, kind):
    proc = CageLogitsProcessor([obj.Brevity(tok)], weights=[1.0], beta=0.1, top_k=5,
                               solver=_failing_solver(kind))
    _, scores, out, rec = _direct_game(proc, model, tok, ["The cafe", "Hi"])
    assert rec.fallback.all() and not rec.success.any()
    cand = torch.as_tensor(rec.candidates)
    q = torch.log_softmax(scores, 1).gather(1, cand)
    assert torch.allclose(out.gather(1, cand), q - torch.logsumexp(q, 1, keepdim=True),
                          atol=1e-5)
    assert torch.isfinite(torch.logsumexp(out, 1)).all()


# -- objectives -----------------------------------------------------------------------------------
def test_prompted_objective_inserts_the_instruction(tok, model):
    p = obj.PromptedObjective("Be warm.", tok, model)
    chat = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                   add_generation_prompt=True)
    assert p.instructed(chat) == ("<|im_start|>user\nHi\n\nBe warm.<|im_end|>\n"
                                  "<|im_start|>assistant\n")
    assert p.instructed("plain text") == "Be warm.\n\nplain text"
    assert p.name == "prompt:Be warm."


def test_builtin_scorers_score_texts(tok):
    assert obj.Sentiment(tok).score(["I love this wonderful cafe!"])[0] > 0.5
    assert obj.Sentiment(tok).score(["I hate this awful place."])[0] < -0.5
    r = obj.Readability(tok).score(["The cat sat on the mat.",
                                    "Notwithstanding institutional considerations, "
                                    "interdisciplinary epistemological paradigms proliferate."])
    assert r[0] > r[1]
    n = obj.NonOffensive(tok).score(["have a nice day", "you stupid fucking idiot"])
    assert 0 <= n[1] < n[0] <= 1


def test_unknown_objective_lists_known_names(tok):
    with pytest.raises(obj.UnknownObjectiveError, match=r"known objectives: .*brevity.*sentiment"):
        obj.make_objective("happiness", tok)
    assert isinstance(obj.make_objective("Sentiment", tok), obj.Sentiment)
    with pytest.raises(ValueError, match="reference"):
        obj.make_objective("similarity", tok)
    with pytest.raises(TypeError, match="needs a model"):
        obj.make_objective("prompt:Be nice.", tok)


def test_scorer_returning_nan_is_an_error(tok, model):
    bad = obj.SequenceObjective(lambda ts: [math.nan] * len(ts), tok, name="bad")
    proc = CageLogitsProcessor([bad], weights=[1.0], top_k=4)
    inp = _inputs(tok, ["Hi"])
    with pytest.raises(ValueError, match="scorer of objective 'bad' returned nan"):
        model.generate(**inp, logits_processor=LogitsProcessorList([proc]), max_new_tokens=2,
                       pad_token_id=tok.pad_token_id)
    short = obj.SequenceObjective(lambda ts: [1.0], tok, name="short")
    with pytest.raises(ValueError, match="returned 1 scores for 4 texts"):
        CageLogitsProcessor([short], top_k=4)(inp["input_ids"], _logits(model, inp))


# -- validation of the processor's inputs ---------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "match"), [
    ({"weights": [-1.0, 1.0]}, "weights must be >= 0"),
    ({"weights": [1.0]}, "there are 2 objectives"),
    ({"weights": [[1.0, 2.0, 3.0]]}, "there are 2 objectives"),
    ({"weights": [1.0, math.nan]}, "finite"),
    ({"beta": 0.0}, "beta must be a positive"),
    ({"beta": -1.0}, "beta must be a positive"),
    ({"target_kl": -0.1}, "target_kl must be a positive"),
    ({"top_k": 0}, "top_k must be a positive integer"),
    ({"top_p": 1.5}, "top_p must be in"),
])
def test_processor_validation(tok, kwargs, match):
    objs = [obj.Brevity(tok), obj.Sentiment(tok)]
    with pytest.raises(ValueError, match=match):
        CageLogitsProcessor(objs, **kwargs)


def test_empty_and_mismatched_objectives(tok):
    with pytest.raises(ValueError, match="objectives is empty"):
        CageLogitsProcessor([], weights=[])
    other = tiny_tokenizer(vocab_size=280, model="sentencepiece")
    with pytest.raises(ValueError, match="different base tokenizer"):
        CageLogitsProcessor([obj.Brevity(tok), obj.Sentiment(other)])
    with pytest.raises(TypeError, match="Objective instances"):
        CageLogitsProcessor(["sentiment"])
    with pytest.raises(ValueError, match="names must be unique"):
        CageLogitsProcessor([obj.Brevity(tok), obj.Brevity(tok)])


def test_guide_with_another_tokenizer_needs_a_map(tok):
    other = tiny_tokenizer(vocab_size=280, model="sentencepiece")
    guide = tiny_gpt2(other)
    with pytest.raises(ValueError, match="pass vocab_map"):
        obj.TokenModelObjective(guide, tok, guide_tokenizer=other)
    with pytest.raises(ValueError, match="predicts 100 tokens"):
        obj.TokenModelObjective(tiny_gpt2(tok, vocab_size=100), tok)


def test_guide_with_another_tokenizer_decodes(tok, model):
    other = tiny_tokenizer(vocab_size=280, model="sentencepiece")
    guide = tiny_gpt2(other, seed=3)
    g = obj.TokenModelObjective(guide, tok, guide_tokenizer=other, vocab_map="auto", name="g")
    proc = CageLogitsProcessor([g], weights=[2.0], beta=0.3, top_k=8)
    inp = _inputs(tok, ["The cafe", "Hello"])
    out = model.generate(**inp, logits_processor=LogitsProcessorList([proc]), do_sample=False,
                         max_new_tokens=4, pad_token_id=tok.pad_token_id)
    assert out.shape[1] > inp["input_ids"].shape[1]
    assert not any(r.fallback.any() for r in proc.trace)


def test_prompted_objective_can_reuse_the_base_distribution(tok, model):
    """With the base model itself, reading log p(a|s) from the scores changes nothing."""
    from cage_adapters.objectives import StepContext

    inp = _inputs(tok, ["The cafe was", "Hi"])
    scores = _logits(model, inp)
    logp = torch.log_softmax(scores, 1)
    cand = torch.topk(logp, 6, 1).indices
    ctx = StepContext(input_ids=inp["input_ids"], prompt_len=inp["input_ids"].shape[1],
                      candidates=cand, cand_mask=torch.ones_like(cand, dtype=torch.bool),
                      active=torch.tensor([True, True]), parent=None, first=True, tokenizer=tok,
                      pad_id=tok.pad_token_id, eos_ids=frozenset({tok.eos_token_id}),
                      base_logprobs=logp)
    a = obj.PromptedObjective("Be warm.", tok, model).rewards(ctx)
    b = obj.PromptedObjective("Be warm.", tok, model, reuse_base=True).rewards(ctx)
    assert torch.allclose(a, b, atol=1e-4)
    assert a.abs().max() > 1e-3  # the instruction does move the distribution


@pytest.mark.parametrize("mode", [{"beta": 0.5}, {"target_kl": 0.2}], ids=["beta", "target"])
def test_processor_backends_agree(tok, model, mode):
    """backend="triton" (the fused kernel, here in Triton's interpreter) and backend="torch"
    give the processor the same policy, with the strength search inside the kernel."""
    pytest.importorskip("triton")
    import os

    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("needs TRITON_INTERPRET=1 (set by conftest)")
    objs = [obj.SequenceObjective(_keyword_scorer("e"), tok, name="e"),
            obj.SequenceObjective(lambda ts: [-float(len(t)) for t in ts], tok, name="short")]
    outs = {}
    for bk in ("torch", "triton"):
        proc = CageLogitsProcessor(objs, weights=[1.0, 0.5], top_k=8, backend=bk, **mode)
        _, _, out, rec = _direct_game(proc, model, tok, ["The cafe was", "A bad day"])
        outs[bk] = (out, rec)
    (a, ra), (b, rb) = outs["torch"], outs["triton"]
    fin = torch.isfinite(a)
    assert torch.equal(fin, torch.isfinite(b))
    assert float((a[fin] - b[fin]).abs().max()) <= 1e-6
    np.testing.assert_allclose(ra.kl, rb.kl, atol=1e-7)
    np.testing.assert_allclose(ra.beta, rb.beta, rtol=1e-6)
    with pytest.raises(ValueError, match="backend must be one of"):
        CageLogitsProcessor(objs, backend="gpu")


class _ModSeven(obj.Objective):
    """Token rewards that depend only on the candidate id (cheap, deterministic)."""

    def rewards(self, ctx):
        return (ctx.candidates % 7).float()


@pytest.mark.parametrize("mode", [{"beta": 0.7}, {"target_kl": 0.2}])
def test_a_finished_row_is_left_alone_and_the_others_solve_as_alone(tok, mode):
    eos = tok.eos_token_id
    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(5, len(tok), (3, 4), generator=gen)
    scores = [torch.randn(3, len(tok), generator=gen) for _ in range(2)]
    nxt = torch.tensor([[11], [eos], [12]])

    def run(rows):
        proc = CageLogitsProcessor([_ModSeven(tok, "a"), _ModSeven(tok, "b")], [1.0, 0.5],
                                   top_k=6, eos_token_id=[eos], **mode)
        proc(ids[rows], scores[0][rows])
        out = proc(torch.cat([ids, nxt], 1)[rows], scores[1][rows])
        return out, proc.trace[-1]

    out, rec = run([0, 1, 2])  # row 1 finished: the step runs with one row without a game
    assert rec.active.tolist() == [True, False, True]
    logp = torch.log_softmax(scores[1][1], dim=0)
    assert torch.allclose(out[1], logp)  # left as it was
    assert rec.kl[1] == 0 and np.isnan(rec.thresholds[1]).all() and not rec.fallback[1]
    assert (rec.transfers[1] == 0).all()
    alone, rec_alone = run([0, 2])  # the same rows in a batch where every row solves
    assert torch.allclose(out[[0, 2]], alone, atol=1e-5)
    np.testing.assert_allclose(rec.kl[[0, 2]], rec_alone.kl, rtol=1e-5)
    np.testing.assert_allclose(rec.thresholds[[0, 2]], rec_alone.thresholds, rtol=1e-4,
                               atol=1e-6)
