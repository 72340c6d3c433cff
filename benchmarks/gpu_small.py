# ruff: noqa: B023  (the timing closures run inside the loop that defines them)
"""Where the time of a small per-step solve goes on a GPU (B=8, k=20, m=4, float32).

Wall time of the public call, of the bare kernel launch (``_triton.solve``), and device time
(CUDA events) for 1, 2 and 4 warps per program; also B=64, n=151936. Run on a CUDA machine:
``python3 benchmarks/gpu_small.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check import event_ms as device_ms
from gpu_check import import_backend, timed


def wall(fn, reps=50):
    return 1e3 * timed(fn, "cuda", repeats=reps)


def main():
    ct = import_backend()
    from cage_games.torch import _triton

    dev = "cuda"
    for B, n, m in [(8, 20, 4), (64, 151936, 4)]:
        g = torch.Generator().manual_seed(0)
        logits = (3 * torch.randn(B, n, generator=g)).to(dev)
        u = torch.randn(B, m, n, generator=g).to(dev)
        lp = torch.log_softmax(logits, -1)
        one = torch.ones(B, device=dev)
        tol = torch.full((B,), 1e-5, device=dev)
        tgt = torch.full((B,), 0.3, device=dev)
        soft = wall(lambda: torch.softmax(logits, -1))
        print(f"B={B} n={n} m={m}: softmax wall {soft:.4f} ms", flush=True)
        for mode, kw in (("beta=1", {}), ("target 0.3", {"target_kl": tgt})):
            api_kw = {"beta": 1.0} if not kw else {"target_kl": 0.3}
            api = wall(lambda api_kw=api_kw: ct.solve_batch_kl(logits, u, backend="triton",
                                                               **api_kw))
            api_nc = wall(lambda api_kw=api_kw: ct.solve_batch_kl(
                logits, u, backend="triton", check_inputs=False, **api_kw))
            print(f"  {mode}: API wall {api:.4f} ms, unchecked {api_nc:.4f} ms", flush=True)
            for w in (1, 2, 4, 8):
                f = lambda w=w, kw=kw: _triton.solve(lp, u, one, one, None, tol, max_iter=100,  # noqa: E731
                                                     scale_tol=True, num_warps=w, **kw)
                try:
                    print(f"    warps={w}: launch wall {wall(f):.4f} ms, device "
                          f"{device_ms(f):.4f} ms", flush=True)
                except Exception as exc:
                    print(f"    warps={w}: FAILED {type(exc).__name__}: {exc}", flush=True)


if __name__ == "__main__":
    main()
