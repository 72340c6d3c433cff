"""Benchmark of the batched torch backend against a plain softmax of the same (B, n) tensor.

For every (B, n, m) in the grid it builds a batch of LLM-like games, times a tolerance-stopped
``cage_games.torch.solve_batch`` and a plain ``torch.softmax`` over the same (B, n) tensor in
the same run, and prints the medians, their ratio, the worst residual, the most iterations and
how many rows met the tolerance.

Games ("LLM-like"): ``v = beta * log_softmax(logits)`` with logits ``2.5 * N(0, 1)`` (the
spread of a language model's next-token logits over its vocabulary), ``beta = 1``, and ``m``
principals ``u_i = w_i * z_i`` with z-scored rewards ``z_i ~ N(0, 1)`` and weights
``w_i ~ U(0.5, 2)``, i.e. the inputs the LLM adapter builds. Every principal is active on a
sizeable share of the vocabulary: no shortcut through sparsity is possible here.

Usage::

    python benchmarks/torch_batch.py                 # full grid on the CPU
    python benchmarks/torch_batch.py --quick         # small grid (includes B=8, n=49152, m=4)
    python benchmarks/torch_batch.py --bar           # the 20x target case, 1 and default threads,
                                                     # this CPU's build, an AVX2-only build and
                                                     # plain torch, with the CPU's vector flags
    python benchmarks/torch_batch.py --device cuda   # on a GPU
    python benchmarks/torch_batch.py --threads 1     # pin torch's CPU threads
    python benchmarks/torch_batch.py --no-fused      # CPU without the fused kernel

Timings are wall-clock medians (``time.perf_counter``; CUDA is synchronised around each call).
``nit`` counts trial evaluations after the start (a solve evaluates ``nit + 1`` points). On the
CPU the fused kernel is compiled (or loaded from its cache) before anything is timed; ``--bar``
also reports how long a cold compile takes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cage_games.torch import solve_batch  # noqa: E402

FULL_GRID = [(B, n, m) for B in (1, 8, 64) for n in (32, 1024, 49152, 151936) for m in (2, 4)]
QUICK_GRID = [(1, 32, 2), (8, 1024, 4), (8, 49152, 2), (8, 49152, 4), (64, 1024, 4)]


def make_games(B: int, n: int, m: int, *, device: str, dtype: torch.dtype, seed: int = 0):
    """LLM-like games: ``(v, utilities, beta)`` on ``device`` (see the module docstring)."""
    g = torch.Generator().manual_seed(seed + 1000 * B + 10 * m + n)
    beta = 1.0
    logits = 2.5 * torch.randn(B, n, generator=g, dtype=torch.float64)
    v = beta * torch.log_softmax(logits, dim=-1)
    z = torch.randn(B, m, n, generator=g, dtype=torch.float64)
    z = (z - z.mean(-1, keepdim=True)) / z.std(-1, keepdim=True).clamp_min(1e-12)
    w = 0.5 + 1.5 * torch.rand(B, m, 1, generator=g, dtype=torch.float64)
    u = w * z
    return v.to(device=device, dtype=dtype), u.to(device=device, dtype=dtype), beta


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def median_time(fn, device: str, repeats: int, budget_s: float) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` calls (fewer if over budget)."""
    fn()  # warm-up (allocator, kernels)
    _sync(device)
    times = []
    start = time.perf_counter()
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget_s and len(times) >= 3:
            break
    return statistics.median(times)


def run_case(B, n, m, *, device, dtype, repeats, budget_s, fixed_iters=None):
    v, u, beta = make_games(B, n, m, device=device, dtype=dtype)
    t_soft = median_time(lambda: torch.softmax(v, dim=-1), device, max(repeats, 20), budget_s)
    kwargs = {} if fixed_iters is None else {"fixed_iters": fixed_iters, "check_inputs": False}
    sol = solve_batch(v, u, beta, **kwargs)
    t_solve = median_time(lambda: solve_batch(v, u, beta, **kwargs), device, repeats, budget_s)
    return {
        "B": B,
        "n": n,
        "m": m,
        "softmax_ms": 1e3 * t_soft,
        "solve_ms": 1e3 * t_solve,
        "ratio": t_solve / t_soft,
        "max_residual": float(sol.residual.max()),
        "max_nit": int(sol.nit.max()),
        "mean_nit": float(sol.nit.double().mean()),
        "success": f"{int(sol.success.sum())}/{B}",
    }


