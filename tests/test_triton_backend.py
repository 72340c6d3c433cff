"""The fused Triton kernel (``backend="triton"``), run on the CPU in Triton's interpreter.

The kernel is checked against the CPU backends and :func:`cage_games.solve` on small games
with masks, caps, ties and target KL, and its decision trace against the torch backend's
(one Newton specification: :mod:`cage_games._newton_spec`). The interpreter is slow, so the
games are small.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
triton = pytest.importorskip("triton")

import cage_games as cg  # noqa: E402
from cage_games.torch import (  # noqa: E402
    _triton,
    solve_batch,
    solve_batch_kl,
)

pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available(),
    reason="needs TRITON_INTERPRET=1 (set by conftest before torch is imported) or a GPU",
)
DEV = "cuda" if torch.cuda.is_available() else "cpu"


def _games(B, m, n, seed, masked=False, capped=False, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    v = 2.0 * torch.randn(B, n, generator=g, dtype=torch.float64)
    u = torch.randn(B, m, n, generator=g, dtype=torch.float64) * (
        0.5 + 2.5 * torch.rand(B, m, 1, generator=g, dtype=torch.float64)
    )
    beta = 0.2 + 1.5 * torch.rand(B, generator=g, dtype=torch.float64)
    mask = None
    if masked:
        mask = torch.rand(B, n, generator=g) < 0.6
        mask[:, 0] = True
    caps = None
    if capped:
        caps = torch.full((B, m), math.inf, dtype=torch.float64)
        caps[:, 0] = 0.4
    to = lambda x: None if x is None else x.to(DEV, dtype)  # noqa: E731
    return to(v), to(u), to(beta), None if mask is None else mask.to(DEV), to(caps)


@pytest.mark.parametrize(
    ("m", "n", "masked", "capped"),
    [(1, 7, False, False), (3, 20, True, False), (4, 20, False, True), (2, 40, True, True)],
    ids=["m1", "mask", "caps", "mask+caps"],
)
def test_triton_matches_native_and_torch(m, n, masked, capped):
    v, u, beta, mask, caps = _games(3, m, n, 11 * m + n, masked, capped)
    tri = solve_batch(v, u, beta, mask, caps, backend="triton")
    ref = solve_batch(v.cpu(), u.cpu(), beta.cpu(), None if mask is None else mask.cpu(),
                      None if caps is None else caps.cpu(), backend="torch")  # fmt: skip
    assert tri.backend == "triton" and bool(tri.success.all()), tri
    assert float((tri.policy.cpu() - ref.policy).abs().max()) <= 1e-12
    assert float((tri.thresholds.cpu() - ref.thresholds).abs().max()) <= 1e-9
    # the two follow one specification: the same number of trial evaluations
    assert tri.nit.cpu().tolist() == ref.nit.tolist()
    if mask is not None:
        assert bool((tri.log_policy[~mask] == -math.inf).all())


def test_triton_matches_core_solver_with_ties():
    # ties: two actions with identical utilities everywhere, and a principal indifferent
    v = np.array([0.0, 0.0, 1.0, -1.0, 0.5])
    u = np.array([[1.0, 1.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0], [0.5, 0.5, 2.0, 0.0, 1.0]])
    beta = 0.3
    game = cg.CommonAgencyGame(cg.Agent(utility=v, beta=beta),
                               [cg.Principal(utility=r) for r in u])  # fmt: skip
    res = cg.solve(game)
    tv = torch.tensor(v[None], device=DEV)
    tu = torch.tensor(u[None], device=DEV)
    sol = solve_batch(tv, tu, beta, backend="triton")
    assert bool(sol.success.all())
    np.testing.assert_allclose(sol.policy[0].cpu().numpy(), res.policy, atol=1e-10)
    np.testing.assert_allclose(sol.thresholds[0].cpu().numpy(), res.thresholds, atol=1e-8)
    p = sol.policy[0].cpu().numpy()
    assert p[0] == pytest.approx(p[1], abs=1e-15)


def test_triton_float32_agreement():
    v, u, beta, mask, caps = _games(2, 3, 30, 5, True, True, dtype=torch.float32)
    tri = solve_batch(v, u, beta, mask, caps, backend="triton")
    ref = solve_batch(v.double().cpu(), u.double().cpu(), beta.double().cpu(), mask.cpu(),
                      caps.double().cpu(), backend="torch")  # fmt: skip
    assert tri.log_policy.dtype == torch.float32 and bool(tri.success.all())
    assert float((tri.policy.double().cpu() - ref.policy).abs().max()) <= 1e-5


def test_triton_trace_follows_the_spec():
    from cage_games._newton_spec import Code

    v, u, beta, _, caps = _games(2, 3, 16, 3, capped=True)
    lp = v.contiguous()
    ones = torch.ones_like(beta)
    tol = torch.full_like(beta, 1e-11)
    out = _triton.solve(lp, u.contiguous(), ones, beta, caps, tol, max_iter=100, trace=64)
    tr = out["trace"].cpu().numpy()
    nit = out["nit"].cpu().numpy()
    for b in range(2):
        codes = [c for c in tr[b] if c != Code.IDLE]
        assert len(codes) == nit[b]
        if out["status"][b] == 0 and nit[b] > 0:
            assert codes[-1] == Code.CONVERGED


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_target_kl_search(backend):
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 20, generator=g, dtype=torch.float64).to(DEV)
    r = torch.randn(3, 2, 20, generator=g, dtype=torch.float64).to(DEV)
    if backend == "torch":
        logits, r = logits.cpu(), r.cpu()
    target = torch.tensor([0.05, 0.3, 1.0], dtype=torch.float64, device=logits.device)
    sol = solve_batch_kl(logits, r, target_kl=target, backend=backend)
    assert bool(sol.kl_reached.all())
    ratio = (sol.kl / target).cpu()
    assert bool(((ratio - 1).abs() <= 0.031).all()), ratio
    # the strength found gives the same equilibrium when solved at fixed beta
    fixed = solve_batch_kl(logits.cpu(), r.cpu(), beta=sol.beta.cpu(), backend="torch")
    assert float((fixed.policy - sol.policy.cpu()).abs().max()) <= 1e-9
    # KL computed by the kernel = KL of the returned policy
    p0 = torch.log_softmax(logits.cpu(), -1)
    kl = (fixed.policy * (fixed.log_policy - p0)).sum(-1)
    assert float((kl - sol.kl.cpu()).abs().max()) <= 1e-9


def test_target_kl_search_is_one_search():
    """The kernel's in-launch strength search and the batched one of the CPU backends follow
    :mod:`cage_games.torch._klsearch`: the same strengths, not only KLs within tolerance."""
    rng = np.random.default_rng(1)
    for _ in range(3):
        B, m, n = 2, int(rng.integers(1, 5)), int(rng.integers(2, 30))
        lg = torch.tensor(rng.normal(size=(B, n)) * rng.uniform(0.5, 4))
        u = torch.tensor(rng.normal(size=(B, m, n)) * rng.uniform(0.1, 3))
        tgt = float(10 ** rng.uniform(-2, 0.3))
        a = solve_batch_kl(lg, u, target_kl=tgt, backend="torch")
        b = solve_batch_kl(lg.to(DEV), u.to(DEV), target_kl=tgt, backend="triton")
        np.testing.assert_allclose(b.beta.cpu().numpy(), a.beta.numpy(), rtol=1e-9)
        assert b.kl_reached.cpu().tolist() == a.kl_reached.tolist()


def test_target_kl_unreachable_is_reported():
    logits = torch.randn(2, 10, dtype=torch.float64, device=DEV)
    r = torch.zeros(2, 1, 10, dtype=torch.float64, device=DEV)  # every reward ties
    r[1, 0, 3] = 1.0
    sol = solve_batch_kl(logits, r, target_kl=50.0, backend="triton")
    assert not bool(sol.kl_reached.any())
    assert bool(torch.isfinite(sol.log_policy.exp().sum(-1)).all())
    assert float(sol.kl[0]) == pytest.approx(0.0, abs=1e-12)


def test_backend_errors():
    v = torch.zeros(1, 3, dtype=torch.float64)
    u = torch.zeros(1, 1, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="backend must be one of"):
        solve_batch(v, u, 1.0, backend="cuda")
    with pytest.raises(ValueError, match="give exactly one of beta"):
        solve_batch_kl(v, u, beta=1.0, target_kl=0.1)
    with pytest.raises(ValueError, match="give exactly one of beta"):
        solve_batch_kl(v, u)
    assert solve_batch(v, u, 1.0, backend="auto").backend in {"native", "torch"}


def test_triton_unchecked_empty_row_fails_without_nan():
    v = torch.tensor([[0.0, 1.0, 2.0], [0.0, 0.0, 0.0]], dtype=torch.float64, device=DEV)
    u = torch.ones(2, 1, 3, dtype=torch.float64, device=DEV)
    mask = torch.tensor([[True, True, True], [False, False, False]], device=DEV)
    sol = solve_batch(v, u, 1.0, mask, check_inputs=False, backend="triton")
    assert bool(sol.success[0]) and not bool(sol.success[1])
    assert not bool(torch.isnan(sol.log_policy).any())
    with pytest.raises(ValueError, match="excludes every action"):
        solve_batch(v, u, 1.0, mask, backend="triton")


def test_triton_makes_the_numpy_decisions_on_hard_games():
    """The hard-game suite of tests/test_newton_spec.py (small beta, binding caps, ties,
    m = 8, masks): the Triton kernel's decision trace equals numpy's step by step."""
    from test_newton_spec import MAX_ITER, TOL, hard_batches, numpy_runs

    from cage_games._newton_spec import trace_rows

    seen = set()
    for v, u, beta, caps, mask in hard_batches(3, count=4, B=3):
        ref = numpy_runs(v, u, beta, caps, mask)
        B = u.shape[0]
        lp = torch.tensor(v if mask is None else np.where(mask, v, -np.inf))
        cap = None if caps is None else torch.tensor(caps)
        out = _triton.solve(
            lp.to(DEV).contiguous(), torch.tensor(u).to(DEV).contiguous(),
            torch.ones(B, dtype=torch.float64, device=DEV), torch.tensor(beta).to(DEV),
            None if cap is None else cap.to(DEV).contiguous(),
            torch.full((B,), TOL, dtype=torch.float64, device=DEV), max_iter=MAX_ITER,
            trace=MAX_ITER,
        )  # fmt: skip
        rows = trace_rows(out["trace"].cpu())
        for b, (trace, _status, nit, thresholds) in enumerate(ref):
            assert rows[b] == trace, b
            assert int(out["nit"][b]) == nit
            np.testing.assert_allclose(out["thresholds"][b].cpu().numpy(), thresholds,
                                       rtol=1e-8, atol=1e-9)  # fmt: skip
            seen.update(trace)
    assert len(seen) >= 4, seen  # the suite exercises more than plain Newton steps


@pytest.mark.parametrize("mode", [{"beta": 0.4}, {"target_kl": 0.3}], ids=["beta", "target"])
def test_caps_in_units_of_beta(mode):
    """caps_unit="beta": tau_i <= caps_i * beta at whatever strength the search finds; the
    kernel and the CPU backends agree, and the bound holds."""
    g = torch.Generator().manual_seed(4)
    lg = torch.randn(2, 15, generator=g, dtype=torch.float64)
    r = 2 * torch.randn(2, 3, 15, generator=g, dtype=torch.float64)
    caps = torch.tensor([0.5, math.inf, 1.0], dtype=torch.float64)
    a = solve_batch_kl(lg, r, caps=caps, caps_unit="beta", backend="torch", **mode)
    b = solve_batch_kl(lg.to(DEV), r.to(DEV), caps=caps.to(DEV), caps_unit="beta",
                       backend="triton", **mode)  # fmt: skip
    assert bool(a.success.all()) and bool(b.success.all())
    assert float((a.policy - b.policy.cpu()).abs().max()) <= 1e-9
    beta = a.beta.unsqueeze(1)
    tau = (r - a.thresholds.unsqueeze(2)).clamp_min(0) / beta.unsqueeze(2)
    paid = torch.minimum(tau, caps.view(1, 3, 1))
    # the policy is p0 * exp(sum_i min(tau_i, caps_i)) (up to normalisation)
    lp = torch.log_softmax(lg, -1) + paid.sum(1)
    assert float((torch.log_softmax(lp, -1) - a.log_policy).abs().max()) <= 1e-9
    with pytest.raises(ValueError, match="caps_unit"):
        solve_batch_kl(lg, r, beta=1.0, caps=caps, caps_unit="nats")


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_beta_hint_starts_the_search_near_the_answer(backend):
    """A hint (the strength the row needed at the previous step) lands on the same strength as
    a cold search, in fewer solves; a hint above or below the answer both work."""
    g = torch.Generator().manual_seed(6)
    lg = torch.randn(3, 20, generator=g, dtype=torch.float64)
    r = torch.randn(3, 2, 20, generator=g, dtype=torch.float64)
    dev = DEV if backend == "triton" else "cpu"
    lg, r = lg.to(dev), r.to(dev)
    cold = solve_batch_kl(lg, r, target_kl=0.3, backend=backend)
    for scale in (0.7, 1.3):
        warm = solve_batch_kl(lg, r, target_kl=0.3, beta_hint=cold.beta * scale,
                              backend=backend)  # fmt: skip
        assert bool(warm.kl_reached.all())
        assert bool(((warm.kl / 0.3 - 1).abs() <= 0.031).all())
        assert int(warm.nit.sum()) < int(cold.nit.sum())
    exact = solve_batch_kl(lg, r, target_kl=0.3, beta_hint=cold.beta, backend=backend)
    np.testing.assert_allclose(exact.beta.cpu().numpy(), cold.beta.cpu().numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match="beta_hint only applies"):
        solve_batch_kl(lg, r, beta=1.0, beta_hint=cold.beta, backend=backend)
