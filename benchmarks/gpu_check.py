"""GPU check of the batched torch backend (run through ``bash benchmarks/gpu_check.sh``).

On a machine with a CUDA device and torch preinstalled (nothing else is needed: if the core's
own dependencies are missing, only ``cage_games.torch`` is loaded), it

1. solves random games on the CPU in float64 and on the GPU in float64 and float32, with
   masks and caps, and reports the largest policy differences (targets: 1e-9 and 1e-5);
2. captures a ``fixed_iters`` solve in a CUDA graph (possible only without host reads) and
   checks that the replay gives the eager answer;
3. prints the benchmark table of ``benchmarks/torch_batch.py`` on the GPU;
4. times one decoding step (one forward pass with KV cache, batch 8) of a randomly
   initialised Llama-style model of about 1.2B parameters (the Llama-3.2-1B shape; no
   weights are downloaded: transformers if installed, else a minimal pure-torch decoder of
   the same shape), next to the solver on the same batch, for scale.

``--dry-run`` runs every section on the CPU with tiny sizes (to test the script itself).
The whole run is kept under about five minutes.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import math
import statistics
import sys
import time
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

T0 = time.perf_counter()


def log(msg: str = "") -> None:
    print(f"[{time.perf_counter() - T0:6.1f}s] {msg}", flush=True)


def import_backend():
    """``cage_games.torch``; if the core's dependencies are missing, load it on its own."""
    try:
        return importlib.import_module("cage_games.torch")
    except ImportError as exc:
        log(f"cage_games core not importable ({exc}); loading cage_games.torch alone")
        for name in [k for k in sys.modules if k == "cage_games" or k.startswith("cage_games.")]:
            del sys.modules[name]
        stub = types.ModuleType("cage_games")
        stub.__path__ = [str(ROOT / "cage_games")]  # a namespace: __init__.py is not run
        sys.modules["cage_games"] = stub
        return importlib.import_module("cage_games.torch")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str, repeats: int = 20) -> float:
    fn()
    sync(device)
    ts = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


# -- 1. agreement ----------------------------------------------------------------------------
def random_games(B, m, n, seed, masked, capped):
    g = torch.Generator().manual_seed(seed)
    v = 2.0 * torch.randn(B, n, generator=g, dtype=torch.float64)
    u = torch.randn(B, m, n, generator=g, dtype=torch.float64) * (
        0.5 + 2.5 * torch.rand(B, m, 1, generator=g, dtype=torch.float64)
    )
    beta = 0.3 + 1.7 * torch.rand(B, generator=g, dtype=torch.float64)
    mask = None
    if masked:
        mask = torch.rand(B, n, generator=g) < 0.7
        mask[:, 0] = True
    caps = None
    if capped:
        caps = torch.full((B, m), math.inf, dtype=torch.float64)
        caps[:, 0] = 0.5
    return v, u, beta, mask, caps


def check_agreement(ct, device: str, dry: bool) -> bool:
    log("1. agreement: CPU float64 vs device float64 / float32")
    cases = [(32, 1, 16), (32, 3, 1000), (16, 8, 50000)] if not dry else [(4, 2, 10), (4, 3, 50)]
    ok = True
    for B, m, n in cases:
        for masked, capped in [(False, False), (True, False), (False, True)]:
            v, u, beta, mask, caps = random_games(B, m, n, 7 * n + m, masked, capped)
            ref = ct.solve_batch(v, u, beta, mask, caps, max_iter=300)
            worst = {}
            for dt in (torch.float64, torch.float32):
                to = lambda x, dt=dt: None if x is None else x.to(device, dt)  # noqa: E731
                sol = ct.solve_batch(
                    to(v), to(u), to(beta), None if mask is None else mask.to(device), to(caps),
                    max_iter=300,
                )  # fmt: skip
                diff = (sol.policy.double().cpu() - ref.policy).abs().max().item()
                worst[str(dt)[6:]] = (diff, sol.residual.max().item(), bool(sol.success.all()))
            f64, f32 = worst["float64"], worst["float32"]
            good = ref.success.all().item() and f64[0] <= 1e-9 and f32[0] <= 1e-5
            ok &= bool(good)
            log(
                f"   B={B:2d} m={m} n={n:5d} mask={masked:d} caps={capped:d}: "
                f"|dpi| f64 {f64[0]:.1e} (res {f64[1]:.1e}), f32 {f32[0]:.1e} "
                f"(res {f32[1]:.1e}) {'ok' if good else 'MISMATCH'}"
            )
    return ok