def compile_seconds() -> float | None:
    """Seconds to build the fused kernel for (float32, m=4) from a cold cache (subprocess)."""
    code = (
        "import time, torch\n"
        "from cage_games.torch import _native\n"
        "t = time.perf_counter()\n"
        "k = _native.kernels(torch.float32, 4, False)\n"
        "print(time.perf_counter() - t if k is not None else -1)\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "CAGE_CACHE": tmp, "PYTHONPATH": str(ROOT)}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
        )
    try:
        t = float(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
    return t if t >= 0 else None


VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512bw", "avx512vl")


def cpu_vector_extensions() -> str:
    """The CPU's model and vector extensions, from /proc/cpuinfo (Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        import platform

        return f"{platform.processor() or platform.machine()} (no /proc/cpuinfo)"
    model, flags = "?", set()
    for line in text.splitlines():
        if line.startswith("model name") and model == "?":
            model = line.split(":", 1)[1].strip()
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    have = [f for f in VECTOR_FLAGS if f in flags]
    return f"{model}; vector extensions: {' '.join(have) or 'none of ' + ' '.join(VECTOR_FLAGS)}"


# Other builds measured by --bar in subprocesses (same case, same machine, same run).
BAR_VARIANTS = [
    ("AVX2-only build (-march=x86-64-v3)", {"CAGE_GAMES_TORCH_MARCH": "x86-64-v3"}),
    ("plain torch (no fused kernel)", {"CAGE_GAMES_TORCH_FUSED": "0"}),
]


def bar_variant(label: str, env: dict, repeats: int, threads: int | None) -> None:
    """Run the bar case in a subprocess with ``env`` (a build variant) and print its rows."""
    cmd = [sys.executable, __file__, "--bar-case", "--repeats", str(repeats)]
    if threads:
        cmd += ["--threads", str(threads)]
    with tempfile.TemporaryDirectory() as tmp:
        full_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        if "CAGE_GAMES_TORCH_MARCH" in env:
            full_env["CAGE_CACHE"] = tmp  # its own cold cache (compile time not measured)
        out = subprocess.run(cmd, env=full_env, capture_output=True, text=True, check=False)
    print(f"  {label}:", flush=True)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("    threads")]
    if out.returncode != 0 or not lines:
        print(f"    failed: {out.stderr.strip()[-500:]}", flush=True)
    for ln in lines:
        print(ln, flush=True)


def bar_report(
    device: str, repeats: int, budget_s: float, sweep: bool = True, indent: str = "  "
) -> list[dict]:
    """The target case (B=8, n=49152, m=4, float32) with 1 thread and torch's default threads,
    alternated in the same run, then the evaluations per solve at three temperatures."""
    default_threads = torch.get_num_threads()
    rows = []
    settings = [1] if default_threads == 1 else [1, default_threads]
    rounds = {t: [] for t in settings}
    for _ in range(3):  # alternate the settings so that both see the same machine load
        for th in settings:
            torch.set_num_threads(th)
            rounds[th].append(
                run_case(8, 49152, 4, device=device, dtype=torch.float32, repeats=repeats,
                         budget_s=budget_s)
            )  # fmt: skip
    torch.set_num_threads(default_threads)
    for th in settings:
        rs = rounds[th]
        ratio = statistics.median(r["ratio"] for r in rs)
        row = {
            **rs[0],
            "threads": th,
            "softmax_ms": statistics.median(r["softmax_ms"] for r in rs),
            "solve_ms": statistics.median(r["solve_ms"] for r in rs),
            "ratio": ratio,
            "ratios": [round(r["ratio"], 1) for r in rs],
        }
        rows.append(row)
        print(
            f"{indent}threads {th}: softmax {row['softmax_ms']:.3f} ms, "
            f"solve {row['solve_ms']:.2f} ms, "
            f"ratio {ratio:.1f}x (rounds: {row['ratios']}), nit max {row['max_nit']} "
            f"mean {row['mean_nit']:.2f}, residual {row['max_residual']:.1e}, ok {row['success']}"
            f" -> {'meets' if ratio <= 20 else 'misses'} the 20x target",
            flush=True,
        )
    if not sweep:
        return rows
    # evaluations per solve against the temperature, in the KL (LLM) form v = beta log p0
    from cage_games.torch import solve_batch_kl

    logits, u, _ = make_games(8, 49152, 4, device=device, dtype=torch.float32)
    for beta in (0.05, 0.3, 1.0):
        sol = solve_batch_kl(logits, u, beta)
        print(
            f"  beta={beta}: nit per row {sol.nit.tolist()} (+1 start evaluation), max residual "
            f"{float(sol.residual.max()):.1e}, ok {int(sol.success.sum())}/8",
            flush=True,
        )
    return rows


def format_table(rows: list[dict]) -> str:
    head = "|    B |      n | m | softmax ms | solve ms | ratio | max residual | nit max/mean |"
    line = "|-----:|-------:|--:|-----------:|---------:|------:|-------------:|-------------:|"
    head, line = head + " ok |", line + "---:|"
    out = [head, line]
    for r in rows:
        out.append(
            f"| {r['B']:4d} | {r['n']:6d} | {r['m']} | {r['softmax_ms']:10.3f} | "
            f"{r['solve_ms']:8.2f} | {r['ratio']:5.1f} | {r['max_residual']:12.2e} | "
            f"{r['max_nit']:5d} / {r['mean_nit']:4.1f} | {r['success']} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    ap.add_argument("--quick", action="store_true", help="small grid, fewer repeats")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    ap.add_argument("--repeats", type=int, default=None, help="timed calls per case")
    ap.add_argument("--fixed-iters", type=int, default=None, help="time fixed_iters mode")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    ap.add_argument("--bar", action="store_true", help="only the 20x target case (see module doc)")
    ap.add_argument("--bar-case", action="store_true", help=argparse.SUPPRESS)  # (subprocess)
    ap.add_argument(
        "--no-fused", action="store_true", help="CPU: plain torch operations, no fused kernel"
    )
    args = ap.parse_args(argv)
    if args.no_fused:
        os.environ["CAGE_GAMES_TORCH_FUSED"] = "0"
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("CUDA is not available in this torch build / machine", file=sys.stderr)
        return 2
    dtype = getattr(torch, args.dtype)
    grid = QUICK_GRID if args.quick else FULL_GRID
    repeats = args.repeats or (5 if args.quick else 7)
    budget = 4.0 if args.quick else 10.0
    from cage_games.torch import _native

    fused = args.device == "cpu" and _native.kernels(dtype, 4, False) is not None
    print(
        f"torch {torch.__version__}, device {args.device}, dtype {args.dtype}, "
        f"threads {torch.get_num_threads()}, mode "
        f"{'tolerance' if args.fixed_iters is None else f'fixed_iters={args.fixed_iters}'}, "
        f"fused CPU kernel {'on' if fused else 'off'}",
        flush=True,
    )
    if args.bar_case:
        bar_report(args.device, args.repeats or 7, 6.0, sweep=False, indent="    ")
        return 0
    if args.bar:
        print(f"  CPU: {cpu_vector_extensions()}", flush=True)
        if fused:
            t = compile_seconds()
            print(f"  cold compile of the fused kernel (float32, m=4): {t:.2f} s", flush=True)
        print("  this CPU's build (-march=native):" if fused else "  this run:", flush=True)
        rows = bar_report(args.device, args.repeats or 7, 6.0, indent="    ")
        if args.device == "cpu" and not args.no_fused:
            for label, env in BAR_VARIANTS:
                bar_variant(label, env, args.repeats or 7, args.threads)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2))
        return 0
    rows = []
    for B, n, m in grid:
        row = run_case(
            B, n, m, device=args.device, dtype=dtype, repeats=repeats, budget_s=budget,
            fixed_iters=args.fixed_iters,
        )  # fmt: skip
        rows.append(row)
        print(
            f"  B={B:3d} n={n:6d} m={m}: softmax {row['softmax_ms']:.3f} ms, solve "
            f"{row['solve_ms']:.2f} ms, ratio {row['ratio']:.0f}x, residual "
            f"{row['max_residual']:.1e}, nit {row['max_nit']}, ok {row['success']}",
            flush=True,
        )
    print()
    print(format_table(rows))
    bar = [r for r in rows if (r["B"], r["n"], r["m"]) == (8, 49152, 4)]
    if bar and args.dtype == "float32":
        r = bar[0]
        verdict = "meets" if r["ratio"] <= 20 else "misses"
        print(
            f"\nB=8, n=49152, m=4, float32: solve / softmax = {r['ratio']:.1f}x "
            f"({verdict} the 20x target)"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    ok = all(math.isfinite(r["max_residual"]) for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
