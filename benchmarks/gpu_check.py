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

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "adapters", ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

T0 = time.perf_counter()
QUICK = False  # --quick: the small cases only (a re-check that fits a short device lease)


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
    if QUICK:
        cases = [(32, 3, 1000)]
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


# -- 5. the per-step solve, every mode and backend -------------------------------------------
def solve_modes(ct, device: str, dry: bool) -> list[str]:
    """Solve time per mode (fixed beta, target KL) and backend at the decoding sizes, against
    a softmax of the same scores; CUDA events (device time) and wall time per call."""
    log("5. per-step solve time by mode and backend (float32 unless said)")
    lines = []
    cases = [(8, 20, 4), (64, 151936, 4)] if not dry else [(8, 20, 4), (4, 500, 4)]
    backends = ["triton", "torch"] if device.startswith("cuda") else ["native", "torch"]
    if QUICK:
        cases, backends = cases[:1], backends[:1]
    if dry:
        backends = ["native", "torch"]
    for B, n, m in cases:
        g = torch.Generator().manual_seed(B + n)
        logits = (3.0 * torch.randn(B, n, generator=g)).to(device)
        r = torch.randn(B, m, n, generator=g).to(device)
        t_soft = timed(lambda logits=logits: torch.softmax(logits, -1), device, repeats=50)
        for bk in backends:
            if bk == "torch" and n > 50000 and device.startswith("cuda"):
                reps = 3
            else:
                reps = 20
            for mode, kw in (("beta=1", {"beta": 1.0}), ("target KL 0.3", {"target_kl": 0.3})):
                try:
                    def fn(kw=kw, bk=bk, logits=logits, r=r):
                        return ct.solve_batch_kl(logits, r, backend=bk, **kw)

                    sol = fn()
                    t = timed(fn, device, repeats=reps)
                except Exception as exc:  # report and go on
                    log(f"   B={B} n={n} m={m} {bk} {mode}: FAILED {type(exc).__name__}: {exc}")
                    continue
                kl = "" if sol.kl is None else f", KL {float(sol.kl.mean()):.3f}"
                if bk == "triton":
                    try:
                        kl += f", kernel alone {device_ms(logits, r, kw):.4f} ms (device)"
                    except Exception as exc:  # report, do not stop the check
                        kl += f", kernel time FAILED ({type(exc).__name__}: {exc})"
                line = (
                    f"   B={B:2d} n={n:6d} m={m} {bk:6s} {mode:13s}: {1e3 * t:8.3f} ms = "
                    f"{t / t_soft:7.1f} x softmax ({1e3 * t_soft:.3f} ms), ok "
                    f"{int(sol.success.sum())}/{B}, max nit {int(sol.nit.max())}{kl}"
                )
                log(line)
                lines.append(line)
    return lines


def device_ms(logits, r, kw, reps: int = 50) -> float:
    """Device time (CUDA events) of the bare Triton launch that ``solve_batch_kl`` makes."""
    from cage_games.torch import _triton

    B = logits.shape[0]
    one = torch.ones(B, device=logits.device, dtype=logits.dtype)
    tol = torch.full_like(one, 1e-5)
    beta = one * kw.get("beta", 1.0)
    tgt = None if "target_kl" not in kw else one * kw["target_kl"]
    lg, u = logits.contiguous(), r.contiguous()

    def f():
        return _triton.solve(lg, u, beta, beta, None, tol, max_iter=100, scale_tol=True,
                             target_kl=tgt)  # fmt: skip

    return event_ms(f, reps)


def event_ms(fn, reps: int = 50) -> float:
    """Device time of ``fn`` in ms (CUDA events around ``reps`` calls, after a warm-up)."""
    fn()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(reps):
        fn()
    b.record()
    torch.cuda.synchronize()
    return a.elapsed_time(b) / reps


# -- 6. decoding: plain, linear mixing and CAGE on a random ~1B model -------------------------
PROMPTS = [
    "Write a short review of a cafe.", "Give me advice on learning to cook.",
    "Explain why the sky is blue.", "Describe a walk by the sea.",
    "How do I start running?", "Tell a short story about a lost key.",
    "Summarise the benefits of sleep.", "What should I pack for a weekend trip?",
]