# -- 2. CUDA graph ---------------------------------------------------------------------------
def check_graph(ct, device: str, dry: bool) -> bool:
    log("2. fixed_iters solve captured in a CUDA graph")
    if not device.startswith("cuda"):
        log("   skipped (needs CUDA)")
        return True
    B, m, n, K = 8, 4, 49152, 12
    v, u, beta, _, _ = random_games(B, m, n, 3, False, False)
    v, u = v.to(device, torch.float32), u.to(device, torch.float32)
    beta = beta.to(device, torch.float32)
    kw = {"fixed_iters": K, "check_inputs": False}
    eager = ct.solve_batch(v, u, beta, **kw)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):  # warm-up on a side stream, as the CUDA-graph docs ask
        for _ in range(2):
            ct.solve_batch(v, u, beta, **kw)
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            out = ct.solve_batch(v, u, beta, **kw)
    except Exception as exc:  # report, do not crash the rest of the check
        log(f"   capture FAILED: {type(exc).__name__}: {exc}")
        return False
    graph.replay()
    torch.cuda.synchronize()
    diff = (out.log_policy.exp() - eager.policy).abs().max().item()
    t_graph = timed(graph.replay, device)
    t_eager = timed(lambda: ct.solve_batch(v, u, beta, **kw), device)
    t_tol = timed(lambda: ct.solve_batch(v, u, beta), device)
    log(
        f"   B={B} n={n} m={m} K={K}: replay {1e3 * t_graph:.3f} ms, eager fixed "
        f"{1e3 * t_eager:.3f} ms, eager tolerance-stopped {1e3 * t_tol:.3f} ms; "
        f"|dpi| replay vs eager {diff:.1e}, rows converged {int(out.success.sum())}/{B}"
    )
    return diff <= 1e-5


# -- 3. benchmark table ----------------------------------------------------------------------
def benchmark(device: str, dry: bool) -> None:
    log("3. benchmark table (float32, tolerance-stopped)")
    import torch_batch as tb

    grid = tb.FULL_GRID if not dry else [(1, 32, 2), (8, 1024, 4)]
    rows = []
    for B, n, m in grid:
        if time.perf_counter() - T0 > 200:
            log("   time budget reached; table truncated")
            break
        rows.append(
            tb.run_case(B, n, m, device=device, dtype=torch.float32, repeats=5, budget_s=2.0)
        )
    print(tb.format_table(rows), flush=True)


# -- 4. one decoding step of a ~1B model ------------------------------------------------------
LLAMA_1B = {
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
}
TINY = {**LLAMA_1B, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000}  # fmt: skip


