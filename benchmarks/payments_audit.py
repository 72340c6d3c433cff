"""Who paid for which token? The per-token accounting of CAGE vs linear mixing's tilts.

For each chosen token, ``trace.payments`` gives each objective's payment ``tau_i / beta`` (CAGE)
or its tilt above the row minimum (linear mixing). This script reports, over the tokens of a
few dev prompts at target KL 0.5 and weights (0.5, 0.5): the share of tokens that nobody paid
for, that exactly one objective paid for, and that every objective paid for.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/payments_audit.py --prompts 8
"""

from __future__ import annotations

import argparse

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--target-kl", type=float, default=0.5)
    args = p.parse_args(argv)

    import torch
    from cage_adapters import CageLogitsProcessor, LinearMixingProcessor, load_default_model
    from cage_adapters import objectives as obj
    from cage_adapters.decode import build_prompts
    from cage_adapters.evaluate.prompts import load_split
    from transformers import LogitsProcessorList

    model, tok = load_default_model(device="cpu")
    inputs = build_prompts(tok, load_split("dev")[: args.prompts])
    plen = inputs["input_ids"].shape[1]
    for cls in (CageLogitsProcessor, LinearMixingProcessor):
        proc = cls([obj.Sentiment(tok), obj.Brevity(tok)], [0.5, 0.5],
                   target_kl=args.target_kl)
        torch.manual_seed(0)
        out = model.generate(**inputs, logits_processor=LogitsProcessorList([proc]),
                             do_sample=True, top_k=0, top_p=1.0, temperature=1.0,
                             max_new_tokens=48, pad_token_id=tok.pad_token_id)
        paid = []
        for row in range(out.shape[0]):
            for e in proc.trace.payments(out, prompt_len=plen, row=row):
                if e["paid"] is not None:
                    paid.append([e["paid"][n] > 1e-9 for n in proc.names])
        a = np.asarray(paid)
        k = a.sum(1)
        print(f"{cls.kind:<7} tokens {len(a):4d}  nobody paid {np.mean(k == 0):.2f}  "
              f"one objective {np.mean(k == 1):.2f}  both {np.mean(k == 2):.2f}  "
              f"sentiment paid {a[:, 0].mean():.2f}  brevity paid {a[:, 1].mean():.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
