"""The logits processors' own work per decoding step: torch operations, host transfers, time.

On a GPU every torch operation is at least one kernel launch (5-10 us) and every transfer to
the host a synchronisation, so the number of operations a processor runs per step, not their
arithmetic, sets its share of a decoding step once the solve itself is one fused kernel. This
script counts them on the CPU (the torch profiler's top-level ``aten::`` operations, split into
those of the solve and of the rest, and the copies to the host) for one step of
:class:`~cage_adapters.CageLogitsProcessor` (fixed beta and target KL) and
:class:`~cage_adapters.LinearMixingProcessor` (target KL), on a tiny random model, with two
token-level objectives whose rewards cost nothing. Ratios are to linear mixing in target-KL
mode, measured in the same process. (Copies to the host are not visible on the CPU, where
``.cpu()`` is free; the step record is copied in one transfer by construction.)

Usage::

    python benchmarks/processor_overhead.py --batch 8 --top-k 20
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--top-k", type=int, default=20)
    p.add_argument("--repeats", type=int, default=50)
    args = p.parse_args(argv)

    import torch
    from torch.profiler import ProfilerActivity, profile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from adapters_fixtures import tiny_tokenizer
    from cage_adapters import CageLogitsProcessor, LinearMixingProcessor
    from cage_adapters import objectives as obj

    class Cheap(obj.Objective):
        def rewards(self, ctx):
            return (ctx.candidates % 7).to(torch.float32)

    tok = tiny_tokenizer()
    B = args.batch
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, len(tok), (B, 6), generator=gen)
    scores = torch.randn(B, len(tok), generator=gen)

    def step_ops(fn):
        with profile(activities=[ProfilerActivity.CPU], with_stack=True) as prof:
            fn()
        top = [e for e in prof.events() if e.name.startswith("aten::")
               and not _under_aten(e)]
        solve = sum(1 for e in top if _under(e, "cage_games"))
        return len(top), solve

    def timed(fn):
        fn()
        t0 = time.perf_counter()
        for _ in range(args.repeats):
            fn()
        return (time.perf_counter() - t0) / args.repeats * 1e3

    rows = []
    for label, cls, kw in (("cage beta=1", CageLogitsProcessor, {"beta": 1.0}),
                           ("cage target-KL 0.3", CageLogitsProcessor, {"target_kl": 0.3}),
                           ("linear target-KL 0.3", LinearMixingProcessor, {"target_kl": 0.3})):
        proc = cls([Cheap(tok, "a"), Cheap(tok, "b")], [1.0, 0.5], top_k=args.top_k, **kw)
        proc(ids, scores)  # the first step of a generation
        nxt = torch.cat([ids, ids[:, :1]], dim=1)
        proc(nxt, scores)

        def call(proc=proc, nxt=nxt):  # a fresh generation: its first step and one more
            proc.reset()
            proc(ids, scores)
            proc(nxt, scores)

        total, solve = step_ops(lambda proc=proc, nxt=nxt: proc(nxt, scores))
        ms = timed(call) / 2
        rows.append((label, total, solve, total - solve, ms))
    base_ops, base_ms = rows[-1][1], rows[-1][4]
    print(f"B={B}, k={args.top_k}, m=2, CPU ({torch.get_num_threads()} threads)")
    print(f"{'processor':<22} {'ops/step':>8} {'in solve':>8} {'rest':>6} {'ms/step':>8} "
          f"{'ops x linear':>12} {'ms x linear':>11}")
    for label, total, solve, rest, ms in rows:
        print(f"{label:<22} {total:>8} {solve:>8} {rest:>6} {ms:>8.2f} "
              f"{total / base_ops:>12.2f} {ms / base_ms:>11.2f}")
    return 0


def _under_aten(e) -> bool:
    q = e.cpu_parent
    while q is not None:
        if q.name.startswith("aten::"):
            return True
        q = q.cpu_parent
    return False


def _under(e, needle: str) -> bool:
    q = e.cpu_parent
    while q is not None:
        if needle in q.name:
            return True
        q = q.cpu_parent
    return False


if __name__ == "__main__":
    sys.exit(main())