class _MiniDecoder(torch.nn.Module):
    """A Llama-shaped decoder (RMSNorm, GQA attention with KV cache, SwiGLU), random weights."""

    def __init__(self, c: dict, max_len: int, batch: int, dtype, device):
        super().__init__()
        h, f, L = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
        self.nh, self.nkv = c["num_attention_heads"], c["num_key_value_heads"]
        self.hd = h // self.nh
        kw = {"dtype": dtype, "device": device}
        self.emb = torch.nn.Embedding(c["vocab_size"], h, **kw)
        self.layers = torch.nn.ModuleList()
        for _ in range(L):
            layer = torch.nn.ModuleDict({
                "q": torch.nn.Linear(h, h, bias=False, **kw),
                "k": torch.nn.Linear(h, self.nkv * self.hd, bias=False, **kw),
                "v": torch.nn.Linear(h, self.nkv * self.hd, bias=False, **kw),
                "o": torch.nn.Linear(h, h, bias=False, **kw),
                "g": torch.nn.Linear(h, f, bias=False, **kw),
                "u": torch.nn.Linear(h, f, bias=False, **kw),
                "d": torch.nn.Linear(f, h, bias=False, **kw),
            })  # fmt: skip
            self.layers.append(layer)
        shape = (L, batch, self.nkv, max_len, self.hd)
        self.kc = torch.zeros(shape, **kw)
        self.vc = torch.zeros(shape, **kw)

    @staticmethod
    def _norm(x):
        return x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-5).to(x.dtype)

    def forward(self, ids, pos: int):
        x = self.emb(ids)
        B, T, _ = x.shape
        for i, ly in enumerate(self.layers):
            y = self._norm(x)
            q = ly["q"](y).view(B, T, self.nh, self.hd).transpose(1, 2)
            k = ly["k"](y).view(B, T, self.nkv, self.hd).transpose(1, 2)
            vv = ly["v"](y).view(B, T, self.nkv, self.hd).transpose(1, 2)
            self.kc[i, :, :, pos : pos + T] = k
            self.vc[i, :, :, pos : pos + T] = vv
            kk = self.kc[i, :, :, : pos + T].repeat_interleave(self.nh // self.nkv, 1)
            vk = self.vc[i, :, :, : pos + T].repeat_interleave(self.nh // self.nkv, 1)
            a = torch.nn.functional.scaled_dot_product_attention(q, kk, vk, is_causal=T > 1)
            x = x + ly["o"](a.transpose(1, 2).reshape(B, T, -1))
            y = self._norm(x)
            x = x + ly["d"](torch.nn.functional.silu(ly["g"](y)) * ly["u"](y))
        return self._norm(x)[:, -1] @ self.emb.weight.T  # tied output head


def decode_step(device: str, dry: bool) -> float | None:
    log("4. one decoding step (batch 8, KV cache) of a random Llama-3.2-1B-shaped model")
    cfg = LLAMA_1B if not dry else TINY
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    B, prompt = 8, 128
    torch.manual_seed(0)
    ids = torch.randint(0, cfg["vocab_size"], (B, prompt), device=device)
    nxt = torch.randint(0, cfg["vocab_size"], (B, 1), device=device)
    try:
        import transformers
        from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

        conf = LlamaConfig(**cfg, tie_word_embeddings=True, max_position_embeddings=4096)
        with torch.device(device):
            model = LlamaForCausalLM(conf).to(dtype).eval()
        n_params = sum(p.numel() for p in model.parameters())
        key = (
            "cache"
            if "cache" in inspect.signature(model.forward).parameters
            else ("past_key_values")
        )
        with torch.no_grad():
            cache = DynamicCache()
            out = model(input_ids=ids, use_cache=True, **{key: cache})
            cache = getattr(out, "past_key_values", None) or getattr(out, "cache", None) or cache

            def step():  # the cache grows by one token per call (128 -> 149): negligible
                model(input_ids=nxt, use_cache=True, **{key: cache})

            t = timed(step, device, repeats=20)
        which = f"transformers {transformers.__version__} LlamaForCausalLM"
    except Exception as exc:  # no transformers, or an API difference: same shape by hand
        log(f"   transformers path unavailable ({type(exc).__name__}: {exc}); minimal decoder")
        model = _MiniDecoder(cfg, prompt + 1, B, dtype, device).eval()
        n_params = sum(p.numel() for p in model.parameters())
        with torch.no_grad():
            model(ids, 0)
            t = timed(lambda: model(nxt, prompt), device, repeats=20)
        which = "minimal pure-torch decoder"
    log(f"   {which}, {n_params / 1e9:.2f}B parameters, {dtype}: {1e3 * t:.2f} ms per step")
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="GPU check of cage_games.torch")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU")
    args = ap.parse_args(argv)
    dry = args.dry_run
    device = "cpu" if dry else args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: torch sees no CUDA device", file=sys.stderr)
        return 3
    ct = import_backend()
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU"
    log(f"torch {torch.__version__} on {name}")
    ok = check_agreement(ct, device, dry)
    ok &= check_graph(ct, device, dry)
    benchmark(device, dry)
    t_step = decode_step(device, dry)
    if device.startswith("cuda"):
        torch.cuda.empty_cache()  # the model is gone: give its memory back before timing
    if t_step is not None:
        import torch_batch as tb

        for n in (49152, 151936) if not dry else (1000,):
            r = tb.run_case(8, n, 4, device=device, dtype=torch.float32, repeats=10, budget_s=3)
            log(
                f"   solver B=8 n={n} m=4 (float32, tolerance-stopped): {r['solve_ms']:.3f} ms "
                f"= {r['solve_ms'] / (1e3 * t_step):.2f} x one decoding step"
            )
    log("all agreement checks passed" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
