"""The frontier harness end to end on a tiny model: a 3-point grid, resume, CLI, baselines."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from cage_adapters import objectives as obj  # noqa: E402
from cage_adapters.evaluate import frontier as fr  # noqa: E402

PROMPTS = ["The cafe was warm", "Hello", "A bad day", "Great coffee", "Write a review"]


def _cfg(**kw):
    base = {"prompts": PROMPTS, "objectives": ["sentiment", "brevity"],
            "methods": ["cage", "linear", "args", "bon", "plain"], "target_kl": [0.3],
            "weights": 3, "seeds": [0], "max_new_tokens": 5, "top_k": 8, "batch_size": 3,
            "bon_n": 2, "bon_pool": 3, "n_boot": 40}
    return fr.FrontierConfig(**{**base, **kw})


def test_weight_grid():
    assert fr.weight_grid(2, 3) == [(1.0, 0.0), (0.5, 0.5), (0.0, 1.0)]
    g = fr.weight_grid(3, 3)
    assert len(g) == 6 and all(abs(sum(w) - 1) < 1e-9 for w in g)


def test_frontier_end_to_end_and_resume(tok, model, tmp_path, monkeypatch):
    cfg = _cfg()
    calls = {"n": 0}
    real = fr._Runner.steer

    def flaky(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # interrupted in the middle of the run
        return real(self, *a, **k)

    monkeypatch.setattr(fr._Runner, "steer", flaky)
    with pytest.raises(KeyboardInterrupt):
        fr.run_frontier(cfg, tmp_path, model=model, tokenizer=tok, progress=False, plots=False)
    done = sorted(p.name for p in (tmp_path / "cells").glob("*.json"))
    assert len(done) == 3  # the pool and two steered cells were kept
    mtimes = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cells").glob("*.json")}
    calls["n"] = -100  # no more interruptions
    res = fr.run_frontier(cfg, tmp_path, model=model, tokenizer=tok, progress=False)
    # finished cells were read back, not recomputed; the rest ran once
    for name, t in mtimes.items():
        assert (tmp_path / "cells" / name).stat().st_mtime_ns == t
    assert calls["n"] == -100 + (2 * 3 + 3) - 2
    out = json.loads((tmp_path / "results.json").read_text())
    assert out["methods"].keys() == {"cage", "linear", "args", "bon", "plain"}
    cage = out["methods"]["cage"]["kl=0.3"]
    for key in ("points", "front", "hypervolume", "mean_kl", "kl_quantiles", "fluency",
                "nonword", "distinct_1", "distinct_2", "tokens_per_s", "spearman"):
        assert key in cage, key
    assert len(cage["points"]) == 3
    lin = out["methods"]["linear"]["kl=0.3"]["hv_diff_to_cage"]["kl=0.3"]
    assert lin["lo"] <= lin["estimate"] <= lin["hi"]
    # every pair: the same number against CAGE, and each reverse is the negative
    assert out["methods"]["linear"]["kl=0.3"]["hv_diff"]["cage kl=0.3"] == pytest.approx(lin)
    rev = out["methods"]["cage"]["kl=0.3"]["hv_diff"]["linear kl=0.3"]
    assert (rev["estimate"], rev["lo"], rev["hi"]) == pytest.approx(
        (-lin["estimate"], -lin["hi"], -lin["lo"]))
    plain = out["methods"]["plain"]["base"]["hv_diff"]
    assert {"cage kl=0.3", "linear kl=0.3", "args w=1.5", "bon n=2"} <= set(plain)
    assert "plain base" not in plain
    assert set(out["methods"]["bon"]) >= {"n=2"}
    assert "floor" in cage and cage["floor"] <= 1e9
    assert set(out["methods"]["linear"]["kl=0.3"]["paired_diff_to_cage"]) >= {"fluency", "floor"}
    assert out["judges"]["sentiment"].startswith("polarity")
    assert (tmp_path / "results.csv").read_text().count("\n") > 5
    assert list(tmp_path.glob("front_*.png"))
    assert res["methods"]["cage"]["kl=0.3"]["hypervolume"] == cage["hypervolume"]
    # another configuration may not reuse these cells
    with pytest.raises(ValueError, match="another run"):
        fr.run_frontier(_cfg(seeds=[1]), tmp_path, model=model, tokenizer=tok, progress=False)


def test_frontier_cli(tok, model, tmp_path, capsys):
    from cage_adapters.cli import main

    tok.save_pretrained(tmp_path / "m")
    model.save_pretrained(tmp_path / "m")
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS[:3]))
    code = main(["frontier", "--prompts", str(prompts), "--objectives", "sentiment,brevity",
                 "--methods", "cage,linear,bon,plain", "--target-kl", "0.15,0.5",
                 "--weights", "3", "--max-new-tokens", "4", "--top-k", "6", "--bon-pool", "4",
                 "--n-boot", "20", "--model", str(tmp_path / "m"), "--no-progress",
                 "--no-plots", "--out", str(tmp_path / "run")])
    assert code == 0
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    for meth in ("cage", "linear"):
        assert set(res["methods"][meth]) == {"kl=0.15", "kl=0.5"}
        for e in res["methods"][meth].values():
            assert np.isfinite(e["hypervolume"]) and e["mean_kl"] >= 0
    assert "kl=0.5" in res["methods"]["linear"]["kl=0.5"]["hv_diff_to_cage"]
    assert "HV-cage" in capsys.readouterr().out


def test_prompt_suites_are_shipped():
    from cage_adapters.evaluate.prompts import load_split, resolve_prompts

    dev = load_split("dev", with_category=True)
    held = load_split("heldout", with_category=True)
    assert len(dev) + len(held) >= 150
    assert not {r["prompt"] for r in dev} & {r["prompt"] for r in held}
    cats = {r["category"] for r in dev + held}
    assert cats == {"review", "advice", "explain", "instruct", "story"}
    assert resolve_prompts("heldout") == [r["prompt"] for r in held]
    with pytest.raises(FileNotFoundError, match="shipped split"):
        resolve_prompts("no-such-file.jsonl")


def test_best_of_n_and_args(tok, model):
    from cage_adapters.baselines import ArgsProcessor, best_of_n, best_of_n_kl

    scores = np.zeros((2, 3, 2))
    scores[0, 2] = [1.0, 0.0]  # group 0: candidate 2 best on objective 0
    scores[1, 1] = [0.0, 1.0]  # group 1: candidate 1 best on objective 1
    assert best_of_n(scores, [1, 0], 3).tolist() == [2, 0]
    assert best_of_n(scores, [0, 1], 3).tolist() == [0, 1]
    assert best_of_n(scores, [1, 0], 2).tolist() == [0, 0]  # only the first 2 candidates
    assert best_of_n_kl(1) == 0.0 and best_of_n_kl(4) == pytest.approx(np.log(4) - 0.75)
    # ARGS-greedy keeps exactly the candidate with the best log p0 + w * reward
    o = obj.SequenceObjective(lambda ts: [float(t.count("e")) for t in ts], tok, name="e",
                              normalize="none")
    proc = ArgsProcessor([o], [1.0], w=2.0, top_k=6)
    inp = tok(["The cafe was"], return_tensors="pt")
    with torch.no_grad():
        scores_ = model(**inp).logits[:, -1].float()
    out = proc(inp["input_ids"], scores_)
    rec = proc.trace[-1]
    cand = torch.as_tensor(rec.candidates[0])
    lp = torch.log_softmax(scores_, 1)[0, cand]
    r = torch.tensor([float(t.count("e")) for t in tok.batch_decode([[int(c)] for c in cand])])
    want = int(cand[torch.argmax(lp + 2.0 * r)])
    assert int(torch.isfinite(out[0]).sum()) == 1 and int(out[0].argmax()) == want


def test_summarize_dir_reads_finished_cells(tok, model, tmp_path):
    cfg = _cfg(methods=["cage", "plain"])
    res = fr.run_frontier(cfg, tmp_path, model=model, tokenizer=tok, progress=False,
                          plots=False)
    again = fr.summarize_dir(tmp_path, plots=False)
    assert again["methods"]["cage"]["kl=0.3"]["points"] == res["methods"]["cage"]["kl=0.3"][
        "points"]
    # a different weight grid is another run: its cells would not line up with these
    with pytest.raises(ValueError, match="another run"):
        fr.run_frontier(_cfg(methods=["cage", "plain"], weights=5), tmp_path, model=model,
                        tokenizer=tok, progress=False)


def test_merge_runs_over_disjoint_prompts(tok, model, tmp_path):
    a = _cfg(prompts=PROMPTS[:3], methods=["cage", "plain"])
    b = _cfg(prompts=PROMPTS[3:], methods=["cage", "plain"])
    fr.run_frontier(a, tmp_path / "a", model=model, tokenizer=tok, progress=False, plots=False)
    fr.run_frontier(b, tmp_path / "b", model=model, tokenizer=tok, progress=False, plots=False)
    res = fr.merge_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "ab", plots=False)
    assert res["config"]["prompts"] == PROMPTS
    cell = json.loads(next((tmp_path / "ab" / "cells").glob("cage*.json")).read_text())
    assert sorted({r["prompt"] for r in cell["rows"]}) == list(range(len(PROMPTS)))
    with pytest.raises(ValueError, match="differ"):
        c = _cfg(prompts=PROMPTS[:2], methods=["cage", "plain"], max_new_tokens=3)
        fr.run_frontier(c, tmp_path / "c", model=model, tokenizer=tok, progress=False,
                        plots=False)
        fr.merge_runs([tmp_path / "a", tmp_path / "c"], tmp_path / "ac")
