"""Logits processors: decode from the common-agency equilibrium (or the linear-mixing baseline).

At each step and for each row of the batch:

1. **Candidates** ``C``: the top-k and/or top-p tokens of the base distribution ``p0`` (the
   processor's input scores, after any processor placed before it). Ids beyond the tokenizer's
   vocabulary (models whose logits are padded wider than the tokenizer) are never candidates.
2. **Rewards**: each objective scores the candidates; rewards are normalised per row
   (``Objective.normalize``) and weighted, ``u_i = w_i * r_i``. Model-backed objectives that
   share a model run in one batched forward per step
   (:class:`~cage_adapters.objectives.shared.SharedForwards`).
3. **Game**: agent utility ``v = beta * log p0`` on ``C``, principals' utilities ``u_i``, solved
   for the Nash equilibrium in transfers by :func:`cage_games.torch.solve_batch` (batched, on
   the scores' device). The new scores are ``log pi*`` on ``C`` and ``-inf`` elsewhere.

Two knobs, kept separate:

- ``weights`` set the **trade-off** between objectives (shape ``(m,)`` or one row per request);
- the **strength** is either ``beta`` (fixed; only ``u / beta`` matters) or ``target_kl``: the
  KL divergence per token ``KL(pi || p0|C)`` to reach. In target-KL mode a one-dimensional root
  is found per row and step on a common scale of the stakes: ``u_i = s * w_i * r_i`` with
  ``s = beta / beta_eff``; equivalently the agent's temperature ``beta_eff`` is searched with
  ``v = beta_eff * log p0`` (the game only depends on ``u / beta``). ``p0|C`` is the base
  distribution renormalised on the candidates, so ``KL = 0`` means "the base model, truncated".
  With neither given, the strength is ``target_kl = 0.3`` (:data:`DEFAULT_TARGET_KL`).

**KL budget** (target-KL mode, ``kl_budget="sequence"``, the default): the target is a mean
per token *over each sequence*. At step ``t`` a row aims at
``max((t + 1) * target - spent, target / 4)``, where ``spent`` is the KL it realised so
far: KL a row could not spend (all candidates tie on every active reward, so no tilt moves the
policy) is carried forward, whole, to the next step that can spend it, and an overshoot is paid
back (a step still aims at a quarter of the target at least). So the realised mean KL per token
of a sequence is close to the target whenever later steps can absorb the carry; with a sparse
reward (brevity pays only where a sentence can close) the carry is spent in a few large steps.
An earlier cap of 4x the target per step left brevity-only decoding 40-50% short of its
budget (0.27 of 0.5 on 8 dev prompts; 0.40 without the cap). With ``kl_budget="step"`` every
step aims at the target itself, and steps that cannot reach it lower the realised mean.

:class:`LinearMixingProcessor` is the baseline ``pi ∝ p0 * exp(sum_i w_i r_i / beta)`` with the
same candidates, normalisation and target-KL mode, so the two are compared at matched KL.
Linear tilting is the exact maximiser of ``sum_i w_i E_pi[r_i] - beta KL(pi || p0)`` per token:
the equilibrium cannot beat it on expected token reward, only on outcomes judged on whole texts
or on other criteria (balance between objectives, damping of outlier rewards).

Decoding modes: greedy takes ``argmax pi*``; sampling samples from ``pi*`` (warpers such as
temperature or top-k set in ``generate`` act after this processor); **beam search** ranks beams by
the cumulative ``log pi*`` of the equilibrium policies met along each beam, i.e. it searches for
likely sequences under the per-token equilibrium policy (not a sequence-level equilibrium).

Failures never corrupt generation: a row whose solve does not converge (or returns non-finite
values) falls back to ``p0|C`` for that step and is flagged in the trace.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor

from cage_adapters import _checks
from cage_adapters.objectives import Objective, StepContext, normalize_rewards
from cage_adapters.objectives.shared import SharedForwards
from cage_adapters.vocab import same_vocabulary

__all__ = ["DEFAULT_TARGET_KL", "CageLogitsProcessor", "LinearMixingProcessor", "StepRecord",
           "Trace"]

_BACKENDS = ("auto", "triton", "native", "torch")
DEFAULT_TARGET_KL = 0.3  # nats per token: the strength when neither beta nor target_kl is given
_KL_FLOOR = 0.25  # sequence budget: a step aims at least at 1/4 of the target (no upper cap)
_KL_RTOL = 0.03  # target-KL mode: accept |log KL - log target| <= 0.03 (3 % relative)
_KL_MAX_REFINE = 8  # target-KL mode: refinements after the grid (secant, bisection every 3rd)
_PROBE_MAX_ITER = 40  # target-KL mode: iteration cap of each probe solve
_END_MARKERS = ("<|im_end|>", "<|endoftext|>", "<end_of_turn>", "<|eot_id|>", "</s>", "<eos>")


@dataclass
class StepRecord:
    """One decoding step of a processor (arrays are numpy, one row per batch row).

    Attributes
    ----------
    step : int
        Index of the generated token this step chose (0 = first new token).
    active : (B,) bool
        Rows still generating; the others were left untouched.
    candidates : (B, k) int
        Candidate token ids; ``cand_mask`` tells the real ones.
    cand_mask : (B, k) bool
    n_candidates : (B,) int
    thresholds : (B, m) float
        Equilibrium thresholds ``c_i`` in units of ``beta_eff`` (NaN for inactive or
        fallback rows, and for the linear baseline).
    transfers : (B, m, k) float
        ``tau_i(a) / beta_eff``: the log-boost principal ``i`` pays on each candidate (for the
        linear baseline: ``w_i r_i / beta_eff``, its tilt).
    shares : (B, m) float
        Each objective's share of the expected transfers ``E_pi[tau_i] / sum_j E_pi[tau_j]``
        (0 when nobody pays).
    residual : (B,) float
        Scaled residual of the threshold system (0 for the linear baseline).
    nit : (B,) int
    success : (B,) bool
    fallback : (B,) bool
        Rows that fell back to the base distribution this step.
    kl : (B,) float
        ``KL(pi || p0|C)`` in nats.
    beta : (B,) float
        The temperature used (in target-KL mode: the root found).
    kl_reached : (B,) bool
        Target-KL mode: whether the target was bracketed (False when even the strongest scale
        moves the policy less, e.g. when every reward ties).
    solve_seconds : float
        Wall time of the equilibrium solves of this step (on a GPU the device work queued
        before each phase is waited for, so the phases are not charged each other's time).
    reward_seconds : float
        Wall time spent computing the objectives' rewards.
    total_seconds : float
        Wall time of the whole processor call.
    """

    step: int
    active: np.ndarray
    candidates: np.ndarray
    cand_mask: np.ndarray
    n_candidates: np.ndarray
    thresholds: np.ndarray
    transfers: np.ndarray
    shares: np.ndarray
    residual: np.ndarray
    nit: np.ndarray
    success: np.ndarray
    fallback: np.ndarray
    kl: np.ndarray
    beta: np.ndarray
    kl_reached: np.ndarray
    solve_seconds: float
    reward_seconds: float
    total_seconds: float


class Trace(list):
    """The per-step records of the last generation (a list of :class:`StepRecord`)."""

    names: list[str]

    def __init__(self, names: Sequence[str] = ()) -> None:
        super().__init__()
        self.names = list(names)

    def summary(self) -> dict[str, float]:
        """Means over active rows and steps: KL, candidates, fallbacks, shares, timings."""
        if not self:
            return {"steps": 0}
        act = np.concatenate([r.active for r in self])
        kl = np.concatenate([r.kl for r in self])[act]
        fb = np.concatenate([r.fallback for r in self])[act]
        nc = np.concatenate([r.n_candidates for r in self])[act]
        shares = np.concatenate([r.shares for r in self])[act]
        out = {
            "steps": float(len(self)),
            "mean_kl": float(kl.mean()) if kl.size else 0.0,
            "mean_candidates": float(nc.mean()) if nc.size else 0.0,
            "fallback_rate": float(fb.mean()) if fb.size else 0.0,
            "solve_seconds": float(sum(r.solve_seconds for r in self)),
            "reward_seconds": float(sum(r.reward_seconds for r in self)),
            "processor_seconds": float(sum(r.total_seconds for r in self)),
        }
        for i, name in enumerate(self.names):
            out[f"share[{name}]"] = float(shares[:, i].mean()) if shares.size else 0.0
        return out

    def payments(self, sequences: Any, prompt_len: int | None = None,
                 row: int = 0) -> list[dict[str, Any]]:
        """Who paid for which token: one entry per step of ``row``.

        Parameters
        ----------
        sequences : torch.LongTensor or array, shape (B, L)
            What ``generate`` returned (prompt + generated ids).
        prompt_len : int, optional
            Width of the prompt part (default: ``L - len(self)``; give it when rows stopped
            early, i.e. when ``generate`` returned fewer columns than steps recorded).
        row : int

        Returns
        -------
        list of dict
            ``step``, ``token`` (id), ``p`` (its equilibrium probability), ``kl``,
            ``fallback`` and ``paid``: ``{objective: tau_i(token) / beta_eff}`` (``None`` when
            the token was not a candidate or the row had finished).
        """
        seq = np.asarray(sequences.tolist() if hasattr(sequences, "tolist") else sequences)
        if prompt_len is None:
            prompt_len = seq.shape[1] - len(self)
        out = []
        for rec in self:
            pos = prompt_len + rec.step
            if pos >= seq.shape[1] or not rec.active[row]:
                break
            tok = int(seq[row, pos])
            hit = np.flatnonzero((rec.candidates[row] == tok) & rec.cand_mask[row])
            paid = None
            if hit.size:
                j = int(hit[0])
                paid = {n: float(rec.transfers[row, i, j]) for i, n in enumerate(self.names)}
            out.append({"step": rec.step, "token": tok, "paid": paid, "kl": float(rec.kl[row]),
                        "fallback": bool(rec.fallback[row]), "beta": float(rec.beta[row])})
        return out


def _as_weights(weights: Any, m: int) -> torch.Tensor:
    try:
        w = torch.as_tensor(np.asarray(weights, dtype=np.float64), dtype=torch.float32)
    except (TypeError, ValueError):
        raise TypeError(f"weights must be numbers, shape ({m},) or (batch, {m})") from None
    if w.ndim == 1:
        w = w.unsqueeze(0)
    if w.ndim != 2 or w.shape[1] != m:
        raise ValueError(
            f"weights has shape {tuple(np.shape(weights))} but there are {m} objectives; give "
            f"one weight per objective, shape ({m},) or (batch, {m})"
        )
    if w.shape[0] == 0:
        raise ValueError("weights has no rows; give shape (m,) or (batch, m)")
    if not torch.isfinite(w).all():
        raise ValueError("weights must be finite numbers")
    if (w < 0).any():
        raise ValueError(
            f"weights must be >= 0 (got {w.min().item():g}); a weight is how much the objective "
            "counts, not its direction: negate the objective instead"
        )
    return w


def _as_caps(caps: Any, m: int, what: str) -> torch.Tensor | None:
    """Per-objective bounds in units of the temperature (``None`` = unbounded)."""
    if caps is None:
        return None
    try:
        c = np.broadcast_to(np.asarray(caps, dtype=np.float64), (m,)).copy()
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a positive number or one per objective ({m})") from None
    if not (c > 0).all() or np.isnan(c).any():
        raise ValueError(f"{what} must be > 0 (inf = unbounded), got {caps!r}")
    return torch.as_tensor(c, dtype=torch.float64)


class _GameProcessor(LogitsProcessor):
    """Shared machinery: validation, generation tracking, candidates, rewards, trace."""

    kind = "game"

    def __init__(self, objectives: Sequence[Objective], weights: Any = None, *,
                 beta: float | None = None, target_kl: float | None = None,
                 top_k: int | None = 20, top_p: float | None = None,
                 eos_token_id: int | Sequence[int] | None = None, record: bool = True,
                 kl_budget: str = "sequence") -> None:
        objectives = list(objectives) if objectives is not None else []
        if not objectives:
            raise ValueError("objectives is empty: give at least one Objective (the principals)")
        for o in objectives:
            if not isinstance(o, Objective):
                raise TypeError(
                    f"objectives must be Objective instances (see cage_adapters.objectives), got "
                    f"{type(o).__name__}"
                )
        tok = objectives[0].tokenizer
        for o in objectives[1:]:
            if not same_vocabulary(tok, o.tokenizer):
                raise ValueError(
                    f"objective {o.name!r} was built with a different base tokenizer than "
                    f"{objectives[0].name!r}; build every objective with the base model's "
                    "tokenizer (guide models with another vocabulary take a vocab_map)"
                )
        names = [o.name for o in objectives]
        if len(set(names)) != len(names):
            raise ValueError(f"objective names must be unique, got {names}")
        m = len(objectives)
        self.objectives = objectives
        self.tokenizer = tok
        self.weights = _as_weights(np.ones(m) if weights is None else weights, m)
        if beta is None:  # no strength given: the default target KL (module doc)
            beta = 1.0
            if target_kl is None:
                target_kl = DEFAULT_TARGET_KL
        self.beta = _checks.real(
            beta, "beta", expected="a positive finite number", low=0.0, low_open=True
        )
        if target_kl is not None:
            target_kl = _checks.real(
                target_kl, "target_kl", low=0.0, low_open=True,
                expected="a positive number of nats per token (None for a fixed beta)",
            )
        self.target_kl = target_kl
        if kl_budget not in ("sequence", "step"):
            raise ValueError(f"kl_budget must be 'sequence' or 'step', got {kl_budget!r}")
        self.kl_budget = kl_budget
        self._spent: torch.Tensor | None = None
        self._beta_prev: torch.Tensor | None = None
        if top_k is not None:
            top_k = _checks.integer(top_k, "top_k", expected="a positive integer or None", low=1)
        if top_p is not None:
            top_p = _checks.real(top_p, "top_p", expected="in (0, 1] or None", low=0.0,
                                 low_open=True, high=1.0)
        self.top_k, self.top_p = top_k, (None if top_p is None else float(top_p))
        self.vocab_size = len(tok)
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else -1
        self.eos_ids = self._eos_ids(tok, eos_token_id)
        self.record = record
        self.trace = Trace(names)
        # model-backed objectives: one batched forward per distinct model and step
        self._shared = SharedForwards(objectives)
        self._prev: torch.Tensor | None = None
        self._prompt_len = 0
        self._finished: torch.Tensor | None = None

    @staticmethod
    def _eos_ids(tok: Any, eos_token_id: Any) -> frozenset[int]:
        if eos_token_id is not None:
            ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
            return frozenset(int(i) for i in ids)
        ids = set()
        if tok.eos_token_id is not None:
            ids.add(int(tok.eos_token_id))
        vocab = tok.get_vocab()
        for marker in _END_MARKERS:
            if marker in vocab:
                ids.add(int(vocab[marker]))
        return frozenset(ids)

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.objectives]

    # -- generation tracking ---------------------------------------------------------------
    def reset(self) -> None:
        """Forget the current generation (done automatically when a new one starts)."""
        self._prev = None
        self._finished = None

    def _track(self, input_ids: torch.Tensor) -> tuple[bool, torch.Tensor | None]:
        """Return (first step?, parent rows) and update the finished mask."""
        prev = self._prev
        B, L = input_ids.shape
        first, parent = True, None
        if prev is not None and prev.shape[0] == B and prev.shape[1] == L - 1:
            head = input_ids[:, :-1]
            if torch.equal(head, prev):
                first = False
            else:  # beam search reorders rows: find each row's parent
                index = {tuple(r): i for i, r in enumerate(prev.tolist())}
                rows = [index.get(tuple(r)) for r in head.tolist()]
                if all(i is not None for i in rows):
                    first = False
                    parent = torch.as_tensor(rows, dtype=torch.long, device=input_ids.device)
        if first:
            self._prompt_len = L
            self._finished = torch.zeros(B, dtype=torch.bool, device=input_ids.device)
            self.trace = Trace(self.names)
        else:
            assert self._finished is not None
            fin = self._finished if parent is None else self._finished.index_select(0, parent)
            last = input_ids[:, -1]
            eos = torch.zeros_like(fin)
            for e in self.eos_ids:
                eos |= last == e
            self._finished = fin | eos
        self._prev = input_ids.clone()
        return first, parent

    def _row_weights(self, B: int, device: torch.device) -> torch.Tensor:
        w = self.weights
        R = w.shape[0]
        if R == B:
            return w.to(device)
        if R == 1:
            return w.to(device).expand(B, -1)
        if B % R == 0:  # num_beams / num_return_sequences expand each request consecutively
            return w.to(device).repeat_interleave(B // R, dim=0)
        raise ValueError(
            f"weights has {R} rows but the batch has {B} rows; give one row per request "
            "(or a single row for all)"
        )

    # -- candidates ------------------------------------------------------------------------
    def _candidates(self, logp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        V = logp.shape[1]
        k = V if self.top_k is None else min(self.top_k, V)
        if self.top_p is not None or k < V:
            vals, idx = torch.topk(logp, k, dim=1)
        else:
            vals, idx = logp, torch.arange(V, device=logp.device).expand_as(logp)
        mask = torch.isfinite(vals)
        if self.top_p is not None:
            probs = torch.where(mask, vals.exp(), torch.zeros_like(vals))
            before = torch.cumsum(probs, dim=1) - probs
            mask &= before < self.top_p
            width = int(mask.sum(dim=1).max().item())
            idx, mask = idx[:, :width], mask[:, :width]
        return idx, mask

    # -- the policy (subclasses) -----------------------------------------------------------
    def _policy(self, logq: torch.Tensor, u: torch.Tensor, mask: torch.Tensor,
                beta: torch.Tensor, target_mode: bool = False) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _stake_range(self, u: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per row, the largest spread ``max - min`` of a principal's utility (>= 1e-6)."""
        big = torch.finfo(u.dtype).max
        m3 = mask.unsqueeze(1)
        hi = torch.where(m3, u, torch.full_like(u, -big)).amax(dim=2)
        lo = torch.where(m3, u, torch.full_like(u, big)).amin(dim=2)
        return (hi - lo).amax(dim=1).clamp_min(1e-6)

    def _solve_target(self, logq: torch.Tensor, u: torch.Tensor, mask: torch.Tensor,
                      target: torch.Tensor, hint: torch.Tensor | None = None
                      ) -> dict[str, torch.Tensor]:
        """Target-KL mode: per row, the temperature whose policy has KL = ``target[row]``
        (``hint``, the row's temperature at the previous step, is not used by this search)."""
        N = logq.shape[0]
        dev = logq.device
        hi = self._stake_range(u, mask) * 2.0
        G = 5
        expo = torch.linspace(0.0, -2.0, G, device=dev)
        grid = hi.unsqueeze(1) * torch.pow(10.0, expo).unsqueeze(0)  # (N, G), beta decreasing
        rep = lambda t: t.repeat_interleave(G, dim=0)  # noqa: E731
        res = self._policy(rep(logq), rep(u), rep(mask), grid.reshape(-1), target_mode=True)
        ftarget = torch.log(target.to(logq.dtype))

        def fval(r: dict[str, torch.Tensor], ft: torch.Tensor) -> torch.Tensor:
            # log(KL / target); a failed solve counts as "below target" so it never brackets
            f = torch.log(r["kl"].clamp_min(1e-12)) - ft
            return torch.where(r["success"], f, torch.full_like(f, -60.0))

        f = fval(res, rep(ftarget)).view(N, G)  # increasing along the grid
        best = _select(res, (f.abs()).argmin(dim=1), N, G)
        above = f >= 0
        reached = above.any(dim=1)
        j = torch.where(reached, above.float().argmax(dim=1), torch.full_like(reached, G - 1,
                                                                           dtype=torch.long))
        j = j.clamp_min(1)
        x = torch.log(grid)
        ja, jb = (j - 1).unsqueeze(1), j.unsqueeze(1)
        xa, xb = x.gather(1, ja).squeeze(1), x.gather(1, jb).squeeze(1)
        fa, fb = f.gather(1, ja).squeeze(1), f.gather(1, jb).squeeze(1)
        best["ferr"] = f.abs().amin(dim=1)
        todo = reached & (best["ferr"] > _KL_RTOL)
        for it in range(_KL_MAX_REFINE):
            if not bool(todo.any()):
                break
            denom = fb - fa
            t = torch.where(denom.abs() > 1e-12, -fa / denom, torch.full_like(fa, 0.5))
            t = t.clamp(0.05, 0.95) if it else t.clamp(0.0, 1.0)
            if it % 3 == 2:  # safeguard: a bisection every third step bounds the bracket
                t = torch.full_like(t, 0.5)
            xm = xa + t * (xb - xa)
            rows = torch.nonzero(todo).squeeze(1)
            r = self._policy(logq[rows], u[rows], mask[rows], xm[rows].exp(), target_mode=True)
            fm = fval(r, ftarget[rows])
            # update brackets (f increasing as x decreases: xa > xb, fa < 0 <= fb)
            left = fm < 0
            xa_r, fa_r, xb_r, fb_r = xa[rows], fa[rows], xb[rows], fb[rows]
            xa[rows] = torch.where(left, xm[rows], xa_r)
            fa[rows] = torch.where(left, fm, fa_r)
            xb[rows] = torch.where(left, xb_r, xm[rows])
            fb[rows] = torch.where(left, fb_r, fm)
            better = fm.abs() < best["ferr"][rows]
            for key, val in r.items():
                cur = best[key][rows]
                shape = (-1,) + (1,) * (val.dim() - 1)
                best[key][rows] = torch.where(better.view(shape), val, cur)
            best["ferr"][rows] = torch.where(better, fm.abs(), best["ferr"][rows])
            todo = todo.clone()
            todo[rows] = best["ferr"][rows] > _KL_RTOL
        best["kl_reached"] = reached
        return best

    def _row_targets(self, step: int) -> torch.Tensor:
        """This step's KL target of every row (the sequence budget, module doc)."""
        target = float(self.target_kl)  # type: ignore[arg-type]
        assert self._spent is not None
        if self.kl_budget == "step":
            return torch.full_like(self._spent, target)
        want = (step + 1) * target - self._spent
        return want.clamp_min(target * _KL_FLOOR)

    def _clock(self, dev: torch.device) -> float:
        """Wall time for the trace's phase timings; on a GPU (when recording) the queued work
        is waited for first, so that each phase is charged its own device time."""
        if self.record and dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return time.perf_counter()

    # -- the call --------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor
                 ) -> torch.FloatTensor:
        t0 = time.perf_counter()
        first, parent = self._track(input_ids)
        B, V = scores.shape
        dev = scores.device
        if first or self._spent is None or self._spent.shape[0] != B:
            self._spent = torch.zeros(B, device=dev)  # KL realised so far, per row
            self._beta_prev = torch.full((B,), math.nan, device=dev)  # strength last step
        elif parent is not None:
            self._spent = self._spent.index_select(0, parent.to(dev))
            assert self._beta_prev is not None
            self._beta_prev = self._beta_prev.index_select(0, parent.to(dev))
        w = self._row_weights(B, dev)
        logits = scores.float()
        if V > self.vocab_size:  # logits padded wider than the tokenizer: never candidates
            logits = logits.clone()
            logits[:, self.vocab_size:] = -math.inf
        logp = torch.log_softmax(logits, dim=1)
        cand, cmask = self._candidates(logp)
        assert self._finished is not None
        active = ~self._finished
        cmask = cmask & active.unsqueeze(1)
        ctx = StepContext(input_ids=input_ids, prompt_len=self._prompt_len, candidates=cand,
                          cand_mask=cmask, active=active, parent=parent, first=first,
                          tokenizer=self.tokenizer, pad_id=self.pad_id, eos_ids=self.eos_ids,
                          base_logprobs=logp)
        t1 = self._clock(dev)
        if self._shared:
            ctx.shared = self._shared.run(ctx)
        raws = []
        for o in self.objectives:
            if first:
                o.begin(ctx)
            raw = torch.as_tensor(o.rewards(ctx)).to(dev, torch.float32)
            if raw.shape != cand.shape:
                raise ValueError(
                    f"objective {o.name!r} returned rewards of shape {tuple(raw.shape)}; "
                    f"expected {tuple(cand.shape)} (rows, candidates)"
                )
            raws.append(raw)
        raw = torch.stack(raws, dim=1)  # (B, m, k)
        bad = (cmask.unsqueeze(1) & ~torch.isfinite(raw)).sum(2)  # (B, m)
        if bool(bad.any()):  # one check for all objectives; the message names the first
            i = int(bad.sum(0).nonzero()[0])
            raise ValueError(
                f"objective {self.objectives[i].name!r} returned a non-finite reward for "
                f"{int(bad[:, i].sum())} candidates; rewards must be finite numbers"
            )
        how = [o.normalize for o in self.objectives]
        if all(h == how[0] for h in how):  # one normalisation for the whole stack
            r = normalize_rewards(raw, cmask, how[0])
        else:
            r = torch.stack([normalize_rewards(raw[:, i], cmask, h) for i, h in enumerate(how)],
                            dim=1)
        t2 = self._clock(dev)

        lp_c = torch.where(cmask, logp.gather(1, cand), torch.full_like(cand, -math.inf,
                                                                        dtype=torch.float32))
        logq = lp_c - torch.logsumexp(lp_c, dim=1, keepdim=True)  # p0 renormalised on C
        solvable = active & (cmask.sum(1) >= 2)
        rows = torch.nonzero(solvable).squeeze(1)
        n = rows.numel()  # the step's one host read (generate reads its stop flags anyway)
        m, k = r.shape[1], cand.shape[1]
        neg_inf = torch.full_like(logq, -math.inf)
        step = input_ids.shape[1] - self._prompt_len
        full = n == B  # the usual step: every row solves, no defaults, gathers or scatters
        if not full:  # what rows without a game keep: the base policy on C, no payments, no KL
            keep = {"new": torch.where(cmask, logq, neg_inf),
                    "thr": torch.full((B, m), math.nan, device=dev),
                    "tra": torch.zeros((B, m, k), device=dev),
                    "res": torch.zeros(B, device=dev),
                    "nit": torch.zeros(B, dtype=torch.long, device=dev),
                    "succ": torch.ones(B, dtype=torch.bool, device=dev),
                    "kl": torch.zeros(B, device=dev),
                    "beta": torch.full((B,), self.beta, device=dev),
                    "reached": torch.ones(B, dtype=torch.bool, device=dev)}
        if n:

            def take(x: torch.Tensor) -> torch.Tensor:
                return x if full else x.index_select(0, rows)

            mk = take(cmask)
            u = take(w).unsqueeze(2) * take(r)
            lq_rows = take(logq)
            lq = torch.where(mk, lq_rows, torch.zeros_like(lq_rows))
            if self.target_kl is None:
                res = self._policy(lq, u, mk, torch.full((n,), self.beta, device=dev))
                res["kl_reached"] = torch.ones(n, dtype=torch.bool, device=dev)
            else:
                hint = None if self._beta_prev is None else take(self._beta_prev)
                res = self._solve_target(lq, u, mk, take(self._row_targets(step)), hint)
            ok = res["success"] & _valid_log_policy(res["log_policy"], mk)
            okc = ok.unsqueeze(1)
            got = {
                "new": torch.where(mk, torch.where(okc, res["log_policy"], lq_rows),
                                   take(neg_inf)),
                "thr": torch.where(okc, res["thresholds"], torch.full_like(res["thresholds"],
                                                                            math.nan)),
                "tra": torch.where(okc.unsqueeze(2), res["transfers"],
                                   torch.zeros_like(res["transfers"])),
                "res": res["residual"].to(torch.float32), "nit": res["nit"].to(torch.long),
                "succ": ok, "kl": torch.where(ok, res["kl"], torch.zeros_like(res["kl"])),
                "beta": res["beta"].to(torch.float32), "reached": res["kl_reached"],
            }
            if not full:
                for key, dst in keep.items():
                    dst.index_copy_(0, rows, got[key].to(dst.dtype))
        step_out = got if full else keep
        new, thr, tra, res_, nit, succ, kl, beta_used, reached = (
            step_out[key] for key in ("new", "thr", "tra", "res", "nit", "succ", "kl", "beta",
                                      "reached"))
        self._spent = self._spent + kl  # rows without a game realise no KL
        if self.target_kl is not None and n:
            # the search of the next step starts at this step's strength (rows that solved)
            assert self._beta_prev is not None
            self._beta_prev = torch.where(solvable & succ, beta_used.to(self._beta_prev.dtype),
                                          self._beta_prev)
        out = torch.full_like(logits, -math.inf)
        out.scatter_(1, cand, new)
        out = torch.where(active.unsqueeze(1), out, logp)  # finished rows: left as they were
        t3 = self._clock(dev)
        if self.record:
            pi = new.exp()
            paid = (tra * pi.unsqueeze(1)).sum(2)
            tot = paid.sum(1, keepdim=True)
            shares = torch.where(tot > 0, paid / tot.clamp_min(1e-30), torch.zeros_like(paid))
            host = _to_host({"active": active, "candidates": cand, "cand_mask": cmask,
                             "thresholds": thr, "transfers": tra, "shares": shares,
                             "residual": res_, "nit": nit, "success": succ, "kl": kl,
                             "beta": beta_used, "kl_reached": reached})
            self.trace.append(StepRecord(
                step=step, n_candidates=host["cand_mask"].sum(1),
                fallback=~host["success"] & host["active"], solve_seconds=t3 - t2,
                reward_seconds=t2 - t1, total_seconds=time.perf_counter() - t0, **host,
            ))
        return out.to(scores.dtype)


