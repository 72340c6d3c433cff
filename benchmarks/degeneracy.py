"""Degeneracy check of every built-in objective on SmolLM2 (fluency and non-word rate).

Each objective alone steers CAGE at a high strength (target KL 1 nat per token); the texts are
compared with plain sampling on the same dev prompts and seed. See docs/evaluation.rst.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/degeneracy.py --prompts 16 --json out.json
"""

from __future__ import annotations

import argparse
import json


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=16, help="first N dev prompts")
    p.add_argument("--target-kl", type=float, default=1.0)
    p.add_argument("--objectives", default="sentiment,brevity,readability,non-offensive,"
                                           "similarity")
    p.add_argument("--reference", default="A calm, friendly and helpful answer.")
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args(argv)

    from cage_adapters import load_default_model
    from cage_adapters.evaluate.degeneracy import degeneracy_check
    from cage_adapters.evaluate.prompts import load_split

    model, tok = load_default_model(device="cpu")
    res = degeneracy_check(model, tok, args.objectives.split(","),
                           load_split("dev")[: args.prompts], target_kl=args.target_kl,
                           reference=args.reference)
    print(f"{'objective':<15} {'fluency':>8} {'nonword':>8} {'finished':>8} {'tokens':>7} "
          f"{'KL/tok':>7}  example")
    for name, r in res.items():
        print(f"{name:<15} {r['fluency']:8.3f} {r['nonword']:8.3f} {r['finished']:8.2f} "
              f"{r['tokens']:7.1f} {r['mean_kl']:7.3f}  {r['text'][:60]!r}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
