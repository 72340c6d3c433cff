"""The batched torch backend (``cage_games.torch``) against independent computations.

Order of trust: a hand-solved game (closed-form fixed point solved here with scipy's brentq),
then the single-game threshold system (``cg.ThresholdSystem.residual`` at the returned
thresholds, which shares no code with the batched kernel), then agreement with the numpy
solver ``cg.solve`` on random games, then properties (hypothesis) and validation.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import cage_games as cg  # noqa: E402
from cage_games.torch import BatchSolution, solve_batch, solve_batch_kl  # noqa: E402

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


# -- helpers --------------------------------------------------------------------------------
def numpy_game(v, u, beta, support=None, caps=None):
    """The same game as a cage_games object (row of a batch)."""
    m = u.shape[0]
    caps = [None] * m if caps is None else [None if not np.isfinite(c) else float(c) for c in caps]
    agent = cg.Agent(np.asarray(v, float), beta=float(beta), support=support)
    return cg.CommonAgencyGame(agent, [cg.Principal(u[i], cap=caps[i]) for i in range(m)])


def random_batch(rng, B, m, n, *, beta_range=(0.3, 2.0), scale=(0.5, 3.0)):
    v = rng.normal(size=(B, n)) * 2.0
    u = rng.normal(size=(B, m, n)) * rng.uniform(*scale, size=(B, m, 1))
    beta = rng.uniform(*beta_range, size=B)
    return v, u, beta


def reference_solutions(v, u, beta, mask=None, caps=None):
    out = []
    for b in range(v.shape[0]):
        support = None if mask is None else mask[b]
        vb = v[b] if mask is None else np.where(mask[b], v[b], 0.0)
        game = numpy_game(vb, u[b], beta[b], support, None if caps is None else caps[b])
        res = cg.solve(game, method="newton")
        assert res.success, res.message
        out.append(res)
    return out


def ts_residual(v, u, beta, thresholds, support=None, caps=None):
    """max |G| from the single-game numpy kernel at the given thresholds."""
    game = numpy_game(v, u, beta, support, caps)
    return float(np.max(np.abs(cg.ThresholdSystem(game).residual(thresholds))))


# -- a hand-solved game ---------------------------------------------------------------------
def test_two_action_closed_form():
    # v = 0, one principal with u = (0, a), beta = 1. If it pays on action 1 only
    # (tau = (0, a - c), 0 < c < a) then pi_1 = e^{a-c} / (1 + e^{a-c}) and
    # G = pi_0 * c - 1 = 0, i.e. c = 1 + e^{a - c}: solved here by bisection, independently of
    # the library. That case holds iff a > 2; for a <= 2 nobody pays and c = E[u] + 1 = a/2 + 1.
    from scipy.optimize import brentq

    a_values = [0.5, 3.0, 5.0, 8.0]
    exact = [
        a / 2 + 1
        if a <= 2
        else brentq(lambda c, a=a: c - 1.0 - math.exp(a - c), 0.0, a, xtol=1e-15)
        for a in a_values
    ]
    u = torch.tensor([[[0.0, a]] for a in a_values], dtype=torch.float64)
    v = torch.zeros(len(a_values), 2, dtype=torch.float64)
    sol = solve_batch(v, u, 1.0)
    assert bool(sol.success.all())
    np.testing.assert_allclose(sol.thresholds[:, 0].numpy(), exact, rtol=0, atol=1e-10)
    for k, (a, c) in enumerate(zip(a_values, exact, strict=True)):
        p1 = 0.5 if a <= 2 else math.exp(a - c) / (1.0 + math.exp(a - c))
        np.testing.assert_allclose(sol.policy[k].numpy(), [1 - p1, p1], atol=1e-10)


def test_nobody_pays_when_stakes_are_small():
    # u_i varies by less than beta around E_p0[u_i]: the root is c_i = E_p0[u_i] + beta,
    # every transfer is zero and the policy is the agent's own softmax(v / beta).
    rng = np.random.default_rng(3)
    v = torch.tensor(rng.normal(size=(4, 7)))
    u = torch.tensor(rng.uniform(0.0, 0.3, size=(4, 2, 7)))
    sol = solve_batch(v, u, 2.0)
    p0 = torch.softmax(v / 2.0, -1)
    torch.testing.assert_close(sol.policy, p0, atol=1e-12, rtol=0)
    expected = torch.einsum("bmn,bn->bm", u, p0) + 2.0
    torch.testing.assert_close(sol.thresholds, expected, atol=1e-10, rtol=0)
    assert int(sol.nit.max()) == 0  # the starting point is the root


# -- agreement with the numpy solver --------------------------------------------------------
@pytest.mark.parametrize(("m", "n"), [(1, 5), (2, 12), (3, 20), (4, 9), (8, 16)])
def test_agrees_with_numpy_solver_float64(m, n):
    rng = np.random.default_rng(100 + 10 * m + n)
    B = 12
    v, u, beta = random_batch(rng, B, m, n)
    sol = solve_batch(torch.tensor(v), torch.tensor(u), torch.tensor(beta))
    assert sol.log_policy.dtype == torch.float64
    assert bool(sol.success.all()), sol
    refs = reference_solutions(v, u, beta)
    for b, ref in enumerate(refs):
        np.testing.assert_allclose(sol.policy[b].numpy(), ref.policy, rtol=0, atol=1e-9)
        np.testing.assert_allclose(sol.thresholds[b].numpy(), ref.thresholds, rtol=0, atol=1e-7)
        # the residual the backend reports is the one the single-game kernel computes
        r_ts = ts_residual(v[b], u[b], beta[b], sol.thresholds[b].numpy())
        assert r_ts <= 1e-10
        assert abs(r_ts - float(sol.residual[b])) <= 1e-12


def test_agrees_with_numpy_solver_float32():
    rng = np.random.default_rng(7)
    B, m, n = 16, 3, 40
    v, u, beta = random_batch(rng, B, m, n)
    sol = solve_batch(
        torch.tensor(v, dtype=torch.float32),
        torch.tensor(u, dtype=torch.float32),
        torch.tensor(beta, dtype=torch.float32),
    )
    assert sol.log_policy.dtype == torch.float32
    assert bool(sol.success.all()), sol
    refs = reference_solutions(v, u, beta)
    worst = max(
        float(np.max(np.abs(sol.policy[b].double().numpy() - r.policy))) for b, r in enumerate(refs)
    )
    assert worst <= 1e-5


def test_small_temperatures_use_the_fallbacks_and_still_agree():
    # beta down to 0.03 with utilities of order 1-3: Newton alone stalls on plateaus here; the
    # Gauss-Seidel fallback and the temperature continuation must bring every row home.
    rng = np.random.default_rng(11)
    B, m, n = 24, 3, 15
    v, u, beta = random_batch(rng, B, m, n, beta_range=(0.03, 0.1))
    sol = solve_batch(torch.tensor(v), torch.tensor(u), torch.tensor(beta), max_iter=300)
    assert bool(sol.success.all()), sol
    for b, ref in enumerate(reference_solutions(v, u, beta)):
        np.testing.assert_allclose(sol.policy[b].numpy(), ref.policy, rtol=0, atol=1e-8)


def test_masks_match_numpy_support():
    rng = np.random.default_rng(5)
    B, m, n = 10, 2, 12
    v, u, beta = random_batch(rng, B, m, n)
    mask = rng.random((B, n)) < 0.6
    mask[:, 0] = True
    mask[3] = False
    mask[3, 4] = True  # a row with a single allowed action
    sol = solve_batch(torch.tensor(v), torch.tensor(u), torch.tensor(beta), mask=torch.tensor(mask))
    assert bool(sol.success.all())
    assert not bool(torch.isnan(sol.log_policy).any())
    assert bool(torch.isneginf(sol.log_policy[~torch.tensor(mask)]).all())
    assert float(sol.log_policy[3, 4]) == 0.0
    for b, ref in enumerate(reference_solutions(v, u, beta, mask=mask)):
        np.testing.assert_allclose(sol.policy[b].numpy(), ref.policy, rtol=0, atol=1e-9)


def test_neg_inf_in_v_means_masked():
    rng = np.random.default_rng(8)
    v, u, beta = random_batch(rng, 3, 2, 6)
    mask = np.ones((3, 6), bool)
    mask[:, [1, 4]] = False
    v_inf = np.where(mask, v, -np.inf)
    a = solve_batch(torch.tensor(v_inf), torch.tensor(u), torch.tensor(beta))
    b = solve_batch(torch.tensor(v), torch.tensor(u), torch.tensor(beta), mask=torch.tensor(mask))
    torch.testing.assert_close(a.log_policy, b.log_policy, atol=1e-12, rtol=0)


def test_caps_binding_agree_with_numpy():
    rng = np.random.default_rng(9)
    B, m, n = 8, 2, 10
    v, u, beta = random_batch(rng, B, m, n, beta_range=(0.5, 1.5))
    caps = np.tile([0.3, np.inf], (B, 1))
    sol = solve_batch(torch.tensor(v), torch.tensor(u), torch.tensor(beta), caps=torch.tensor(caps))
    assert bool(sol.success.all())
    tau = (torch.tensor(u) - sol.thresholds.unsqueeze(-1)).clamp(min=0)
    assert float(tau[:, 0].max()) > 0.3  # the cap binds somewhere ...
    for b, ref in enumerate(reference_solutions(v, u, beta, caps=caps)):
        np.testing.assert_allclose(sol.policy[b].numpy(), ref.policy, rtol=0, atol=1e-9)
        r = ts_residual(v[b], u[b], beta[b], sol.thresholds[b].numpy(), caps=caps[b])
        assert r <= 1e-10
    # ... and a scalar cap or a (m,) cap mean the same as the broadcast (B, m) tensor
    s2 = solve_batch(
        torch.tensor(v),
        torch.tensor(u),
        torch.tensor(beta),
        caps=torch.tensor([0.3, math.inf], dtype=torch.float64),
    )
    torch.testing.assert_close(s2.log_policy, sol.log_policy)
    s3 = solve_batch(torch.tensor(v), torch.tensor(u), torch.tensor(beta), caps=0.3)
    assert bool(s3.success.all())


def test_one_action_and_single_principal():
    v = torch.zeros(2, 1, dtype=torch.float64)
    u = torch.tensor([[[3.0]], [[-1.0]]], dtype=torch.float64)
    sol = solve_batch(v, u, 0.5)
    assert bool(sol.success.all())
    assert sol.log_policy.tolist() == [[0.0], [0.0]]
    # one action: the principal pays nothing and c = u + beta
    torch.testing.assert_close(sol.thresholds[:, 0], torch.tensor([3.5, -0.5], dtype=torch.float64))


def test_fixed_iterations_match_tolerance_mode():
    rng = np.random.default_rng(12)
    v, u, beta = random_batch(rng, 6, 3, 25)
    args = (torch.tensor(v), torch.tensor(u), torch.tensor(beta))
    a = solve_batch(*args)
    b = solve_batch(*args, fixed_iters=40, check_inputs=False)
    assert b.mode == "fixed" and a.mode == "tolerance"
    assert bool(b.success.all())
    torch.testing.assert_close(a.log_policy, b.log_policy, atol=1e-10, rtol=0)
    torch.testing.assert_close(a.nit, b.nit)  # converged rows are frozen: same work counted
    # zero iterations: the starting point, with a residual that belongs to it
    z = solve_batch(*args, fixed_iters=0)
    for k in range(6):
        r = ts_residual(v[k], u[k], beta[k], z.thresholds[k].numpy())
        assert abs(r - float(z.residual[k])) <= 1e-12


def test_half_precision_is_upcast_and_kl_wrapper():
    rng = np.random.default_rng(13)
    logits = torch.tensor(rng.normal(size=(4, 30)) * 2, dtype=torch.bfloat16)
    u = torch.tensor(rng.normal(size=(4, 2, 30)), dtype=torch.bfloat16)
    sol = solve_batch_kl(logits, u, 1.0)
    assert sol.log_policy.dtype == torch.float32 and bool(sol.success.all())
    v = torch.log_softmax(logits.float(), -1)
    ref = solve_batch(v, u.float(), 1.0)
    torch.testing.assert_close(sol.log_policy, ref.log_policy)
    # the KL wrapper with a mask renormalises over the allowed candidates
    mask = torch.ones(4, 30, dtype=torch.bool)
    mask[:, 10:] = False
    lg = logits.double()
    s_mask = solve_batch_kl(lg, u.double(), 0.7, mask=mask)
    s_cut = solve_batch_kl(lg[:, :10], u.double()[:, :, :10], 0.7)
    torch.testing.assert_close(s_mask.log_policy[:, :10], s_cut.log_policy, atol=1e-12, rtol=0)
    assert bool(torch.isneginf(s_mask.log_policy[:, 10:]).all())


def test_per_row_beta_equals_separate_solves():
    rng = np.random.default_rng(14)
    v, u, _ = random_batch(rng, 3, 2, 8)
    betas = [0.2, 1.0, 5.0]
    sol = solve_batch(torch.tensor(v), torch.tensor(u), torch.tensor(betas, dtype=torch.float64))
    for k, b in enumerate(betas):
        one = solve_batch(torch.tensor(v[k : k + 1]), torch.tensor(u[k : k + 1]), b)
        torch.testing.assert_close(sol.log_policy[k], one.log_policy[0], atol=1e-10, rtol=0)


def test_large_stakes_no_nan_float32():
    # utilities of order 1e3 / beta: exp would overflow without log-sum-exp stabilisation
    rng = np.random.default_rng(15)
    v = torch.tensor(rng.normal(size=(3, 50)) * 100, dtype=torch.float32)
    u = torch.tensor(rng.normal(size=(3, 2, 50)) * 1000, dtype=torch.float32)
    sol = solve_batch(v, u, 1.0, tol=1e-3, max_iter=300)
    assert torch.isfinite(sol.thresholds).all() and not torch.isnan(sol.log_policy).any()
    # log-probabilities of size 1e3 carry float32 rounding of about 1e3 * 6e-8
    torch.testing.assert_close(sol.policy.sum(-1), torch.ones(3), atol=1e-3, rtol=0)


# -- properties ----------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    m=st.integers(1, 4),
    n=st.integers(1, 10),
    beta=st.floats(0.2, 3.0),
    masked=st.booleans(),
)
def test_property_root_of_threshold_system(seed, m, n, beta, masked):
    rng = np.random.default_rng(seed)
    v, u, _ = random_batch(rng, 2, m, n)
    mask = rng.random((2, n)) < 0.7 if masked else np.ones((2, n), bool)
    mask[:, rng.integers(n)] = True
    sol = solve_batch(torch.tensor(v), torch.tensor(u), beta, mask=torch.tensor(mask))
    assert bool(sol.success.all())
    pol = sol.policy
    torch.testing.assert_close(pol.sum(-1), torch.ones(2, dtype=torch.float64))
    assert bool((pol[~torch.tensor(mask)] == 0).all())
    for b in range(2):
        r = ts_residual(
            np.where(mask[b], v[b], 0.0), u[b], beta, sol.thresholds[b].numpy(), support=mask[b]
        )
        assert r <= 1e-10
        # thresholds lie in the existence box [min u, max u + beta] over the allowed actions
        ub = u[b][:, mask[b]]
        c = sol.thresholds[b].numpy()
        assert np.all(c >= ub.min(1) - 1e-12) and np.all(c <= ub.max(1) + beta + 1e-12)


# -- validation ----------------------------------------------------------------------------
def _ok_args():
    return torch.zeros(2, 3), torch.zeros(2, 1, 3)


@pytest.mark.parametrize(
    ("kwargs", "exc", "word"),
    [
        ({"v": torch.zeros(3)}, ValueError, "v must have shape"),
        ({"utilities": torch.zeros(2, 3)}, ValueError, "utilities must have shape"),
        ({"utilities": torch.zeros(2, 1, 4)}, ValueError, "utilities has shape"),
        ({"utilities": torch.zeros(2, 1, 3, dtype=torch.float64)}, TypeError, "dtype"),
        ({"v": torch.tensor([[0.0, float("nan"), 0.0]] * 2)}, ValueError, "v contains NaN"),
        ({"v": torch.tensor([[0.0, float("inf"), 0.0]] * 2)}, ValueError, "v must be finite"),
        (
            {"utilities": torch.full((2, 1, 3), float("-inf"))},
            ValueError,
            "utilities must be finite",
        ),
        ({"beta": 0.0}, ValueError, "menu auction"),
        ({"beta": -1.0}, ValueError, "beta"),
        ({"beta": torch.tensor([1.0, 0.0])}, ValueError, "beta must be > 0"),
        ({"beta": torch.ones(2, dtype=torch.float64)}, TypeError, "beta has dtype"),
        ({"beta": torch.ones(3)}, ValueError, "beta must be a scalar or have shape"),
        ({"mask": torch.zeros(2, 3, dtype=torch.bool)}, ValueError, "mask"),
        ({"mask": torch.ones(2, 3)}, TypeError, "mask must be a torch.bool"),
        ({"mask": torch.ones(2, 4, dtype=torch.bool)}, ValueError, "mask must have shape"),
        ({"caps": 0.0}, ValueError, "caps"),
        ({"caps": torch.tensor([-1.0])}, ValueError, "caps"),
        ({"caps": torch.ones(2, 2)}, ValueError, "caps must be"),
        ({"v": [[0.0, 0.0, 0.0]] * 2}, TypeError, "v must be a torch.Tensor"),
        ({"v": torch.zeros(2, 3, dtype=torch.int64)}, TypeError, "v must be a floating-point"),
        ({"utilities": torch.zeros(2, 1, 3, device="meta")}, ValueError, "utilities is on meta"),
        ({"tol": -1.0}, ValueError, "tol"),
        ({"fixed_iters": -2}, ValueError, "fixed_iters"),
    ],
)
def test_validation_names_the_argument(kwargs, exc, word):
    v, u = _ok_args()
    args = {"v": v, "utilities": u, "beta": 1.0, **kwargs}
    with pytest.raises(exc, match=word):
        solve_batch(**args)


def test_all_masked_row_unchecked_gives_no_nan():
    v = torch.zeros(3, 4)
    u = torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[1] = False
    sol = solve_batch(v, u, 1.0, mask=mask, check_inputs=False)
    assert not bool(torch.isnan(sol.log_policy).any())
    assert not bool(torch.isnan(sol.thresholds).any()) and not bool(torch.isnan(sol.residual).any())
    assert sol.success.tolist() == [True, False, True]
    assert bool(torch.isneginf(sol.log_policy[1]).all())
    with pytest.raises(ValueError, match="mask"):
        solve_batch_kl(v, u, 1.0, mask=mask)


def test_result_record_is_frozen_and_core_does_not_import_torch():
    sol = solve_batch(*_ok_args(), 1.0)
    assert isinstance(sol, BatchSolution)
    with pytest.raises(AttributeError):
        sol.tol = 1.0  # type: ignore[misc]
    assert "BatchSolution(B=2" in repr(sol)
    code = "import sys, cage_games; assert 'torch' not in sys.modules, 'core imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- the log-form residual and the fused CPU kernel ------------------------------------------
from cage_games.torch import _kernel as K  # noqa: E402
from cage_games.torch import _native  # noqa: E402


@pytest.fixture(params=["fused", "torch"])
def path(request, monkeypatch):
    """Run a test with the fused CPU kernel and with plain torch operations."""
    if request.param == "torch":
        monkeypatch.setenv("CAGE_GAMES_TORCH_FUSED", "0")
    elif _native.kernels(torch.float64, 2, False) is None:
        pytest.skip("fused kernel disabled (CAGE_GAMES_TORCH_FUSED=0) or not buildable here")
    return request.param


def _data(v, u, beta, caps=None, fused=True):
    """Internal set-up of a batch (float64 numpy inputs) for one of the two paths."""
    dt = torch.float64 if v.dtype == np.float64 else torch.float32
    vt, ut = torch.tensor(v, dtype=dt), torch.tensor(u, dtype=dt).contiguous()
    bt = torch.tensor(beta, dtype=dt).reshape(-1, 1)
    cap = None if caps is None else torch.tensor(caps, dtype=dt)
    data, _, _ = K.setup(ut, vt, bt, cap, None)
    if not fused:
        data = data._replace(idx=None, kern=None, ib=None, kap=None, mom0=None, vmax0=None, ws={})
    return data, bt


@pytest.mark.parametrize("caps", [False, True])
@pytest.mark.parametrize("m", [1, 3])
def test_log_form_jacobian_matches_finite_differences(path, m, caps):
    # dF/dgamma of the batched evaluation against central differences of F, at random points
    # away from the kinks (the action set is finite, so F is smooth between them)
    rng = np.random.default_rng(40 + m + 10 * caps)
    B, n = 6, 37
    v, u, beta = random_batch(rng, B, m, n)
    cap = rng.uniform(0.5, 2.0, size=(B, m)) if caps else None
    data, bt = _data(v, u, beta, cap, fused=path == "fused")
    r = u / beta[:, None, None]
    gamma = torch.tensor(
        rng.uniform(r.min(-1), r.max(-1) + 1.0 if not caps else r.max(-1)), dtype=torch.float64
    )
    ev = K.evaluate(data, bt, gamma)
    h = 1e-6
    for j in range(m):
        e = torch.zeros(m, dtype=torch.float64)
        e[j] = h
        fp = K.evaluate(data, bt, gamma + e, jac=False).F
        fm = K.evaluate(data, bt, gamma - e, jac=False).F
        fd = (fp - fm) / (2 * h)
        torch.testing.assert_close(ev.J[:, :, j], fd, rtol=1e-5, atol=1e-6)
    # F and G vanish together: F = log(s / (1 + o)) (or rho - 1) and G = s - o - 1
    s_minus_o = ev.G + 1.0
    assert bool(((ev.F > 0) == (s_minus_o > 1)).all())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    ("m", "caps", "masked"), [(1, False, False), (2, True, True), (5, False, True)]
)
def test_fused_kernel_matches_torch_operations(dtype, m, caps, masked):
    if _native.kernels(dtype, m, caps) is None:
        pytest.skip("fused kernel disabled (CAGE_GAMES_TORCH_FUSED=0) or not buildable here")
    rng = np.random.default_rng(7 * m + caps)
    B, n = 5, 1024 + 37  # two chunks and a partial vector
    v, u, beta = random_batch(rng, B, m, n, beta_range=(0.2, 2.0))
    if masked:
        v[rng.random((B, n)) < 0.4] = -np.inf
        v[:, 3] = 0.0
    cap = rng.uniform(0.3, 2.0, size=(B, m)) if caps else None
    dt_np = np.float64 if dtype == torch.float64 else np.float32
    fused, bt = _data(v.astype(dt_np), u.astype(dt_np), beta.astype(dt_np), cap, fused=True)
    plain, _ = _data(v.astype(dt_np), u.astype(dt_np), beta.astype(dt_np), cap, fused=False)
    torch.testing.assert_close(fused.umin, plain.umin)
    torch.testing.assert_close(fused.umax, plain.umax)
    gamma = torch.tensor(rng.uniform(-1, 2, size=(B, m)), dtype=dtype)
    a = K.evaluate(fused, bt, gamma)
    b = K.evaluate(plain, bt, gamma)
    tight = dtype == torch.float64
    tol = {"rtol": 1e-10, "atol": 1e-11} if tight else {"rtol": 1e-4, "atol": 1e-5}
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, **tol)
    # a loose one-pass bound (far above the maximum) is detected and redone exactly
    c = K.evaluate(fused, bt, gamma, shift=(b.xmax.squeeze(-1) + 500.0))
    for x, y in zip(c, b, strict=True):
        torch.testing.assert_close(x, y, **tol)
    # and so is the log policy
    lp_a = K.log_policy(fused, bt, gamma, a.lse)
    lp_b = K.log_policy(plain, bt, gamma, b.lse)
    torch.testing.assert_close(lp_a, lp_b, **tol)


@pytest.mark.parametrize(
    ("beta_range", "masked", "caps"),
    [((0.3, 2.0), False, False), ((0.04, 0.1), True, False), ((0.2, 1.5), True, True)],
)
def test_both_paths_agree_with_numpy_solver(path, beta_range, masked, caps):
    # float64 within 1e-9 and float32 within 1e-5 of cg.solve, including small temperatures,
    # masks and binding caps, on the fused kernel and on plain torch operations
    rng = np.random.default_rng(int(100 * beta_range[0]) + 2 * masked + caps)
    B, m, n = 10, 3, 23
    v, u, beta = random_batch(rng, B, m, n, beta_range=beta_range)
    mask = None
    if masked:
        mask = rng.random((B, n)) < 0.7
        mask[:, 0] = True
    cap = np.tile([0.4, np.inf, 1.0], (B, 1)) if caps else None
    refs = reference_solutions(v, u, beta, mask=mask, caps=cap)
    kw = {
        "mask": None if mask is None else torch.tensor(mask),
        "caps": None if cap is None else torch.tensor(cap),
        "max_iter": 300,
    }
    s64 = solve_batch(torch.tensor(v), torch.tensor(u), torch.tensor(beta), **kw)
    assert bool(s64.success.all()), s64
    assert not bool(torch.isnan(s64.log_policy).any())
    f32 = {k: (x.float() if isinstance(x, torch.Tensor) and x.is_floating_point() else x)
           for k, x in kw.items()}  # fmt: skip
    s32 = solve_batch(
        torch.tensor(v, dtype=torch.float32),
        torch.tensor(u, dtype=torch.float32),
        torch.tensor(beta, dtype=torch.float32),
        **f32,
    )
    assert not bool(torch.isnan(s32.log_policy).any())
    for b, ref in enumerate(refs):
        np.testing.assert_allclose(s64.policy[b].numpy(), ref.policy, rtol=0, atol=1e-9)
        # float32: 1e-5, or the rounding floor of the log-weights u / beta where that is larger
        # (u / beta reaches 200 at beta = 0.04: 4 eps * 200 = 1e-4)
        floor = max(1e-5, 4 * np.finfo(np.float32).eps * np.abs(u[b]).max() / beta[b])
        err = float(np.abs(s32.policy[b].double().numpy() - ref.policy).max())
        assert err <= floor, (b, err, floor)


def test_tiny_unpaid_mass_and_small_beta_converge(path):
    # a principal paying for a dominant action at a small temperature: its unpaid actions
    # have probabilities far below 1e-30, where the log form works on log s_i (or its linear
    # extension below s_min) instead of creeping along G_i = -1
    v = np.array([[0.0, 0.0, 0.0, 0.0, 0.0]])
    u = np.array([[[3.0, 0.0, 0.1, 0.2, 0.0], [0.0, 2.9, 0.0, 0.3, 0.1]]])
    beta = np.array([0.02])
    sol = solve_batch(torch.tensor(v), torch.tensor(u), torch.tensor(beta), max_iter=300)
    assert bool(sol.success.all()), sol
    ref = reference_solutions(v, u, beta)[0]
    np.testing.assert_allclose(sol.policy[0].numpy(), ref.policy, rtol=0, atol=1e-9)


def test_kernel_build_failure_falls_back_to_torch(monkeypatch, tmp_path):
    # no compiler: one warning, then plain torch operations with the same results
    rng = np.random.default_rng(21)
    v, u, beta = random_batch(rng, 4, 2, 15)
    args = (torch.tensor(v), torch.tensor(u), torch.tensor(beta))
    expected = solve_batch(*args)
    monkeypatch.setattr(_native, "_LOADED", {})
    monkeypatch.setattr(_native, "_WARNED", False)
    monkeypatch.setenv("CAGE_GAMES_TORCH_FUSED", "1")
    monkeypatch.setenv("CAGE_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    with pytest.warns(UserWarning, match="fused CPU kernel is unavailable"):
        sol = solve_batch(*args)
    assert _native.kernels(torch.float64, 2, False) is None
    torch.testing.assert_close(sol.log_policy, expected.log_policy, atol=1e-10, rtol=0)


def test_scalar_tensor_beta_and_caps_broadcast(path):
    # a 0-d beta tensor and an (m,) caps tensor are expanded (stride 0) before the fused
    # kernel reads them: the results must equal those of per-row tensors
    rng = np.random.default_rng(31)
    v, u, _ = random_batch(rng, 5, 2, 19)
    vt, ut = torch.tensor(v), torch.tensor(u)
    caps = torch.tensor([0.5, math.inf], dtype=torch.float64)
    a = solve_batch(vt, ut, torch.tensor(0.7, dtype=torch.float64), caps=caps)
    b = solve_batch(vt, ut, torch.full((5,), 0.7, dtype=torch.float64), caps=caps.expand(5, 2))
    assert bool(a.success.all())
    torch.testing.assert_close(a.log_policy, b.log_policy, atol=1e-12, rtol=0)
    torch.testing.assert_close(a.thresholds, b.thresholds, atol=1e-12, rtol=0)