def _to_host(tensors: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Copy a step's record to the host in **one** transfer (one float64 block, split and cast
    back to each tensor's dtype; token ids are exact in float64)."""
    first = next(iter(tensors.values()))
    B = first.shape[0]
    block = torch.cat([t.reshape(B, -1).to(torch.float64) for t in tensors.values()], dim=1)
    block = block.cpu().numpy()
    out, j = {}, 0
    for key, t in tensors.items():
        width = int(np.prod(t.shape[1:]))
        dtype = {torch.bool: np.bool_, torch.long: np.int64}.get(t.dtype, np.float32)
        out[key] = block[:, j:j + width].reshape(t.shape).astype(dtype)
        j += width
    return out


def _select(res: dict[str, torch.Tensor], j: torch.Tensor, N: int, G: int
            ) -> dict[str, torch.Tensor]:
    """Pick grid column ``j[n]`` of every (N*G, ...) result tensor."""
    flat = torch.arange(N, device=j.device) * G + j
    return {key: val.index_select(0, flat).clone() for key, val in res.items()}


def _kl(logpi: torch.Tensor, logq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``KL(pi || q)`` over the candidates (entries with ``pi = 0`` contribute 0)."""
    pi = torch.where(mask, logpi.exp(), torch.zeros_like(logpi))
    live = mask & (pi > 0)
    d = torch.where(live, logpi - logq, torch.zeros_like(logpi))
    return torch.nan_to_num((pi * d).sum(1), nan=0.0).clamp_min(0.0)


def _valid_log_policy(logpi: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Rows whose log policy is a distribution on the candidates (sums to 1; a NaN or +inf on
    a candidate makes the sum NaN or inf, which fails the test)."""
    z = torch.logsumexp(torch.where(mask, logpi, torch.full_like(logpi, -math.inf)), dim=1)
    return z.abs() < 1e-3


class CageLogitsProcessor(_GameProcessor):
    """Decode from the common-agency equilibrium of the objectives (the principals).

    Parameters
    ----------
    objectives : sequence of Objective
        The principals, all built with the base model's tokenizer.
    weights : array_like, shape (m,) or (batch, m), optional
        Non-negative trade-off weights, ``u_i = w_i * r_i`` (default: all 1). With one row per
        request, rows expanded by ``num_beams`` / ``num_return_sequences`` follow their request.
    beta : float, optional
        The agent's temperature (strength: smaller moves the model more). Ignored in
        target-KL mode except as the value reported when a row has no game (then 1.0).
    target_kl : float, optional
        Strength as KL per token, ``KL(pi || p0|C)`` in nats: a per-row, per-step root on the
        stakes' scale (module doc). Typical useful values are 0.05 to 1. With neither
        ``beta`` nor ``target_kl``, ``target_kl = DEFAULT_TARGET_KL`` (0.3).
    top_k : int or None, default 20
        Candidates: the ``top_k`` most likely tokens of the base model.
    top_p : float, optional
        Candidates: the smallest set with base probability ``>= top_p`` (within top-k if both).
    eos_token_id : int or sequence of int, optional
        Ids that end a response (default: the tokenizer's EOS and known end-of-turn markers).
        Rows that emitted one are left untouched afterwards.
    solver : callable, optional
        ``solver(v, utilities, beta, mask=...)`` with the contract of
        :func:`cage_games.torch.solve_batch` (the default).
    solver_options : dict, optional
        Extra keyword arguments for the solver (``tol``, ``max_iter``).
    solver_dtype : torch.dtype, default torch.float64
        Precision of the solve (the games are tiny: float64 costs little and converges where
        float32 stalls at strong stakes).
    backend : {"auto", "triton", "native", "torch"}, default "auto"
        Implementation of the default solver (see :func:`cage_games.torch.solve_batch`):
        ``"auto"`` runs the fused Triton kernel on CUDA (one launch per step, the strength
        search included in target-KL mode) and the C++ kernel on the CPU.
    record : bool, default True
        Keep a :class:`StepRecord` per step in :attr:`trace`.
    kl_budget : {"sequence", "step"}, default "sequence"
        Target-KL mode: a mean per token over each sequence (unspent KL carried forward) or a
        target for every step (module doc).
    caps : float or array_like of shape (m,), optional
        Upper bounds on what each principal pays, in units of the temperature: principal
        ``i`` can multiply a token's probability by at most ``exp(caps[i])`` (``inf`` =
        unbounded, the default). Bounds the influence of a corrupted or adversarial reward.

    Attributes
    ----------
    trace : Trace
        The records of the current (last) generation.

    Examples
    --------
    >>> from transformers import LogitsProcessorList  # doctest: +SKIP
    >>> from cage_adapters import CageLogitsProcessor, load_default_model, objectives as obj
    >>> model, tok = load_default_model()  # doctest: +SKIP
    >>> proc = CageLogitsProcessor([obj.Sentiment(tok), obj.Brevity(tok)],
    ...                            weights=[0.8, 0.2], beta=1.0, top_k=20)  # doctest: +SKIP
    >>> ids = tok.apply_chat_template([{"role": "user", "content": "Hi"}],
    ...     add_generation_prompt=True, return_tensors="pt", return_dict=True)  # doctest: +SKIP
    >>> out = model.generate(**ids, logits_processor=LogitsProcessorList([proc]),
    ...                      do_sample=True, max_new_tokens=20)  # doctest: +SKIP
    """

    kind = "cage"

    def __init__(self, objectives: Sequence[Objective], weights: Any = None, *,
                 beta: float | None = None, target_kl: float | None = None,
                 top_k: int | None = 20, top_p: float | None = None,
                 eos_token_id: int | Sequence[int] | None = None,
                 solver: Callable[..., Any] | None = None,
                 solver_options: dict[str, Any] | None = None,
                 solver_dtype: torch.dtype = torch.float64, backend: str = "auto",
                 record: bool = True, kl_budget: str = "sequence", caps: Any = None) -> None:
        super().__init__(objectives, weights, beta=beta, target_kl=target_kl, top_k=top_k,
                         top_p=top_p, eos_token_id=eos_token_id, record=record,
                         kl_budget=kl_budget)
        self.caps = _as_caps(caps, len(self.objectives), "caps")
        if backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
        self.backend = backend
        self._kl_solver = None
        if solver is None:
            try:
                from cage_games.torch import solve_batch as solver
                from cage_games.torch import solve_batch_kl
            except ImportError as e:
                raise ImportError(
                    "the batched equilibrium solver cage_games.torch.solve_batch is not "
                    f"available ({e}); install cage-games with its torch extra"
                ) from e
            # the default solver takes the backend, and runs the target-KL search itself
            solver = functools.partial(solver, backend=backend)
            self._kl_solver = functools.partial(solve_batch_kl, backend=backend)
        self.solver = solver
        self.solver_options = dict(solver_options or {})
        self.solver_dtype = solver_dtype

    def _solve_target(self, logq: torch.Tensor, u: torch.Tensor, mask: torch.Tensor,
                      target: torch.Tensor, hint: torch.Tensor | None = None
                      ) -> dict[str, torch.Tensor]:
        """Target-KL mode: the backend's strength search (one kernel launch on CUDA with the
        Triton backend, :mod:`cage_games.torch._klsearch`), started at each row's strength of
        the previous step (``hint``); a custom ``solver`` uses the processor's own grid search."""
        if self._kl_solver is None:
            return super()._solve_target(logq, u, mask, target)
        dt = self.solver_dtype
        opts = dict(self.solver_options)
        if self.caps is not None:  # caps in units of beta: tau_i / beta <= caps_i
            opts.update(caps=self.caps.to(u.device, dt), caps_unit="beta")
        try:
            res = self._kl_solver(logq.to(dt), u.to(dt), mask=mask, target_kl=target.to(dt),
                                  beta_hint=None if hint is None else hint.to(dt), **opts)
            beta = res.beta.to(logq.dtype)
        except (RuntimeError, ValueError, FloatingPointError):
            res, beta = None, torch.full((logq.shape[0],), self.beta, device=logq.device)
        cap_u = None
        if self.caps is not None:
            cap_u = beta.unsqueeze(1) * self.caps.to(u.device, logq.dtype).unsqueeze(0)
        out = self._pack(res, logq, u, mask, beta, cap_u)
        reached = torch.zeros_like(out["success"]) if res is None else res.kl_reached
        out["kl_reached"] = reached & out["success"]
        return out

    def _policy(self, logq: torch.Tensor, u: torch.Tensor, mask: torch.Tensor,
                beta: torch.Tensor, target_mode: bool = False) -> dict[str, torch.Tensor]:
        dt = self.solver_dtype
        v = (beta.unsqueeze(1) * logq).to(dt)
        opts = self.solver_options
        if target_mode and "max_iter" not in opts:
            # root-search probes: a probe that needs more iterations is dropped, not waited for
            opts = {**opts, "max_iter": _PROBE_MAX_ITER}
        cap_u = None
        if self.caps is not None:  # caps in units of beta: tau_i / beta <= caps_i
            cap_u = (beta.to(dt).unsqueeze(1) * self.caps.to(u.device, dt).unsqueeze(0))
            opts = {**opts, "caps": cap_u}
        try:
            res = self.solver(v, u.to(dt), beta.to(dt), mask=mask, **opts)
        except (RuntimeError, ValueError, FloatingPointError):
            res = None
        return self._pack(res, logq, u, mask, beta, cap_u)

    def _pack(self, res: Any, logq: torch.Tensor, u: torch.Tensor, mask: torch.Tensor,
              beta: torch.Tensor, cap_u: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The step's record from a solver result (``None``: the solve raised); ``cap_u``
        the caps in utility units (or ``None``)."""
        if res is not None:
            logpi = res.log_policy.to(logq.dtype)
            thr = res.thresholds.to(logq.dtype)
            residual = torch.as_tensor(res.residual, device=logq.device).to(logq.dtype)
            nit = torch.as_tensor(res.nit, device=logq.device)
            success = torch.as_tensor(res.success, device=logq.device).bool()
        else:
            n, m = u.shape[0], u.shape[1]
            logpi = logq.clone()
            thr = torch.full((n, m), math.nan, device=logq.device)
            residual = torch.full((n,), math.inf, device=logq.device)
            nit = torch.zeros(n, dtype=torch.long, device=logq.device)
            success = torch.zeros(n, dtype=torch.bool, device=logq.device)
        success = success & torch.isfinite(thr).all(1)
        tau = (u - thr.nan_to_num(0.0).unsqueeze(2)).clamp_min(0.0)
        if cap_u is not None:
            tau = torch.minimum(tau, cap_u.to(tau.dtype).unsqueeze(2))
        tau = tau * mask.unsqueeze(1)
        b = beta.view(-1, 1, 1)
        logpi = torch.where(mask, logpi, torch.zeros_like(logpi))
        kl = torch.where(success, _kl(logpi, logq, mask), torch.zeros_like(beta))
        return {"log_policy": logpi, "thresholds": thr / beta.unsqueeze(1),
                "transfers": tau / b, "residual": residual, "nit": nit, "success": success,
                "kl": kl, "beta": beta.clone()}


class LinearMixingProcessor(_GameProcessor):
    """The linear-mixing baseline: ``pi ∝ p0 * exp(sum_i w_i r_i / beta)`` on the candidates.

    Same parameters as :class:`CageLogitsProcessor` (without the solver): same candidates,
    per-objective normalisation, weights and target-KL mode, so the two can be compared at
    matched KL. The trace's ``transfers`` hold each objective's tilt ``w_i r_i / beta``, shifted
    so that its smallest value on the row is 0, and ``thresholds`` are NaN.

    ``clip`` (float or one per objective, in units of the temperature) is the simple variant
    that shares the equilibrium's bounded payments: each objective's tilt, shifted to be 0 on
    its worst candidate, is capped at ``clip_i`` (``pi ∝ p0 exp(sum_i min(t_i, clip_i))``).
    """

    kind = "linear"

    def __init__(self, objectives: Sequence[Objective], weights: Any = None, *,
                 beta: float | None = None, target_kl: float | None = None,
                 top_k: int | None = 20, top_p: float | None = None,
                 eos_token_id: int | Sequence[int] | None = None, record: bool = True,
                 kl_budget: str = "sequence", clip: Any = None) -> None:
        super().__init__(objectives, weights, beta=beta, target_kl=target_kl, top_k=top_k,
                         top_p=top_p, eos_token_id=eos_token_id, record=record,
                         kl_budget=kl_budget)
        self.clip = _as_caps(clip, len(self.objectives), "clip")

    def _policy(self, logq: torch.Tensor, u: torch.Tensor, mask: torch.Tensor,
                beta: torch.Tensor, target_mode: bool = False) -> dict[str, torch.Tensor]:
        b = beta.view(-1, 1)
        if self.clip is not None:  # each tilt shifted to start at 0 and capped at clip_i
            per = u / b.unsqueeze(2)
            per = per - per.masked_fill(~mask.unsqueeze(1), math.inf).amin(2, keepdim=True)
            per = torch.minimum(per, self.clip.to(per.device, per.dtype).view(1, -1, 1))
            tilt = (per * mask.unsqueeze(1)).sum(1)
        else:
            tilt = u.sum(1) / b
        z = torch.where(mask, logq + tilt, torch.full_like(logq, -math.inf))
        logpi = z - torch.logsumexp(z, dim=1, keepdim=True)
        logpi = torch.where(mask, logpi, torch.zeros_like(logpi))
        n, m = u.shape[0], u.shape[1]
        per = u / b.unsqueeze(2)
        per = (per - per.masked_fill(~mask.unsqueeze(1), math.inf).amin(2, keepdim=True)
               ) * mask.unsqueeze(1)
        return {"log_policy": logpi, "thresholds": torch.full((n, m), math.nan,
                                                               device=logq.device),
                "transfers": per, "residual": torch.zeros(n, device=logq.device),
                "nit": torch.zeros(n, dtype=torch.long, device=logq.device),
                "success": torch.ones(n, dtype=torch.bool, device=logq.device),
                "kl": _kl(logpi, logq, mask), "beta": beta.clone()}
