"""Decoding throughput on SmolLM2-135M-Instruct (CPU by default), measured in one run.

Variants, all sampling the same prompts with the same seed and ``max_new_tokens``:

``plain``            ``model.generate`` alone;
``cage-prompted``    CAGE with two prompted objectives (``"Be warm and positive."`` and
                     ``"Be very brief."``, log-ratios under the base model), top-k 20
                     (``--reuse-base``: the plain-context term read from the base scores);
``cage-scorers``     CAGE with two sequence scorers (sentiment and readability) at top-k 10;
``*-kl``             the same in target-KL mode (0.3 nats per token).

The two prompted objectives share the base model: they run **one** batched forward per step
(``objective forwards/step``; ``cage_adapters.objectives.SharedForwards``), of ``2B`` rows with
``--reuse-base`` and ``4B`` rows without.

For each variant: generated tokens per second (rows x steps / wall time), the time per decoding
step, and the share of the step time spent in the equilibrium solve (the solver calls in the
processor, from its trace) and in the objectives' rewards. Rows run to ``max_new_tokens`` (EOS
is suppressed with ``min_new_tokens``) so that every variant does the same number of steps.

Usage::

    python benchmarks/decode.py                  # batch 4, 32 tokens, 3 repeats
    python benchmarks/decode.py --batch 1 --tokens 64 --json benchmarks/results/decode.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

PROMPTS = ["Write a short review of a cafe.", "Describe your last holiday.",
           "Tell me about your neighbour.", "What do you think of Mondays?",
           "Describe the weather today.", "Write a note about a new phone.",
           "Tell me about a film you saw.", "Describe a walk in the city."]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--only", default=None, help="comma-separated variant names")
    p.add_argument("--reuse-base", action="store_true",
                   help="prompted objectives read log p(a|s) from the base model's scores")
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args(argv)

    import torch
    from cage_adapters import CageLogitsProcessor, load_default_model
    from cage_adapters import objectives as obj
    from cage_adapters.decode import build_prompts
    from transformers import LogitsProcessorList

    if args.threads:
        torch.set_num_threads(args.threads)
    model, tok = load_default_model(device=args.device)
    prompts = (PROMPTS * 8)[: args.batch]
    inputs = {k: v.to(args.device) for k, v in build_prompts(tok, prompts).items()}

    def prompted():
        return [obj.PromptedObjective("Be warm and positive.", tok, model, name="warm",
                                      reuse_base=args.reuse_base),
                obj.PromptedObjective("Be very brief.", tok, model, name="brief",
                                      reuse_base=args.reuse_base)]

    def scorers():
        return [obj.Sentiment(tok), obj.Readability(tok)]

    variants = {
        "plain": None,
        "cage-prompted": lambda: CageLogitsProcessor(prompted(), [0.5, 0.5], beta=1.0, top_k=20),
        "cage-scorers": lambda: CageLogitsProcessor(scorers(), [0.5, 0.5], beta=1.0, top_k=10),
        "cage-prompted-kl": lambda: CageLogitsProcessor(prompted(), [0.5, 0.5], target_kl=0.3,
                                                        top_k=20),
        "cage-scorers-kl": lambda: CageLogitsProcessor(scorers(), [0.5, 0.5], target_kl=0.3,
                                                       top_k=10),
    }
    if args.only:
        keep = set(args.only.split(","))
        variants = {k: v for k, v in variants.items() if k in keep}

    def once(make):
        proc = make() if make else None
        kw = {"logits_processor": LogitsProcessorList([proc])} if proc else {}
        torch.manual_seed(0)
        t = time.perf_counter()
        with torch.no_grad():
            out = model.generate(**inputs, do_sample=True, max_new_tokens=args.tokens,
                                 min_new_tokens=args.tokens, pad_token_id=tok.pad_token_id,
                                 **kw)
        wall = time.perf_counter() - t
        steps = out.shape[1] - inputs["input_ids"].shape[1]
        s = proc.trace.summary() if proc else {}
        if proc is not None:  # objectives sharing a model run one batched forward per step
            s["objective_forwards"] = proc._shared.forwards
        return wall, steps, s

    once(variants.get("plain"))  # warm-up (threads, allocator, kernels)
    results = {}
    for name, make in variants.items():
        walls, solve, reward, proc_s, steps, fwd = [], 0.0, 0.0, 0.0, 0, 0
        for _ in range(args.repeats):
            wall, n, s = once(make)
            walls.append(wall)
            steps = n
            solve += s.get("solve_seconds", 0.0)
            reward += s.get("reward_seconds", 0.0)
            proc_s += s.get("processor_seconds", 0.0)
            fwd += s.get("objective_forwards", 0)
        total = sum(walls)
        results[name] = {
            "tokens_per_s": args.batch * steps * args.repeats / total,
            "ms_per_step": 1000 * total / (steps * args.repeats),
            "solve_share": solve / total,
            "reward_share": reward / total,
            "processor_share": proc_s / total,
            "objective_forwards_per_step": fwd / (steps * args.repeats),
            "wall_s": walls,
        }
        r = results[name]
        print(f"{name:<18} {r['tokens_per_s']:8.1f} tok/s  {r['ms_per_step']:8.1f} ms/step  "
              f"solve {100 * r['solve_share']:5.1f} %  rewards {100 * r['reward_share']:5.1f} %  "
              f"processor {100 * r['processor_share']:5.1f} %  "
              f"objective forwards/step {r['objective_forwards_per_step']:.0f}", flush=True)
    meta = {"device": args.device, "threads": torch.get_num_threads(), "batch": args.batch,
            "tokens": args.tokens, "repeats": args.repeats, "torch": torch.__version__,
            "machine": platform.processor() or platform.machine()}
    print(json.dumps(meta))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"meta": meta, "results": results}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