def decode_compare(device: str, dry: bool, tok_dir: str | None) -> None:
    """Same prompts, seeds and candidates for every method; ms per generated token."""
    log("6. decoding through model.generate: plain / linear / CAGE (random Llama, 1B shape)")
    try:
        from cage_adapters.objectives import PromptedObjective
        from cage_adapters.processor import CageLogitsProcessor, LinearMixingProcessor
        from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, LogitsProcessorList
    except Exception as exc:
        log(f"   skipped: {type(exc).__name__}: {exc}")
        return
    if tok_dir is None:
        log("   skipped: no tokenizer directory (--tokenizer DIR)")
        return
    tok = AutoTokenizer.from_pretrained(tok_dir)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    cfg = dict(LLAMA_1B if not dry else TINY)
    cfg["vocab_size"] = len(tok)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    conf = LlamaConfig(**cfg, tie_word_embeddings=True, max_position_embeddings=4096)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(conf).to(dtype).eval()
    n_params = sum(p.numel() for p in model.parameters()) / 1e9
    msgs = [[{"role": "user", "content": p}] for p in PROMPTS]
    enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt",
                                  return_dict=True, padding=True).to(device)  # fmt: skip
    T = 48 if not dry else 6
    objs = lambda: [  # noqa: E731
        PromptedObjective("Be warm and positive.", tok, model, reuse_base=True),
        PromptedObjective("Be formal and concise.", tok, model, reuse_base=True),
    ]
    methods = {
        "plain": lambda: None,
        "linear, target KL 0.3": lambda: LinearMixingProcessor(objs(), [0.5, 0.5],
                                                                target_kl=0.3, top_k=20),
        "CAGE, beta=1": lambda: CageLogitsProcessor(objs(), [0.5, 0.5], beta=1.0, top_k=20),
        "CAGE, target KL 0.3": lambda: CageLogitsProcessor(objs(), [0.5, 0.5], target_kl=0.3,
                                                           top_k=20),
    }  # fmt: skip
    rows = []
    for name, make in methods.items():
        proc = make()
        kw = {"logits_processor": LogitsProcessorList([proc])} if proc is not None else {}
        times = []
        for rep in range(3 if not (dry or QUICK) else 2):
            if proc is not None:
                proc.reset() if hasattr(proc, "reset") else None
            torch.manual_seed(rep)
            sync(device)
            t = time.perf_counter()
            with torch.no_grad():
                model.generate(**enc, do_sample=True, top_k=0, max_new_tokens=T,
                               min_new_tokens=T, pad_token_id=tok.pad_token_id, **kw)  # fmt: skip
            sync(device)
            times.append((time.perf_counter() - t) / T)
        step = statistics.median(times[1:] if len(times) > 1 else times)
        extra = ""
        if proc is not None and proc.trace:
            tr = proc.trace
            solve = statistics.mean(s.solve_seconds for s in tr)
            reward = statistics.mean(s.reward_seconds for s in tr)
            kl = float(np.mean([s.kl[s.active].mean() for s in tr if s.active.any()]))
            fb = int(sum(int(s.fallback.sum()) for s in tr))
            extra = (f", solve {1e3 * solve:.2f} ms ({100 * solve / step:.1f}%), rewards "
                     f"{1e3 * reward:.2f} ms ({100 * reward / step:.0f}%), mean KL {kl:.3f}, "
                     f"fallback rows {fb}")  # fmt: skip
        rows.append((name, step))
        log(f"   {name:22s}: {1e3 * step:7.2f} ms per token{extra}")
    base = dict(rows)
    if "linear, target KL 0.3" in base and "CAGE, target KL 0.3" in base:
        ratio = base["CAGE, target KL 0.3"] / base["linear, target KL 0.3"]
        log(f"   CAGE target-KL / linear target-KL step: {ratio:.3f} "
            f"({n_params:.2f}B parameters, B={len(PROMPTS)}, {T} tokens, top-k 20)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="GPU check of cage_games.torch")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU")
    ap.add_argument("--tokenizer", default=None,
                    help="directory with a tokenizer's files (section 6; no weights needed)")
    ap.add_argument("--only", default=None, help="comma-separated sections to run (1-6)")
    ap.add_argument("--quick", action="store_true",
                    help="small cases only: B=8 k=20 timings, decoding, one agreement case")
    args = ap.parse_args(argv)
    global QUICK
    QUICK = args.quick
    dry = args.dry_run
    device = "cpu" if dry else args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: torch sees no CUDA device", file=sys.stderr)
        return 3
    ct = import_backend()
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU"
    log(f"torch {torch.__version__} on {name}")
    only = None if args.only is None else {int(s) for s in args.only.split(",")}
    run = lambda k: only is None or k in only  # noqa: E731
    if run(5):
        solve_modes(ct, device, dry)
    if run(6):
        decode_compare(device, dry, args.tokenizer)
    ok = check_agreement(ct, device, dry) if run(1) else True
    ok &= check_graph(ct, device, dry) if run(2) else True
    if run(3):
        benchmark(device, dry)
    t_step = decode_step(device, dry) if run(4) else None
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
