"""One Newton specification (``cage_games._newton_spec``) followed by every backend.

The hard-game suite (small temperatures, binding caps, ties, m = 8, masks) runs through the
numpy solver, the torch loop without the fused kernel and the fused C++ kernel in float64;
the decision traces must agree step by step, not only the answers. Then the compiled kernel's
call protection and the trusted cache: a planted library never runs.

Documented divergence: where a principal's unpaid mass ``s_i`` falls below ``1e-250``
(float64) the batched backends continue ``log s_i`` linearly while numpy computes it in log
space (``_S_MIN`` in ``cage_games.torch._kernel``), so their directions differ there. The
suite keeps ``u / beta`` below about 500, where that never happens.
"""

from __future__ import annotations

import ctypes
import math
import shutil
import subprocess
import warnings

import numpy as np
import pytest

import cage_games as cg
from cage_games import _cache
from cage_games._newton_spec import SPEC, Code, NewtonSpec, trace_rows
from cage_games.solvers.newton import newton_machine, start_point

torch = pytest.importorskip("torch")

from cage_games.torch import _kernel as K  # noqa: E402
from cage_games.torch import _native, solve_batch  # noqa: E402

TOL = 1e-11
MAX_ITER = 2000


def hard_batches(seed: int, count: int = 4, B: int = 8):
    """(v, u, beta, caps, mask) batches: caps binding on half the principals, ties (rounded,
    duplicated utilities), m = 8 with caps, masked actions; beta in [0.02, 0.3]."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        kind = k % 4
        n = int(rng.integers(20, 200))
        m = 8 if kind == 2 else int(rng.integers(2, 5))
        v = rng.normal(size=(B, n)) * 2
        u = rng.normal(size=(B, m, n)) * rng.uniform(0.5, 3, size=(B, m, 1))
        beta = 10 ** rng.uniform(-1.7, -0.5, size=B)
        caps = mask = None
        if kind == 1:
            u = np.round(u)
            u[:, :, n // 2 :] = u[:, :, : n - n // 2]
        if kind in (0, 2):
            caps = np.where(np.arange(m) % 2 == 0, 0.1 * np.ptp(u, axis=2), np.inf)
        if kind == 3:
            mask = rng.random((B, n)) > 0.3
            mask[:, 0] = True
        out.append((v, u, beta, caps, mask))
    return out


def numpy_runs(v, u, beta, caps, mask):
    runs = []
    for b in range(v.shape[0]):
        m = u.shape[1]
        cb = [None if caps is None or not np.isfinite(c) else float(c) for c in
              (caps[b] if caps is not None else [None] * m)]  # fmt: skip
        support = None if mask is None else mask[b]
        vb = v[b] if mask is None else np.where(mask[b], v[b], 0.0)
        agent = cg.Agent(vb, beta=float(beta[b]), support=support)
        game = cg.CommonAgencyGame(agent, [cg.Principal(u[b, i], cap=cb[i]) for i in range(m)])
        system = cg.ThresholdSystem(game)
        trace: list[int] = []
        gamma, status, nit, *_ = newton_machine(
            system, start_point(system), TOL, MAX_ITER, trace=trace
        )
        runs.append((trace, status, nit, gamma * beta[b]))
    return runs


def torch_runs(v, u, beta, caps, mask, fused, monkeypatch):
    monkeypatch.setenv("CAGE_GAMES_TORCH_FUSED", "1" if fused else "0")
    vt = torch.tensor(v)
    allowed = None if mask is None else torch.tensor(mask)
    vm = vt if allowed is None else torch.where(allowed, vt, -math.inf)
    bt = torch.tensor(beta).reshape(-1, 1)
    cap = None if caps is None else torch.tensor(caps)
    data, gamma0, _ = K.setup(torch.tensor(u).contiguous(), vm.contiguous(), bt, cap, allowed)
    if fused and data.kern is None:
        pytest.skip("the fused kernel is unavailable (no C++ compiler)")
    assert fused or data.kern is None
    trace: list = []
    tol = torch.full((v.shape[0],), TOL, dtype=torch.float64)
    st, out = K.newton(data, gamma0, tol, max_iter=MAX_ITER, fixed_iters=None, trace=trace)
    c, _, _ = K.finish(data, st, sync=True, out=out)
    T = K.stack_trace(trace, v.shape[0])
    return T, st, c


@pytest.mark.parametrize("seed", [1, 2])
def test_backends_make_the_same_decisions_step_by_step(seed, monkeypatch):
    codes_seen: set[int] = set()
    for v, u, beta, caps, mask in hard_batches(seed):
        ref = numpy_runs(v, u, beta, caps, mask)
        for fused in (False, True):
            T, st, c = torch_runs(v, u, beta, caps, mask, fused, monkeypatch)
            rows = trace_rows(T)
            # the trace format: one code per iteration, nit of them, IDLE padding after
            assert T.dtype == torch.int8
            assert (st.nit == (T != 0).sum(1)).all()
            for b, (trace, status, nit, thresholds) in enumerate(ref):
                assert rows[b] == trace, (fused, b)
                assert int(st.nit[b]) == nit == len(trace)
                assert bool(st.done[b]) == (status == 0)
                np.testing.assert_allclose(c[b].numpy(), thresholds, rtol=1e-9, atol=1e-9)
                codes_seen.update(trace)
    # the suite exercises more than plain Newton steps
    assert {Code.ACCEPT, Code.BACKTRACK, Code.CONVERGED, Code.RESTART, Code.STAGE} <= codes_seen
    assert {Code.CREEP, Code.SWEEP, Code.SWEEP_NEXT} <= codes_seen


def test_spec_is_one_frozen_parameter_set():
    assert isinstance(SPEC, NewtonSpec)
    with pytest.raises(AttributeError):
        SPEC.max_halvings = 3  # type: ignore[misc]
    # the torch loop keeps no copy of the constants
    assert not any(hasattr(K, name) for name in ("_ARMIJO", "_HALVINGS", "_MU", "_GS_TOL"))


def test_solve_newton_trace_counts_iterations():
    rng = np.random.default_rng(3)
    agent = cg.Agent(rng.normal(size=30), beta=0.05)
    game = cg.CommonAgencyGame(agent, [cg.Principal(rng.normal(size=30)) for _ in range(3)])
    trace: list[int] = []
    res = cg.solvers.newton.solve_newton(cg.ThresholdSystem(game), tol=1e-10, max_iter=500,
                                         trace=trace)  # fmt: skip
    assert res.success and res.nit == len(trace) and trace[-1] == Code.CONVERGED


# -- the compiled kernel: call protection and trusted cache ---------------------------------
needs_cxx = pytest.mark.skipif(_native._compiler() is None, reason="no C++ compiler")

_PLANTED = r"""
#include <stdio.h>
__attribute__((constructor)) static void planted(void) {
  FILE* f = fopen(MARKER, "w");
  if (f) { fputs("planted library ran", f); fclose(f); }
}
int cg_abi_version(void) { return 2; }
"""

_FOREIGN = "int cg_abi_version(void) { return 1; }\nint cg_moments(void) { return 0; }\n"


def _compile(tmp_path, name, source, *defines):
    src = tmp_path / f"{name}.c"
    src.write_text(source)
    out = tmp_path / f"{name}.so"
    cc = shutil.which("gcc") or _native._compiler()
    subprocess.run([cc, "-shared", "-fPIC", *defines, str(src), "-o", str(out)], check=True)
    return out


def _small_problem(dtype, m, caps):
    rng = np.random.default_rng(0)
    u = torch.tensor(rng.normal(size=(2, m, 50)), dtype=dtype)
    v = torch.tensor(rng.normal(size=(2, 50)), dtype=dtype)
    cap = None if not caps else torch.full((2, m), 0.5, dtype=dtype)
    return u, v, cap


@needs_cxx
def test_a_planted_library_never_runs(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("CAGE_CACHE", str(cache))
    monkeypatch.setenv("CAGE_GAMES_TORCH_FUSED", "1")
    monkeypatch.setattr(_native, "_LOADED", {})
    marker = tmp_path / "marker"
    planted = _compile(tmp_path, "planted", _PLANTED, f'-DMARKER="{marker}"')
    digest = _cache.sha256_file(planted)
    names = [
        _native.library_path(dt, m, caps)
        for dt in (torch.float32, torch.float64)
        for m in range(1, _native.MAX_M + 1)
        for caps in (False, True)
    ]
    names[0].parent.mkdir(parents=True, mode=0o700)
    for k, path in enumerate(names):
        shutil.copy(planted, path)
        rec = path.with_name(path.name + ".sha256")
        if k % 3 == 1:  # a record with the planted file's own hash, but writable by others
            rec.write_text(digest + "\n")
            rec.chmod(0o666)
        elif k % 3 == 2:  # a record of another file
            rec.write_text("0" * 64 + "\n")
        # k % 3 == 0: no record at all
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for dt, m, caps in [(torch.float64, 2, False), (torch.float32, 3, True)]:
            u, v, cap = _small_problem(dt, m, caps)
            sol = solve_batch(v, u, 0.5, caps=cap)
            assert bool(sol.success.all())
            assert _native._LOADED[(dt, m, caps)] is not None  # rebuilt, not the torch path
    assert not marker.exists()
    assert any("not loading a cached kernel" in str(w.message) for w in caught)
    # the rebuilt libraries are recorded and trusted now
    assert _cache.trusted_file(_native.library_path(torch.float64, 2, False)) is None


@needs_cxx
def test_an_untrusted_cache_directory_is_not_used(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    (cache / "torch_kernels").mkdir(parents=True)
    (cache / "torch_kernels").chmod(0o777)
    monkeypatch.setenv("CAGE_CACHE", str(cache))
    monkeypatch.setattr(_native, "_LOADED", {})
    u, v, _ = _small_problem(torch.float64, 2, False)
    with pytest.warns(UserWarning, match="not using the kernel cache"):
        sol = solve_batch(v, u, 0.5)
    assert bool(sol.success.all())
    assert not list((cache / "torch_kernels").glob("*.so"))


@needs_cxx
def test_a_foreign_library_falls_back_instead_of_crashing(tmp_path, monkeypatch):
    foreign = _compile(tmp_path, "foreign", _FOREIGN)
    with pytest.raises(_native.KernelABIError, match="missing"):
        _native.Kernels(ctypes.CDLL(str(foreign)), torch.float64, 2, False)
    # under the cache name and (wrongly) trusted: the solve falls back to torch operations
    monkeypatch.setenv("CAGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(_native, "_LOADED", {})
    monkeypatch.setattr(_native, "_WARNED", False)
    path = _native.library_path(torch.float64, 2, False)
    path.parent.mkdir(parents=True, mode=0o700)
    shutil.copy(foreign, path)
    monkeypatch.setattr(_native, "trusted_file", lambda p: None)
    u, v, _ = _small_problem(torch.float64, 2, False)
    with pytest.warns(UserWarning, match="unavailable"):
        sol = solve_batch(v, u, 0.5)
    assert bool(sol.success.all()) and _native._LOADED[(torch.float64, 2, False)] is None


@needs_cxx
def test_a_struct_mismatch_raises_instead_of_crashing(monkeypatch):
    kern = _native.kernels(torch.float64, 2, False)
    if kern is None:
        pytest.skip("fused kernel unavailable")
    u, v, _ = _small_problem(torch.float64, 2, False)
    data, _, _ = K.setup(u.contiguous(), v.contiguous(), torch.full((2, 1), 0.5,
                         dtype=torch.float64), None, None)  # fmt: skip
    tol = torch.full((2,), 1e-10, dtype=torch.float64)
    spec = kern._spec
    monkeypatch.setattr(kern, "_spec", lambda *a: _bump(spec(*a)))
    with pytest.raises(_native.KernelABIError, match="struct mismatch"):
        K.newton(data, None, tol, max_iter=10, fixed_iters=None)


def _bump(s):
    s.spec_version += 1
    return s
