"""Tables of a frontier run for the docs (reStructuredText), from ``results.json``.

Usage::

    python -m cage_adapters.evaluate.report runs/heldout/results.json
"""

from __future__ import annotations

import json
import sys
from typing import Any

__all__ = ["rst_tables"]


def _ci(d: dict[str, float] | None) -> str:
    if not d:
        return ""
    return f"{d['estimate']:+.2f} [{d['lo']:+.2f}, {d['hi']:+.2f}]"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    sep = "  ".join("=" * w for w in widths)
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))  # noqa: E731
    return "\n".join([sep, fmt(header), sep, *[fmt(r) for r in rows], sep])


def rst_tables(results: dict[str, Any]) -> str:
    """A summary table (one row per method and strength), a per-weight table and, when the
    results have them, the hypervolume differences of every pair (row minus column)."""
    names = results["config"]["objectives"]
    rows = []
    for meth, by in results["methods"].items():
        for label, e in by.items():
            diffs = "; ".join(f"vs {k}: {_ci(v)}" for k, v in e["hv_diff_to_cage"].items())
            sp = e.get("spearman") or {}
            rows.append([meth, label, f"{e['hypervolume']:.2f}", diffs or "(itself)",
                         f"{e['mean_kl']:.3f}", f"{e['fluency']:.3f}", f"{e['nonword']:.3f}",
                         f"{e['distinct_2']:.3f}", f"{e['finished']:.2f}",
                         " / ".join(f"{sp[n]:.2f}" for n in names) if sp else "",
                         f"{e['tokens_per_s']:.1f}"])
    out = [_table(["method", "strength", "HV", "HV - CAGE [95% CI]", "KL/token", "fluency",
                   "non-word", "distinct-2", "finished",
                   "Spearman (" + " / ".join(names) + ")", "tok/s"], rows)]
    rows = []
    for meth, by in results["methods"].items():
        for label, e in by.items():
            for w, raw, z in zip(e["weights"], e["points"], e["points_normalised"],
                                 strict=True):
                rows.append([meth, label, "(" + ", ".join(f"{x:.2g}" for x in w) + ")",
                             *[f"{x:.3f}" for x in raw], *[f"{x:+.2f}" for x in z]])
    out.append(_table(["method", "strength", "weights", *[f"judge {n}" for n in names],
                       *[f"z {n}" for n in names]], rows))
    labels = [f"{meth} {label}" for meth, by in results["methods"].items() for label in by]
    if any("hv_diff" in e for by in results["methods"].values() for e in by.values()):
        rows = []
        for meth, by in results["methods"].items():
            for label, e in by.items():
                d = e.get("hv_diff", {})
                rows.append([f"{meth} {label}",
                             *[_ci(d.get(col)) if col in d else "" for col in labels]])
        out.append(_table(["row - column", *labels], rows))
    return "\n\n".join(out)


def main(argv: list[str] | None = None) -> int:
    path = (argv if argv is not None else sys.argv[1:])[0]
    with open(path, encoding="utf-8") as f:
        print(rst_tables(json.load(f)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
