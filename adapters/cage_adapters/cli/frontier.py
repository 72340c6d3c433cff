"""``cage frontier``: every method, strength and weight on a prompt suite; fronts and intervals."""

from __future__ import annotations

import argparse
import sys
from typing import Any

_HELP = "evaluate CAGE against baselines: fronts, hypervolumes and bootstrap intervals"
_EPILOG = """\
example (the issue's bar; about an hour per 100 prompts on two CPU cores):
  cage frontier --prompts heldout --objectives sentiment,brevity \\
      --methods cage,linear,bon,plain --target-kl 0.15,0.5 --weights 5 --out runs/heldout

--prompts takes a .jsonl/.txt file or a shipped split: dev, heldout. Finished cells are kept in
OUT/cells and never recomputed: rerun the same command to resume. Methods: cage, linear,
cage-cap, linear-clip, args, args-sample, bon, plain. See docs/evaluation.rst.
"""


def _floats(text: str) -> list[float]:
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers, got {text!r}") from None
    if not vals or any(not v > 0 for v in vals):
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return vals


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers, got {text!r}") from None


def register(subparsers: Any) -> None:
    """Add the ``frontier`` sub-command."""
    p = subparsers.add_parser("frontier", help=_HELP, description=_HELP, epilog=_EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", required=True, help="prompt file (.jsonl or .txt), dev, heldout")
    p.add_argument("--limit", type=int, default=None, help="use the first N prompts only")
    p.add_argument("--objectives", default="sentiment,brevity",
                   help="2 or 3 registered objectives, comma-separated")
    p.add_argument("--methods", default="cage,linear,bon,plain")
    p.add_argument("--target-kl", type=_floats, default=[0.15, 0.5], metavar="NATS,...")
    p.add_argument("--beta", type=_floats, default=[], metavar="B,...",
                   help="fixed temperatures, in addition to --target-kl")
    p.add_argument("--weights", type=int, default=11, help="grid points per simplex edge")
    p.add_argument("--seeds", type=_ints, default=[0])
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--top-k", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--bon-n", type=int, default=4)
    p.add_argument("--bon-pool", type=int, default=8)
    p.add_argument("--cap", type=float, default=1.0,
                   help="caps of cage-cap / clips of linear-clip (units of the temperature)")
    p.add_argument("--args-w", type=float, default=1.5)
    p.add_argument("--reference", default=None)
    p.add_argument("--corrupt", default=None, metavar="NAME:RATE:SIZE")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--model", default=None, help="a local model folder (default SmolLM2)")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", required=True, help="output directory (resumable)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``cage frontier``; prints a summary table and writes OUT/results.json."""
    from cage_adapters.evaluate.frontier import FrontierConfig, run_frontier
    from cage_adapters.evaluate.prompts import resolve_prompts

    prompts = resolve_prompts(args.prompts)
    if args.limit:
        prompts = prompts[: args.limit]
    cfg = FrontierConfig(
        prompts=prompts, objectives=[o.strip() for o in args.objectives.split(",") if o.strip()],
        methods=[m.strip() for m in args.methods.split(",") if m.strip()],
        target_kl=args.target_kl, betas=args.beta, weights=args.weights, seeds=args.seeds,
        max_new_tokens=args.max_new_tokens, top_k=args.top_k, batch_size=args.batch_size,
        bon_n=args.bon_n, bon_pool=args.bon_pool, cap=args.cap, args_w=args.args_w,
        reference=args.reference, corrupt=args.corrupt, device=args.device, n_boot=args.n_boot)
    model = tok = None
    if args.model:
        from cage_adapters.models import load_model

        model, tok = load_model(args.model, device=args.device)
    res = run_frontier(cfg, args.out, model=model, tokenizer=tok,
                       progress=not args.no_progress, plots=not args.no_plots)
    print(format_table(res))
    print(f"results: {args.out}/results.json", file=sys.stderr)
    return 0


def format_table(res: dict[str, Any]) -> str:
    """One line per method and strength: hypervolume, its difference to CAGE, KL, quality."""
    lines = [f"{'method':<12} {'strength':<22} {'HV':>6} {'HV-cage [95% CI]':>32} "
             f"{'KL/tok':>7} {'fluency':>8} {'nonword':>8} {'tok/s':>7}"]
    for meth, by in res["methods"].items():
        for label, e in by.items():
            d = "; ".join(f"{k}: {v['estimate']:+.2f} [{v['lo']:+.2f},{v['hi']:+.2f}]"
                          for k, v in e["hv_diff_to_cage"].items())
            lines.append(f"{meth:<12} {label:<22} {e['hypervolume']:6.2f} {d:>32} "
                         f"{e['mean_kl']:7.3f} {e['fluency']:8.3f} {e['nonword']:8.3f} "
                         f"{e['tokens_per_s']:7.1f}")
    return "\n".join(lines)
