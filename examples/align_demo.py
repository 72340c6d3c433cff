"""Aligned decoding demo: two conflicting objectives, a sweep of the trade-off weight.

Runs the default model (SmolLM2-135M-Instruct, offline) with two objectives that pull apart,
positive **sentiment** (VADER) and **brevity** (fewer words), at several weight settings
``(w, 1 - w)`` and a fixed strength (KL per token), and prints one response per setting and the
mean score of each objective over the prompts and seeds. Higher sentiment weight should raise
the sentiment score; higher brevity weight should shorten the texts.

Usage::

    python examples/align_demo.py                      # 3 settings, 2 prompts: about a minute
    python examples/align_demo.py --settings 5 --prompts 8 --seeds 2 --json sweep.json

With ``--settings 5`` it also prints Spearman's rank correlation between each objective's own
weight and its mean score (the monotonicity of the trade-off).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

PROMPTS = [
    "Write a short review of a cafe.",
    "Describe your last holiday.",
    "Tell me about your neighbour.",
    "What do you think of Mondays?",
    "Describe the weather today.",
    "Write a note about a new phone.",
    "Tell me about a film you saw.",
    "Describe a walk in the city.",
]


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    from scipy.stats import spearmanr

    rho = spearmanr(x, y).statistic
    return float("nan") if rho is None else float(rho)


def main(argv: list[str] | None = None) -> int:
    # Passive OpenMP waiting: with busy-waiting threads a loaded 2-core machine made this demo
    # ten times slower (see docs/aligned_decoding.rst). Set before torch is imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--objectives", default="sentiment,brevity",
                   help="two objective names, comma-separated (default sentiment,brevity)")
    p.add_argument("--settings", type=int, default=3, help="weight settings (default 3)")
    p.add_argument("--prompts", type=int, default=2, help="prompts used (max 8, default 2)")
    p.add_argument("--seeds", type=int, default=1, help="seeds per prompt (default 1)")
    p.add_argument("--target-kl", type=float, default=0.5, help="KL per token (default 0.5)")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--top-k", type=int, default=20)
    p.add_argument("--method", choices=["cage", "linear"], default="cage")
    p.add_argument("--json", metavar="PATH", help="write every response and score here")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.objectives.split(",")]
    if len(names) != 2 or args.settings < 2 or not 1 <= args.prompts <= len(PROMPTS):
        p.error("give two objectives, at least 2 settings and 1 to 8 prompts")

    from cage_adapters import align, load_default_model

    t0 = time.perf_counter()
    model, tok = load_default_model()
    prompts = PROMPTS[: args.prompts]
    weights = np.linspace(1.0, 0.0, args.settings)
    print(f"model SmolLM2-135M-Instruct, method {args.method}, KL {args.target_kl} nats/token, "
          f"{len(prompts)} prompt(s) x {args.seeds} seed(s), loaded in "
          f"{time.perf_counter() - t0:.1f} s\n")
    rows, dump = [], []
    for w in weights:
        w = float(w)
        spec = [(names[0], w), (names[1], 1.0 - w)]
        results = []
        for seed in range(args.seeds):
            results += align(model, tok, prompts, spec, method=args.method,
                             target_kl=args.target_kl, top_k=args.top_k,
                             max_new_tokens=args.max_new_tokens, seed=seed)
        means = [float(np.mean([r.scores[n] for r in results])) for n in names]
        kl = float(np.mean([r.mean_kl for r in results]))
        rows.append((w, *means, kl))
        first = results[0]
        print(f"--- {names[0]}={w:.2f}  {names[1]}={1 - w:.2f}")
        print(f"    {first.response[:300]!s}")
        print(f"    mean {names[0]} {means[0]:.3f} | mean {names[1]} {means[1]:.3f} | "
              f"KL/token {kl:.3f}\n", flush=True)
        dump.append({"weights": dict(spec), "mean_scores": dict(zip(names, means, strict=True)),
                     "mean_kl": kl, "results": [r.as_dict() | {"payments": None}
                                                for r in results]})
    ws = [r[0] for r in rows]
    print(f"{'w_' + names[0]:>12} {'mean ' + names[0]:>16} {'mean ' + names[1]:>16} {'KL':>7}")
    for w, a, b, kl in rows:
        print(f"{w:>12.2f} {a:>16.3f} {b:>16.3f} {kl:>7.3f}")
    if args.settings >= 3:
        rho0 = spearman(ws, [r[1] for r in rows])
        rho1 = spearman([1 - w for w in ws], [r[2] for r in rows])
        print(f"\nSpearman(own weight, mean score): {names[0]} {rho0:.2f}, {names[1]} {rho1:.2f}")
        dump.append({"spearman": {names[0]: rho0, names[1]: rho1}})
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dump, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
