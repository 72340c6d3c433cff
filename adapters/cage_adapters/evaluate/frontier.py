"""The frontier harness: every method, strength and weight on the same prompts, seeds and model.

A *cell* is one (method, strength, weight) point: every prompt x seed decoded by that method.
Each finished cell is written to ``DIR/cells/KEY.json`` at once, so an interrupted run resumes
where it stopped (finished cells are read back, never recomputed). :func:`summarize` turns the
cells into ``DIR/results.json`` (and ``results.csv``, ``front_*.png``).

Methods (:data:`METHODS`, data)
    ``cage``, ``linear``: the equilibrium and linear mixing, at each strength (target KL per
    token, sequence budget; or a fixed beta). ``cage-cap`` / ``linear-clip``: the same with
    bounded payments / clipped tilts (``--cap``). ``args`` / ``args-sample``: ARGS greedy /
    stochastic at its own guidance weight. ``bon``: best-of-N of plain samples on the weighted
    sequence scores, at ``N = --bon-n`` and at N matched to CAGE's wall clock. ``plain``: the
    unguided base model (top-k sampling), also the normalisation of every axis.

Same for every method: model, prompts, seeds (one torch seed per batch and seed, so that the
plain sample is the first of the best-of-N pool), candidates (the base top-k) and the strength.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cage_adapters.evaluate.judges import distinct_n, judge_for, nonword_rate
from cage_adapters.evaluate.metrics import (
    bootstrap_diff,
    fluency,
    hypervolume,
    pareto_front,
    spearman,
)

__all__ = ["METHODS", "FrontierConfig", "Method", "corrupted", "load_prompts", "merge_runs",
           "run_frontier", "summarize", "summarize_dir", "weight_grid"]


@dataclass(frozen=True)
class Method:
    """A decoding method of the harness.

    Attributes
    ----------
    name : str
    kind : {"steer", "fixed", "pool"}
        ``steer``: a logits processor at each strength of the grid; ``fixed``: a processor with
        its own strength (ARGS' weight); ``pool``: derived from the plain samples.
    build : callable or None
        ``build(objectives, weights, strength, config) -> LogitsProcessor``.
    greedy : bool
        Decode greedily (ARGS-greedy) instead of sampling.
    """

    name: str
    kind: str
    build: Callable[..., Any] | None = None
    greedy: bool = False


def _cage(objs: Any, w: Any, strength: dict[str, float], cfg: FrontierConfig,
          capped: bool = False) -> Any:
    from cage_adapters.processor import CageLogitsProcessor

    return CageLogitsProcessor(objs, w, top_k=cfg.top_k, caps=cfg.cap if capped else None,
                               **strength)


def _linear(objs: Any, w: Any, strength: dict[str, float], cfg: FrontierConfig,
            clipped: bool = False) -> Any:
    from cage_adapters.processor import LinearMixingProcessor

    return LinearMixingProcessor(objs, w, top_k=cfg.top_k, clip=cfg.cap if clipped else None,
                                 **strength)


def _args(objs: Any, w: Any, strength: dict[str, float], cfg: FrontierConfig,
          greedy: bool = True) -> Any:
    from cage_adapters.baselines import ArgsProcessor

    return ArgsProcessor(objs, w, w=cfg.args_w, greedy=greedy, top_k=cfg.top_k)


METHODS: dict[str, Method] = {
    "cage": Method("cage", "steer", _cage),
    "linear": Method("linear", "steer", _linear),
    "cage-cap": Method("cage-cap", "steer", lambda *a: _cage(*a, capped=True)),
    "linear-clip": Method("linear-clip", "steer", lambda *a: _linear(*a, clipped=True)),
    "args": Method("args", "fixed", _args, greedy=True),
    "args-sample": Method("args-sample", "fixed", lambda *a: _args(*a, greedy=False)),
    "bon": Method("bon", "pool"),
    "plain": Method("plain", "pool"),
}


_STEER_FAMILY = ("cage", "linear", "cage-cap", "linear-clip")  # compared at the same strength


@dataclass
class FrontierConfig:
    """What a frontier run decodes (every field is recorded in ``results.json``).

    Attributes
    ----------
    prompts : list of str
    objectives : list of str
        Registry names (:func:`cage_adapters.objectives.available`), 2 or 3.
    methods : list of str
        Keys of :data:`METHODS`.
    target_kl : list of float
        Strengths as KL per token (sequence budget), for the ``steer`` methods.
    betas : list of float
        Strengths as fixed temperatures (optional, in addition).
    weights : int
        Grid points per edge of the weight simplex (two objectives: ``weights`` points from
        (1, 0) to (0, 1)).
    seeds : list of int
    max_new_tokens, top_k, batch_size : int
    bon_n : int
        N of best-of-N (a second N matched to CAGE's wall clock is also reported).
    bon_pool : int
        Plain samples per prompt and seed kept for best-of-N (the largest N available).
    cap : float
        Caps (``cage-cap``) and clips (``linear-clip``), in units of the temperature.
    args_w : float
        ARGS' guidance weight.
    reference : str, optional
        Reference text of ``similarity``.
    corrupt : str, optional
        ``"NAME:RATE:SIZE"``: objective NAME gets ``+SIZE`` standard deviations of reward on a
        fixed random set of trigger tokens (a fraction RATE of the vocabulary), for the
        robustness experiment; the judges still score the uncorrupted objective.
    device : str
    n_boot : int
    """

    prompts: list[str]
    objectives: list[str] = field(default_factory=lambda: ["sentiment", "brevity"])
    methods: list[str] = field(default_factory=lambda: ["cage", "linear", "bon", "plain"])
    target_kl: list[float] = field(default_factory=lambda: [0.15, 0.5])
    betas: list[float] = field(default_factory=list)
    weights: int = 11
    seeds: list[int] = field(default_factory=lambda: [0])
    max_new_tokens: int = 48
    top_k: int = 20
    batch_size: int = 8
    bon_n: int = 4
    bon_pool: int = 8
    cap: float = 1.0
    args_w: float = 1.5
    reference: str | None = None
    corrupt: str | None = None
    device: str = "cpu"
    n_boot: int = 1000

    def __post_init__(self) -> None:
        if not self.prompts:
            raise ValueError("no prompts: give at least one")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown methods {unknown}; known: {', '.join(METHODS)}")
        if not 2 <= len(self.objectives) <= 3:
            raise ValueError(f"give 2 or 3 objectives, got {self.objectives}")
        if self.weights < 2:
            raise ValueError("weights must be >= 2 grid points")
        if any(m in METHODS and METHODS[m].kind == "steer" for m in self.methods) and not (
                self.target_kl or self.betas):
            raise ValueError("give at least one strength (target_kl or betas)")
        if self.bon_pool < self.bon_n:
            self.bon_pool = self.bon_n

    def fingerprint(self) -> str:
        """Hash of what the cells depend on (prompts, seeds, model settings)."""
        d = {k: v for k, v in asdict(self).items() if k not in ("methods", "target_kl", "betas",
                                                                 "n_boot", "device")}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def weight_grid(m: int, n: int) -> list[tuple[float, ...]]:
    """Weights on the simplex with ``n`` points per edge (m = 2: (1, 0) ... (0, 1))."""
    if m == 2:
        return [(round(1 - t, 6), round(t, 6)) for t in np.linspace(0, 1, n)]
    out = []
    k = n - 1
    for i in range(k, -1, -1):
        for j in range(k - i, -1, -1):
            out.append(tuple(round(x / k, 6) for x in (i, j, k - i - j)))
    return out


def load_prompts(path: str | os.PathLike[str]) -> list[str]:
    """Prompts from a ``.jsonl`` file (``{"prompt": ...}`` per line) or a text file."""
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    if p.suffix == ".jsonl":
        return [json.loads(line)["prompt"] for line in text.splitlines() if line.strip()]
    return [line.strip() for line in text.splitlines() if line.strip()]


def _strengths(cfg: FrontierConfig) -> list[tuple[str, dict[str, float]]]:
    return ([(f"kl={t:g}", {"target_kl": float(t)}) for t in cfg.target_kl]
            + [(f"beta={b:g}", {"beta": float(b)}) for b in cfg.betas])


def _key(*parts: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", "__".join(str(p) for p in parts))


def corrupted(base: Any, rate: float, size: float, vocab: int, seed: int = 1234) -> Any:
    """``base`` with ``+size`` row standard deviations of reward on fixed trigger tokens.

    The trigger tokens are a random fraction ``rate`` of the vocabulary (fixed by ``seed``):
    a reward model that is wrong, or adversarial, on a few tokens. ``score`` stays the base's.
    """
    import torch

    from cage_adapters.objectives import Objective

    trig = torch.as_tensor(np.random.default_rng(seed).random(vocab) < rate)

    class Corrupted(Objective):
        def __init__(self) -> None:
            super().__init__(base.tokenizer, base.name, base.normalize)
            self.base = base
            self.triggers = trig

        def begin(self, ctx: Any) -> None:
            base.begin(ctx)

        def rewards(self, ctx: Any) -> Any:
            r = torch.as_tensor(base.rewards(ctx)).float()
            mk = ctx.cand_mask.to(r.device)
            n = mk.sum(1, keepdim=True).clamp_min(1)
            mean = (r * mk).sum(1, keepdim=True) / n
            sd = torch.sqrt((((r - mean) * mk) ** 2).sum(1, keepdim=True) / n) + 1e-3
            hit = self.triggers.to(r.device)[ctx.candidates.clamp(0, vocab - 1)]
            return r + size * sd * hit

        def score(self, texts: Sequence[str]) -> Any:
            return base.score(texts)

    return Corrupted()


class _Runner:
    def __init__(self, cfg: FrontierConfig, model: Any, tok: Any) -> None:
        import torch

        from cage_adapters.decode import build_prompts
        from cage_adapters.objectives import make_objective

        self.cfg, self.model, self.tok = cfg, model, tok
        self.torch = torch
        self.objs = [make_objective(n, tok, model=model, reference=cfg.reference)
                     for n in cfg.objectives]
        if cfg.corrupt:
            name, rate, size = cfg.corrupt.split(":")
            i = cfg.objectives.index(name)
            self.objs[i] = corrupted(self.objs[i], float(rate), float(size), len(tok))
            self.triggers = self.objs[i].triggers
        else:
            self.triggers = None
        self.batches = [cfg.prompts[i:i + cfg.batch_size]
                        for i in range(0, len(cfg.prompts), cfg.batch_size)]
        self.inputs = [{k: v.to(cfg.device) for k, v in build_prompts(tok, b).items()}
                       for b in self.batches]
        from cage_adapters.processor import _END_MARKERS

        vocab = tok.get_vocab()
        self.eos = {tok.eos_token_id} | {vocab[m] for m in _END_MARKERS if m in vocab}

    def _seed(self, seed: int, b: int, j: int = 0) -> None:
        self.torch.manual_seed((seed + 1000 * j) * 7919 + b)

    def _generate(self, inputs: dict[str, Any], proc: Any, greedy: bool) -> Any:
        from transformers import LogitsProcessorList

        kw: dict[str, Any] = {"max_new_tokens": self.cfg.max_new_tokens,
                              "do_sample": not greedy, "pad_token_id": self.tok.pad_token_id}
        if not greedy:  # plain: the base top-k; steered: the processor's candidates only
            kw.update(temperature=1.0, top_p=1.0, top_k=self.cfg.top_k if proc is None else 0)
        if proc is not None:
            kw["logits_processor"] = LogitsProcessorList([proc])
        with self.torch.no_grad():
            return self.model.generate(**inputs, **kw)

    def _rows(self, out: Any, plen: int, proc: Any, prompt0: int, seed: int,
              sample: int = 0) -> list[dict[str, Any]]:
        gen = out[:, plen:]
        texts = self.tok.batch_decode(gen, skip_special_tokens=True)
        flu = fluency(self.model, out, plen, self.tok.pad_token_id, frozenset(self.eos))
        rows = []
        for r in range(out.shape[0]):
            ids = gen[r].tolist()
            end = next((j for j, t in enumerate(ids) if t in self.eos), None)
            n = (end + 1) if end is not None else len(ids)
            kl = 0.0
            if proc is not None and proc.trace:
                vals = [float(rec.kl[r]) for rec in proc.trace if rec.active[r]]
                kl = float(np.mean(vals)) if vals else 0.0
            trig = None
            if self.triggers is not None:
                toks = ids[:n]
                trig = float(np.mean([bool(self.triggers[t]) for t in toks])) if toks else 0.0
            rows.append({"prompt": prompt0 + r, "seed": seed, "sample": sample,
                         "text": texts[r].strip(), "tokens": n, "finished": end is not None,
                         "kl": kl, "fluency": float(flu[r]), "trigger_rate": trig})
        return rows

    def steer(self, method: Method, strength: dict[str, float], w: Sequence[float]
              ) -> dict[str, Any]:
        rows, gen_s = [], 0.0
        for seed in self.cfg.seeds:
            for b, inputs in enumerate(self.inputs):
                proc = method.build(self.objs, list(w), strength, self.cfg)
                self._seed(seed, b)
                t0 = time.perf_counter()
                out = self._generate(inputs, proc, method.greedy)
                gen_s += time.perf_counter() - t0
                rows += self._rows(out, inputs["input_ids"].shape[1], proc,
                                   b * self.cfg.batch_size, seed)
        return {"rows": rows, "seconds": gen_s}

    def pool(self, n: int) -> dict[str, Any]:
        rows, secs = [], []
        for j in range(n):
            gen_s = 0.0
            for seed in self.cfg.seeds:
                for b, inputs in enumerate(self.inputs):
                    self._seed(seed, b, j)
                    t0 = time.perf_counter()
                    out = self._generate(inputs, None, False)
                    gen_s += time.perf_counter() - t0
                    rows += self._rows(out, inputs["input_ids"].shape[1], None,
                                       b * self.cfg.batch_size, seed, sample=j)
            secs.append(gen_s)
        return {"rows": rows, "seconds": float(np.mean(secs)), "seconds_per_sample": secs}

    def judge(self, rows: list[dict[str, Any]]) -> None:
        """Judge scores, own scores and quality measures of every row (in place)."""
        from cage_adapters.baselines import sequence_scores

        texts = [r["text"] for r in rows]
        nw = nonword_rate(texts)
        judged = {}
        for name in self.cfg.objectives:
            try:
                judged[name] = judge_for(name)(texts, self.cfg.reference)
            except KeyError:
                judged[name] = None
        own = {}
        for o, name in zip(self.objs, self.cfg.objectives, strict=True):
            try:
                own[name] = sequence_scores([o], texts)[:, 0]
            except ValueError:
                own[name] = None
        for i, r in enumerate(rows):
            r["nonword"] = float(nw[i])
            r["judge"] = {n: (None if v is None else float(v[i])) for n, v in judged.items()}
            r["own"] = {n: (None if v is None else float(v[i])) for n, v in own.items()}


def summarize_dir(out_dir: str | os.PathLike[str], plots: bool = True) -> dict[str, Any]:
    """Summarise the finished cells of a run directory (e.g. of an interrupted run).

    Reads ``config.json`` and every ``cells/*.json``, writes ``results.json``, ``results.csv``
    and the plots, and returns the results. Weights or methods without a finished cell are
    left out, so compare only complete grids.
    """
    out = Path(out_dir)
    cfg = FrontierConfig(**json.loads((out / "config.json").read_text())["config"])
    cells = {p.stem: json.loads(p.read_text()) for p in sorted((out / "cells").glob("*.json"))}
    return _write_results(out, cfg, cells, plots)


def _write_results(out: Path, cfg: FrontierConfig, cells: dict[str, Any], plots: bool
                   ) -> dict[str, Any]:
    """Summarise ``cells`` and write ``results.json``, ``results.csv`` and the front plots."""
    results = summarize(cfg, cells)
    _write_json(out / "results.json", results)
    _write_csv(out / "results.csv", results)
    if plots:
        _plot(out, results)
    return results


def merge_runs(run_dirs: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str],
               plots: bool = True) -> dict[str, Any]:
    """Merge runs over disjoint prompt sets (e.g. a split run in parallel) and summarise.

    Every run must have the same settings except its prompts; the merged run's prompts are the
    runs' prompts in order, each run's prompt indices shifted accordingly. Every method, strength
    and weight is compared on the same prompts and seeds within each run, so the merged run
    compares them on the union. Only cells present in every run are kept.

    Raises
    ------
    ValueError
        When the runs' settings differ (other than the prompts).
    """
    metas = [json.loads((Path(d) / "config.json").read_text())["config"] for d in run_dirs]
    strip = lambda c: {k: v for k, v in c.items() if k != "prompts"}  # noqa: E731
    if any(strip(m) != strip(metas[0]) for m in metas[1:]):
        raise ValueError("runs differ in settings other than their prompts; cannot merge")
    prompts: list[str] = []
    per_run = []
    for d, meta in zip(run_dirs, metas, strict=True):
        cells = {p.stem: json.loads(p.read_text()) for p in (Path(d) / "cells").glob("*.json")}
        per_run.append((len(prompts), cells))
        prompts += meta["prompts"]
    keys = set.intersection(*[set(c) for _, c in per_run])
    merged: dict[str, dict[str, Any]] = {}
    for key in sorted(keys):
        base = dict(per_run[0][1][key])
        base["rows"], base["seconds"] = [], 0.0
        for offset, cells in per_run:
            c = cells[key]
            base["rows"] += [{**r, "prompt": r["prompt"] + offset} for r in c["rows"]]
            base["seconds"] += c["seconds"]
        if "seconds_per_sample" in base:
            base["seconds_per_sample"] = [
                sum(cells[key]["seconds_per_sample"][j] for _, cells in per_run)
                for j in range(len(base["seconds_per_sample"]))]
        merged[key] = base
    cfg = FrontierConfig(**{**metas[0], "prompts": prompts})
    out = Path(out_dir)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    _write_json(out / "config.json", {"fingerprint": cfg.fingerprint(), "config": asdict(cfg),
                                      "merged_from": [str(d) for d in run_dirs]})
    for key, cell in merged.items():
        _write_json(out / "cells" / f"{key}.json", cell)
    return summarize_dir(out, plots=plots)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=float), encoding="utf-8")
    os.replace(tmp, path)


def run_frontier(cfg: FrontierConfig, out_dir: str | os.PathLike[str], *, model: Any = None,
                 tokenizer: Any = None, progress: bool = True, plots: bool = True
                 ) -> dict[str, Any]:
    """Run (or resume) a frontier evaluation and write ``out_dir/results.json``.

    Parameters
    ----------
    cfg : FrontierConfig
    out_dir : path
        Cells go to ``out_dir/cells``; a cell file that exists is read back, not recomputed
        (the run's fingerprint must match: same prompts, seeds and decoding settings).
    model, tokenizer : optional
        Default: :func:`cage_adapters.load_default_model` on ``cfg.device``.
    progress : bool
        A tqdm bar over cells.
    plots : bool
        Write ``front_*.png`` (matplotlib).

    Returns
    -------
    dict
        The content of ``results.json`` (see :func:`summarize`).
    """
    out = Path(out_dir)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    fp = cfg.fingerprint()
    meta = out / "config.json"
    if meta.exists():
        old = json.loads(meta.read_text())
        if old.get("fingerprint") != fp:
            raise ValueError(
                f"{out} holds cells of another run (different prompts, seeds, objectives or "
                "decoding settings); use a new directory")
    _write_json(meta, {"fingerprint": fp, "config": asdict(cfg)})
    if model is None:
        from cage_adapters import load_default_model

        model, tokenizer = load_default_model(device=cfg.device)
    runner = _Runner(cfg, model, tokenizer)
    plan: list[tuple[str, Callable[[], dict[str, Any]], dict[str, Any]]] = []
    # the plain samples are always run: they normalise every axis (and feed best-of-N)
    pool_n = cfg.bon_pool if "bon" in cfg.methods else 1
    plan.append((_key("pool", f"n={pool_n}"), lambda: runner.pool(pool_n), {"method": "pool"}))
    grid = weight_grid(len(cfg.objectives), cfg.weights)
    for name in cfg.methods:
        method = METHODS[name]
        if method.kind == "pool":
            continue
        strengths = (_strengths(cfg) if method.kind == "steer"
                     else [(f"w={cfg.args_w:g}", {})])
        for label, strength in strengths:
            for i, w in enumerate(grid):
                plan.append((_key(name, label, "w=" + "_".join(f"{x:g}" for x in w)),
                             (lambda m=method, s=strength, w=w: runner.steer(m, s, w)),
                             {"method": name, "strength": label, "weight_index": i,
                              "weights": list(w)}))
    cells: dict[str, dict[str, Any]] = {}
    todo = [p for p in plan if not (out / "cells" / f"{p[0]}.json").exists()]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(plan), initial=len(plan) - len(todo), desc="frontier cells",
                   unit="cell")
    for key, fn, info in plan:
        path = out / "cells" / f"{key}.json"
        if path.exists():
            cells[key] = json.loads(path.read_text())
            continue
        res = fn()
        runner.judge(res["rows"])
        cell = {**info, **res, "key": key}
        _write_json(path, cell)
        cells[key] = cell
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(key[:40])
    if bar is not None:
        bar.close()
    return _write_results(out, cfg, cells, plots)


# -- aggregation ---------------------------------------------------------------------------------
def _axes(cfg: FrontierConfig, rows: list[dict[str, Any]]) -> np.ndarray:
    """(n_rows, m) judge scores, the objective's own score where no judge exists."""
    cols = []
    for name in cfg.objectives:
        vals = [r["judge"][name] if r["judge"][name] is not None else r["own"][name]
                for r in rows]
        cols.append([math.nan if v is None else v for v in vals])
    return np.asarray(cols, dtype=np.float64).T


def _per_prompt(cfg: FrontierConfig, rows: list[dict[str, Any]], z: np.ndarray) -> np.ndarray:
    """(P, m) mean of z over each prompt's texts (seeds)."""
    P = len(cfg.prompts)
    out = np.full((P, z.shape[1]), np.nan)
    idx = np.asarray([r["prompt"] for r in rows])
    for p in range(P):
        sel = idx == p
        if sel.any():
            out[p] = z[sel].mean(axis=0)
    return out


def _prompt_metric(cfg: FrontierConfig, lst: list[Any], metric: str) -> np.ndarray | None:
    """(P,) mean of a per-text metric over each prompt's texts (all weights and seeds)."""
    rows = [r for (_, rs, _) in lst for r in rs]
    if not rows or rows[0].get(metric) is None:
        return None
    out = np.full(len(cfg.prompts), np.nan)
    idx = np.asarray([r["prompt"] for r in rows])
    vals = np.asarray([r[metric] for r in rows], dtype=np.float64)
    for p in range(len(cfg.prompts)):
        if (idx == p).any():
            out[p] = np.nanmean(vals[idx == p])
    return out


def _floor(lst: list[Any], pp: list[np.ndarray], grid: list[tuple[float, ...]]
           ) -> Callable[[np.ndarray], float] | None:
    """Worst objective's loss against its solo decoding, at the most balanced weight.

    With ``z_i(w)`` the normalised judge mean of objective ``i`` at weight ``w`` and ``e_i``
    the solo weight of objective ``i``: ``min_i (z_i(w_bal) - z_i(e_i))`` (0 = every objective
    kept its solo level; more negative = some objective gave up more). Returns a function of
    the resampled prompt indices, or None when the grid lacks the solo or balanced weights.
    """
    ws = [tuple(w) for (w, _, _) in lst]
    m = len(ws[0]) if ws else 0
    if m < 2:
        return None
    solos = []
    for i in range(m):
        e = tuple(1.0 if j == i else 0.0 for j in range(m))
        if e not in ws:
            return None
        solos.append(ws.index(e))
    bal = min(range(len(ws)), key=lambda k: float(np.ptp(ws[k])))
    if float(np.ptp(ws[bal])) > 0.5:
        return None

    def f(idx: np.ndarray) -> float:
        zb = np.nanmean(pp[bal][idx], axis=0)
        return float(min(zb[i] - np.nanmean(pp[solos[i]][idx], axis=0)[i] for i in range(m)))

    return f


def summarize(cfg: FrontierConfig, cells: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Fronts, hypervolumes, intervals, KL, quality and controllability from finished cells.

    Returns
    -------
    dict
        ``config``; ``normalisation`` (plain mean and sd per objective, reference point);
        ``judges`` (which judge measures which objective); ``methods[method][strength]``
        with ``weights``, ``points`` (raw judge means), ``points_normalised``, ``front``,
        ``hypervolume``, ``mean_kl`` (per token, mean over texts), ``kl_quantiles``,
        ``fluency``, ``nonword``, ``distinct_1``, ``distinct_2``, ``finished``, ``tokens``,
        ``tokens_per_s``, ``seconds_per_text``, ``spearman`` (per objective, texts) and
        ``spearman_means`` (weight means), ``hv_diff_to_cage`` (per CAGE strength: estimate and
        95% bootstrap interval over prompts), ``hv_diff`` (the same against every other
        method and strength, keyed ``"method strength"``), ``floor`` (the worst objective's
        loss against its solo decoding at the most balanced weight), ``paired_diff_to_cage``
        (fluency, trigger rate and floor differences to CAGE at the same strength, with
        intervals) and, with ``corrupt``, ``trigger_rate`` (share of generated tokens that are
        triggers).
    """
    m = len(cfg.objectives)
    grid = weight_grid(m, cfg.weights)
    pool = next(c for c in cells.values() if c["method"] == "pool")
    plain_rows = [r for r in pool["rows"] if r["sample"] == 0]
    J0 = _axes(cfg, plain_rows)
    mu, sd = np.nanmean(J0, axis=0), np.nanstd(J0, axis=0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    ref = -np.ones(m)

    def z_of(rows: list[dict[str, Any]]) -> np.ndarray:
        return (_axes(cfg, rows) - mu) / sd

    # entries: (method, strength) -> list over weights of (weights, rows, seconds)
    entries: dict[tuple[str, str], list[tuple[tuple[float, ...], list[dict[str, Any]], float]]]
    entries = {}
    for c in cells.values():
        if c["method"] == "pool":
            continue
        entries.setdefault((c["method"], c["strength"]), []).append(
            (tuple(c["weights"]), c["rows"], c["seconds"]))
    for v in entries.values():
        v.sort(key=lambda e: grid.index(tuple(e[0])) if tuple(e[0]) in grid else 0)
    n_texts = max(1, len(plain_rows))
    plain_s = pool["seconds"] / n_texts
    if "plain" in cfg.methods:
        entries[("plain", "base")] = [(tuple(np.full(m, 1.0 / m)), plain_rows, pool["seconds"])]
    if "bon" in cfg.methods:
        from cage_adapters.baselines import best_of_n

        G = len(cfg.prompts) * len(cfg.seeds)
        by = {(r["prompt"], r["seed"], r["sample"]): r for r in pool["rows"]}
        groups = [(p, s) for s in cfg.seeds for p in range(len(cfg.prompts))]
        own = np.full((G, cfg.bon_pool, m), np.nan)
        for g, (p, s) in enumerate(groups):
            for j in range(cfg.bon_pool):
                r = by[(p, s, j)]
                own[g, j] = [r["own"][n] if r["own"][n] is not None else np.nan
                             for n in cfg.objectives]
        ns = {f"n={cfg.bon_n}": cfg.bon_n}
        cage_s = [e for (meth, _), e in entries.items() if meth == "cage"]
        if cage_s:
            per_text = np.mean([sec for e in cage_s for (_, _, sec) in e]) / n_texts
            n_wc = int(np.clip(round(per_text / max(plain_s, 1e-9)), 1, cfg.bon_pool))
            ns[f"n={n_wc} (wall clock)"] = n_wc
        if not np.isnan(own).any():
            for label, n in ns.items():
                lst = []
                for w in grid:
                    pick = best_of_n(own, w, n)
                    rows = [dict(by[(p, s, int(j))]) for (p, s), j in
                            zip(groups, pick, strict=True)]
                    for r in rows:
                        r["kl"] = 0.0  # per token: reported separately (per sequence)
                    lst.append((w, rows, pool["seconds"] * n))
                entries[("bon", label)] = lst

    per_prompt = {k: [_per_prompt(cfg, rows, z_of(rows)) for (_, rows, _) in v]
                  for k, v in entries.items()}

    def hv_of(key: tuple[str, str], idx: np.ndarray) -> float:
        pts = np.asarray([np.nanmean(pp[idx], axis=0) for pp in per_prompt[key]])
        return hypervolume(pts, ref)

    # every difference between two methods (and strengths): row minus column, one bootstrap
    # per pair (the reverse is its negative, with the same resamples)
    keys = list(entries)
    hv_diff: dict[tuple[str, str], dict[tuple[str, str], dict[str, float]]] = {
        k: {} for k in keys}
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            d = bootstrap_diff(lambda idx, a=a, b=b: hv_of(a, idx) - hv_of(b, idx),
                               range(len(cfg.prompts)), n_boot=cfg.n_boot)
            hv_diff[a][b] = d
            hv_diff[b][a] = {"estimate": -d["estimate"], "lo": -d["hi"], "hi": -d["lo"],
                             "n_boot": d["n_boot"]}

    methods: dict[str, dict[str, Any]] = {}
    cage_keys = [k for k in entries if k[0] == "cage"]
    for key, lst in entries.items():
        meth, label = key
        all_rows = [r for (_, rows, _) in lst for r in rows]
        pts_raw = np.asarray([np.nanmean(_axes(cfg, rows), axis=0) for (_, rows, _) in lst])
        pts = (pts_raw - mu) / sd
        kl_text = np.asarray([r["kl"] for r in all_rows])
        toks = np.asarray([r["tokens"] for r in all_rows], dtype=np.float64)
        secs = float(sum(sec for (_, _, sec) in lst))
        entry: dict[str, Any] = {
            "weights": [list(w) for (w, _, _) in lst],
            "points": pts_raw.tolist(),
            "points_normalised": pts.tolist(),
            "front": pareto_front(pts).tolist(),
            "hypervolume": hypervolume(pts, ref),
            "mean_kl": float(kl_text.mean()),
            "kl_token_weighted": float((kl_text * toks).sum() / max(toks.sum(), 1)),
            "kl_quantiles": {f"q{q}": float(np.quantile(kl_text, q / 100))
                             for q in (5, 25, 50, 75, 95)},
            "fluency": float(np.nanmean([r["fluency"] for r in all_rows])),
            "nonword": float(np.mean([r["nonword"] for r in all_rows])),
            "distinct_1": float(np.mean([distinct_n([r["text"] for r in rows], 1)
                                         for (_, rows, _) in lst])),
            "distinct_2": float(np.mean([distinct_n([r["text"] for r in rows], 2)
                                         for (_, rows, _) in lst])),
            "finished": float(np.mean([r["finished"] for r in all_rows])),
            "tokens": float(toks.mean()),
            "tokens_per_s": float(toks.sum() / secs) if secs > 0 else math.nan,
            "seconds_per_text": secs / max(len(all_rows), 1),
        }
        if meth == "bon":
            n = int(label.split("=")[1].split()[0])
            from cage_adapters.baselines import best_of_n_kl

            entry["kl_per_sequence"] = best_of_n_kl(n)
            entry["mean_kl"] = float(np.mean(best_of_n_kl(n) / np.maximum(toks, 1)))
            entry["n"] = n
        if any(r.get("trigger_rate") is not None for r in all_rows):
            entry["trigger_rate"] = float(np.mean([r["trigger_rate"] for r in all_rows]))
        if len(lst) > 1:
            ws = np.asarray([w for (w, rows, _) in lst for _ in rows])
            J = _axes(cfg, all_rows)
            entry["spearman"] = {n: spearman(ws[:, i], J[:, i])
                                 for i, n in enumerate(cfg.objectives)}
            entry["spearman_means"] = {n: spearman([w[i] for (w, _, _) in lst], pts_raw[:, i])
                                       for i, n in enumerate(cfg.objectives)}
        entry["hv_diff_to_cage"] = {
            ck[1]: hv_diff[key][ck] for ck in cage_keys
            if ck != key and not (meth in _STEER_FAMILY and ck[1] != label)}
        if hv_diff[key]:
            entry["hv_diff"] = {f"{b[0]} {b[1]}": d for b, d in hv_diff[key].items()}
        fl = _floor(lst, per_prompt[key], grid)
        if fl is not None:
            entry["floor"] = float(fl(np.arange(len(cfg.prompts))))
        paired = {}
        for ck in cage_keys:
            if ck == key or ck[1] != label:
                continue
            for metric in ("fluency", "trigger_rate"):
                a, b = _prompt_metric(cfg, lst, metric), _prompt_metric(cfg, entries[ck], metric)
                if a is None or b is None:
                    continue
                paired[metric] = bootstrap_diff(
                    lambda idx, a=a, b=b: float(np.nanmean(a[idx]) - np.nanmean(b[idx])),
                    range(len(cfg.prompts)), n_boot=cfg.n_boot)
            fb = _floor(entries[ck], per_prompt[ck], grid)
            if fl is not None and fb is not None:
                paired["floor"] = bootstrap_diff(lambda idx, f=fl, g=fb: f(idx) - g(idx),
                                                 range(len(cfg.prompts)), n_boot=cfg.n_boot)
        if paired:
            entry["paired_diff_to_cage"] = paired
        methods.setdefault(meth, {})[label] = entry
    judges = {}
    for n in cfg.objectives:
        try:
            j = judge_for(n)
            judges[n] = f"{j.name}: {j.description}"
        except KeyError:
            judges[n] = "no independent judge: the objective's own sequence score"
    return {
        "config": asdict(cfg),
        "judges": judges,
        "normalisation": {"plain_mean": mu.tolist(), "plain_sd": sd.tolist(),
                          "reference_point": ref.tolist(),
                          "doc": "z = (judge score - plain mean) / plain sd per text; "
                                 "hypervolume of the weight means over reference -1 per axis"},
        "methods": methods,
    }


def _write_csv(path: Path, results: dict[str, Any]) -> None:
    import csv

    names = results["config"]["objectives"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        wr = csv.writer(f)
        wr.writerow(["method", "strength", "weights", *[f"judge[{n}]" for n in names],
                     *[f"z[{n}]" for n in names], "hypervolume", "mean_kl", "fluency",
                     "nonword", "finished", "tokens_per_s"])
        for meth, by in results["methods"].items():
            for label, e in by.items():
                for w, raw, z in zip(e["weights"], e["points"], e["points_normalised"],
                                     strict=True):
                    wr.writerow([meth, label, " ".join(f"{x:g}" for x in w),
                                 *[f"{x:.4f}" for x in raw], *[f"{x:.4f}" for x in z],
                                 f"{e['hypervolume']:.4f}", f"{e['mean_kl']:.4f}",
                                 f"{e['fluency']:.4f}", f"{e['nonword']:.4f}",
                                 f"{e['finished']:.3f}", f"{e['tokens_per_s']:.1f}"])


def _plot(out: Path, results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = results["config"]["objectives"]
    labels = sorted({lab for by in results["methods"].values() for lab in by
                     if lab.startswith(("kl=", "beta="))})
    for lab in labels or ["all"]:
        fig, ax = plt.subplots(figsize=(5, 4))
        for meth, by in results["methods"].items():
            for label, e in by.items():
                if label.startswith(("kl=", "beta=")) and label != lab:
                    continue
                p = np.asarray(e["points_normalised"])
                style = "o-" if len(p) > 1 else "s"
                ax.plot(p[:, 0], p[:, 1], style, label=f"{meth} {label}", ms=4)
        ax.axhline(-1, color="grey", lw=0.5)
        ax.axvline(-1, color="grey", lw=0.5)
        ax.set_xlabel(f"{names[0]} (judge, plain sd)")
        ax.set_ylabel(f"{names[1]} (judge, plain sd)")
        ax.set_title(f"fronts at {lab}")
        ax.legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(out / f"front_{_key(lab)}.png", dpi=110)
        plt.close(fig)
