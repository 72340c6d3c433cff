"""Fused CPU kernels for the batched backend, compiled on first use and cached on disk.

One evaluation of the threshold system needs a log-sum-exp over the ``n`` actions and
``5 m + 2 m^2`` sums under the induced policy (:func:`n_moments`). As separate torch
operations that is about eight passes over the (B, m, n) utilities; fused, it is one.
``torch.compile`` (inductor, torch 2.13, CPU) fused it into two loops and spent about 4
softmaxes of time per evaluation with the Jacobian on the development machine, compiling for
5 to 15 s per shape; the hand-written loop below needs about 2 and compiles in about a second.

The library (``cg_*`` functions) does the set-up pass (``p0`` moments, box, input checks), the
start, the whole Newton phase of :func:`cage_games.torch._kernel._fast` (trial points, Armijo
test, halvings, ``m x m`` solves; each iteration evaluates only the rows still running) and
the log policy, so that a solve makes three calls into it instead of hundreds of small torch
operations. The state machine's fallbacks (Gauss-Seidel sweeps, temperature continuation)
stay in torch and call ``cg_eval``.

It is a C++ source (GCC vector extensions, AVX-512 intrinsics where the CPU has them, OpenMP
over (row, chunk) tasks, no torch headers) compiled with the system C++ compiler (``$CXX`` or
``g++``, ``-O3 -march=native -fopenmp``) into a shared library per (dtype, m, caps), cached
under ``$CAGE_CACHE`` (default ``~/.cache/cage-games``) with a key made of the source,
the flags and the CPU's model and feature flags, and called through :mod:`ctypes` on the
tensors' memory. If no compiler is available, the build fails, ``m > 8``, or
``CAGE_GAMES_TORCH_FUSED=0`` is set, :func:`kernels` returns ``None`` (warning once, a
``UserWarning``, when a build failed) and the backend uses torch operations (the same
mathematics; slower on a CPU; the path GPUs take).

Numerics. Exponentials are shifted by an upper bound of the log-weights: the chunk's own
maximum (1024 actions, two sweeps) when no bound is given, else the caller's bound, redone
exactly when it exceeds the true maximum by more than ``gap``; ``exp`` is flushed to 0 below
the smallest normal number (``e^-87`` in float32, ``e^-708`` in float64). The normaliser and
the first moments are accumulated in float64, the Jacobian's sums in the working dtype within
a chunk and in float64 across chunks, and ``G``, ``F`` and ``J`` are formed in float64.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from pathlib import Path

import torch
from torch import Tensor

from cage_games._cache import cache_dir, private_dir, record_hash, trusted_file
from cage_games._newton_spec import SPEC

__all__ = ["Kernels", "kernels", "n_moments"]

# Largest number of principals with a compiled kernel (more use plain torch operations).
MAX_M = 8

_SOURCE_FILE = Path(__file__).with_name("cg_kernel.cpp")


def n_moments(m: int) -> int:
    """Number of moments per row returned by the evaluation kernel for ``m`` principals.

    Layout: ``Z, S[m], O[m], P[m], EA[m], GA[m, m], H[m], HA[m, m]`` (unnormalised sums
    under ``exp(x - shift)``; see :func:`cage_games.torch._kernel.evaluate`).
    """
    return 1 + 5 * m + 2 * m * m


def _cache_dir() -> Path:
    return cache_dir()


def _cpu_id() -> str:
    """What -march=native depends on: the CPU's model and feature flags."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        lines = [ln for ln in text.splitlines() if ln.startswith(("flags", "model name"))]
        return "\n".join(sorted(set(lines)))
    except OSError:
        return platform.processor() or platform.machine()


_P = ctypes.c_void_p
_I64 = ctypes.c_int64
_INT = ctypes.c_int
_DBL = ctypes.c_double


class CgSpec(ctypes.Structure):
    """The ``CgSpec`` struct of ``cg_kernel.cpp``: the Newton constants (from
    :data:`cage_games._newton_spec.SPEC`) and the call's numerics. The library checks its
    ``abi``, ``size``, ``spec_version``, dtype size, ``m`` and ``caps`` and refuses (returns
    -2) a struct that does not match it."""

    _fields_ = [
        ("abi", ctypes.c_int64),
        ("size", ctypes.c_int64),
        ("spec_version", ctypes.c_int64),
        ("dtype_size", ctypes.c_int64),
        ("m", ctypes.c_int64),
        ("caps", ctypes.c_int64),
        ("armijo", ctypes.c_double),
        ("max_halvings", ctypes.c_int64),
        ("to_boundary", ctypes.c_double),
        ("box_tiny", ctypes.c_double),
        ("tiny_step", ctypes.c_double),
        ("tiny_steps", ctypes.c_int64),
        ("lm_mu", ctypes.c_double),
        ("s_min", ctypes.c_double),
        ("gap", ctypes.c_double),
        ("n_iter", ctypes.c_int64),
        ("nthreads", ctypes.c_int64),
    ]


# ABI version of cg_kernel.cpp (CG_ABI_VERSION there) and the state-machine version it
# implements (CG_SPEC_VERSION there, NewtonSpec.version).
ABI_VERSION = 2
_SYMBOLS = (
    "cg_abi_version", "cg_spec_size", "cg_moments", "cg_eval", "cg_setup", "cg_policy",
    "cg_solve", "cg_start", "cg_newton",
)  # fmt: skip


class KernelABIError(RuntimeError):
    """A library that is not the kernel this module expects (missing symbols, other ABI)."""


class Kernels:
    """The compiled kernels for one (dtype, m, caps); thin ctypes wrappers.

    Every tensor passed in must be contiguous, on the CPU and of the kernel's dtype (checked by
    the callers in :mod:`cage_games.torch._kernel`); ``rows`` (int64) selects the rows of ``u``
    and ``v`` to work on, every other argument has one row per entry of ``rows``.

    Raises
    ------
    KernelABIError
        If ``lib`` lacks a symbol, answers another ABI version or struct size, or another
        moment layout: nothing else of it is called then.
    """

    def __init__(self, lib: ctypes.CDLL, dtype: torch.dtype, m: int, caps: bool) -> None:
        self.lib, self.dtype, self.m, self.caps = lib, dtype, m, caps
        self.k = n_moments(m)
        missing = [name for name in _SYMBOLS if not hasattr(lib, name)]
        if missing:
            raise KernelABIError(f"not a cage_games kernel (missing {', '.join(missing)})")
        for f in (lib.cg_abi_version, lib.cg_spec_size, lib.cg_moments):
            f.argtypes, f.restype = [], _INT
        abi, size = lib.cg_abi_version(), lib.cg_spec_size()
        if abi != ABI_VERSION or size != ctypes.sizeof(CgSpec):
            raise KernelABIError(
                f"kernel ABI {abi} (struct {size} bytes), expected {ABI_VERSION} "
                f"({ctypes.sizeof(CgSpec)} bytes)"
            )
        if lib.cg_moments() != self.k:
            raise KernelABIError("compiled kernel has an unexpected moment layout")
        lib.cg_eval.argtypes = [
            _P, _P, _I64, _I64, _P, _P, _P, _P, _P, _INT, _DBL, _DBL, _INT, _P, _P, _P, _P, _P,
            _P, _P,
        ]  # fmt: skip
        lib.cg_setup.argtypes = [_P, _P, _I64, _I64, _P, _P, _INT, _P, _P, _P, _P, _P]
        lib.cg_policy.argtypes = [_P, _P, _I64, _I64, _P, _P, _P, _P, _P, _INT, _P]
        lib.cg_solve.argtypes = [_I64, _P, _P, _P, _P]
        spec_p = ctypes.POINTER(CgSpec)
        lib.cg_start.argtypes = [spec_p, _P, _P, _I64, _I64] + [_P] * 8 + [_P] * 12
        lib.cg_newton.argtypes = [spec_p, _P, _P, _I64, _I64] + [_P] * 7 + [_P] * 18
        for f in (lib.cg_eval, lib.cg_setup, lib.cg_policy, lib.cg_solve):
            f.restype = _INT
        for f in (lib.cg_newton, lib.cg_start):
            f.restype = _INT

    def _spec(self, s_min: float, gap: float, n_iter: int = 0) -> CgSpec:
        """The struct for one call, from :data:`cage_games._newton_spec.SPEC`."""
        return CgSpec(
            abi=ABI_VERSION, size=ctypes.sizeof(CgSpec), spec_version=SPEC.version,
            dtype_size=8 if self.dtype == torch.float64 else 4, m=self.m, caps=int(self.caps),
            armijo=SPEC.armijo, max_halvings=SPEC.max_halvings, to_boundary=SPEC.to_boundary,
            box_tiny=SPEC.box_tiny, tiny_step=SPEC.tiny_step, tiny_steps=SPEC.tiny_steps,
            lm_mu=SPEC.lm_mu, s_min=float(s_min), gap=float(gap), n_iter=int(n_iter),
            nthreads=torch.get_num_threads(),
        )  # fmt: skip

    @staticmethod
    def _ptr(x: Tensor | None) -> int | None:
        return None if x is None else x.data_ptr()

    def eval(
        self, u: Tensor, v: Tensor, rows: Tensor, gamma: Tensor, ib: Tensor,
        kappa: Tensor | None, shift: Tensor, jac: bool, s_min: float, gap: float,
    ) -> tuple[Tensor, Tensor, Tensor | None, Tensor, Tensor, Tensor]:  # fmt: skip
        """One evaluation of the selected rows.

        ``shift`` (R,) is an upper bound of the log-weights per row, or NaN for "use the exact
        maximum" (two passes); rows whose bound is more than ``gap`` too high are redone
        exactly. Returns ``G``, ``F`` (R, m), ``J`` (R, m, m) or ``None``, ``lse`` and
        ``xmax`` (R,) in the kernel's dtype, and the raw moments (R, K) float64 relative to
        ``exp(lse - log Z)``.
        """
        R, n, m = rows.shape[0], v.shape[-1], self.m
        mom = torch.empty(R, self.k, dtype=torch.float64)
        shift_out = torch.empty(R, dtype=torch.float64)
        G = torch.empty(R, m, dtype=self.dtype)
        F = torch.empty(R, m, dtype=self.dtype)
        J = torch.empty(R, m, m, dtype=self.dtype) if jac else None
        lse = torch.empty(R, dtype=self.dtype)
        xmax = torch.empty(R, dtype=self.dtype)
        rc = self.lib.cg_eval(
            u.data_ptr(), v.data_ptr(), n, R, rows.data_ptr(), gamma.data_ptr(),
            ib.data_ptr(), self._ptr(kappa), shift.data_ptr(), int(jac), float(s_min),
            float(gap), torch.get_num_threads(), mom.data_ptr(), shift_out.data_ptr(),
            G.data_ptr(), F.data_ptr(), self._ptr(J), lse.data_ptr(), xmax.data_ptr(),
        )  # fmt: skip
        if rc:
            raise MemoryError("cage_games fused kernel: out of memory")
        return G, F, J, lse, xmax, mom

    def setup(
        self, u: Tensor, v: Tensor, rows: Tensor, ib: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """``[Z0, E0[u_i] Z0]`` (R, 1 + m) float64 relative to ``exp(shift)``, ``shift`` =
        ``max v / beta`` (R,) float64, umin and umax (R, m) over the allowed actions, and
        (R,) int32 flags: bit 0 = the row of ``u`` has a NaN or infinite entry, bit 1 = the
        row of ``v`` has a NaN or ``+inf``."""
        R, n = rows.shape[0], v.shape[-1]
        out = torch.empty(R, 1 + self.m, dtype=torch.float64)
        shift = torch.empty(R, dtype=torch.float64)
        umin = torch.empty(R, self.m, dtype=self.dtype)
        umax = torch.empty(R, self.m, dtype=self.dtype)
        bad = torch.empty(R, dtype=torch.int32)
        rc = self.lib.cg_setup(
            u.data_ptr(), v.data_ptr(), n, R, rows.data_ptr(), ib.data_ptr(),
            torch.get_num_threads(), out.data_ptr(), shift.data_ptr(), umin.data_ptr(),
            umax.data_ptr(), bad.data_ptr(),
        )  # fmt: skip
        if rc:
            raise MemoryError("cage_games fused kernel: out of memory")
        return out, shift, umin, umax, bad

    def policy(
        self, u: Tensor, v: Tensor, rows: Tensor, gamma: Tensor, ib: Tensor,
        kappa: Tensor | None, lse: Tensor, out: Tensor,
    ) -> Tensor:  # fmt: skip
        """Writes the log policy of the selected rows into ``out`` (R, n) and returns it."""
        R, n = rows.shape[0], v.shape[-1]
        self.lib.cg_policy(
            u.data_ptr(), v.data_ptr(), n, R, rows.data_ptr(), gamma.data_ptr(), ib.data_ptr(),
            self._ptr(kappa), lse.data_ptr(), torch.get_num_threads(), out.data_ptr(),
        )  # fmt: skip
        return out

    def solve(self, J: Tensor, F: Tensor) -> tuple[Tensor, Tensor]:
        """Newton directions ``-J^{-1} F`` (R, m) and (R,) bool "J was regular and the
        direction finite" (0 directions where not); ``J`` (R, m, m), ``F`` (R, m)."""
        R = F.shape[0]
        J, F = J.contiguous(), F.contiguous()
        p = torch.empty(R, self.m, dtype=self.dtype)
        ok = torch.empty(R, dtype=torch.int32)
        self.lib.cg_solve(R, J.data_ptr(), F.data_ptr(), p.data_ptr(), ok.data_ptr())
        return p, ok.bool()

    def start(
        self, u: Tensor, v: Tensor, rows: Tensor, ib: Tensor, kappa: Tensor | None,
        tol: Tensor, mom0: Tensor, vmax: Tensor, umin: Tensor, umax: Tensor, s_min: float,
        gap: float,
    ) -> dict[str, Tensor]:  # fmt: skip
        """The starting state (see ``cg_start`` in the source): fresh contiguous tensors
        ``gamma, G, F, J, lse, xmax, f, p, done, stalled``, and the log-weights ``xout``
        (R, n) with ``xok`` (R,) bool: where they are final."""
        R, n, m, dt = rows.shape[0], v.shape[-1], self.m, self.dtype
        st = {
            "gamma": torch.empty(R, m, dtype=dt),
            "G": torch.empty(R, m, dtype=dt),
            "F": torch.empty(R, m, dtype=dt),
            "J": torch.empty(R, m, m, dtype=dt),
            "lse": torch.empty(R, 1, dtype=dt),
            "xmax": torch.empty(R, 1, dtype=dt),
            "f": torch.empty(R, dtype=dt),
            "p": torch.empty(R, m, dtype=dt),
            "done": torch.empty(R, dtype=torch.bool),
            "stalled": torch.empty(R, dtype=torch.bool),
            "xout": torch.empty(R, n, dtype=dt),
            "xok": torch.empty(R, dtype=torch.bool),
        }
        spec = self._spec(s_min, gap)
        rc = self.lib.cg_start(
            ctypes.byref(spec), u.data_ptr(), v.data_ptr(), n, R, rows.data_ptr(),
            ib.data_ptr(), self._ptr(kappa), tol.data_ptr(), mom0.data_ptr(), vmax.data_ptr(),
            umin.data_ptr(), umax.data_ptr(), *(x.data_ptr() for x in st.values()),
        )  # fmt: skip
        _check(rc)
        return st

    def newton(
        self, u: Tensor, v: Tensor, rows: Tensor, ib: Tensor, beta: Tensor, umin: Tensor,
        umax: Tensor, kappa: Tensor | None, tol: Tensor, s_min: float, gap: float,
        n_iter: int, state: dict[str, Tensor], trace: Tensor | None = None,
    ) -> tuple[int, bool]:  # fmt: skip
        """Runs the Newton phase in place on ``state`` (contiguous tensors, see
        :func:`cage_games.torch._kernel._fast`) with the constants of
        :data:`cage_games._newton_spec.SPEC`; returns (iterations done, stopped before a
        failed or creeping line search). With ``trace`` (R, n_iter) int8, the decision code
        of iteration ``k`` of row ``r`` is written to ``trace[r, k]``."""
        R, n = rows.shape[0], v.shape[-1]
        failed = ctypes.c_int32(0)
        names = ("gamma", "G", "F", "J", "lse", "xmax", "f", "p", "alpha", "halvings", "done")
        if trace is not None:
            assert trace.dtype == torch.int8 and trace.shape[1] >= n_iter and trace.is_contiguous()
            n_iter = trace.shape[1] if n_iter > 0 else 0
        spec = self._spec(s_min, gap, n_iter)
        k = self.lib.cg_newton(
            ctypes.byref(spec), u.data_ptr(), v.data_ptr(), n, R, rows.data_ptr(),
            ib.data_ptr(), beta.data_ptr(), umin.data_ptr(), umax.data_ptr(), self._ptr(kappa),
            tol.data_ptr(), *(state[k].data_ptr() for k in names), state["stalled"].data_ptr(),
            state["nit"].data_ptr(), state["creep"].data_ptr(), state["xout"].data_ptr(),
            state["xok"].data_ptr(), self._ptr(trace), ctypes.byref(failed),
        )  # fmt: skip
        if k < 0:
            _check(k)
        return int(k), bool(failed.value)


def _check(rc: int) -> None:
    if rc == -2:
        raise KernelABIError("cage_games fused kernel refused the call (struct mismatch)")
    if rc != 0:
        raise MemoryError("cage_games fused kernel: out of memory")


_LOCK = threading.Lock()
_LOADED: dict[tuple[torch.dtype, int, bool], Kernels | None] = {}
_WARNED = False


def _compiler() -> str | None:
    cxx = os.environ.get("CXX") or "g++"
    return shutil.which(cxx)


def _source() -> str:
    return _SOURCE_FILE.read_text()


def _arch_flags() -> list[str]:
    """Code-generation flags: ``-march=$CAGE_GAMES_TORCH_MARCH`` if set (e.g. ``x86-64-v3``
    for AVX2 + FMA only), else ``-march=native``."""
    march = os.environ.get("CAGE_GAMES_TORCH_MARCH", "").strip() or "native"
    return [f"-march={march}"]


def _recipe(dtype: torch.dtype, m: int, caps: bool) -> tuple[str, list[str], list[str], Path]:
    """Compiler, flags, defines and the cache path of the library for ``(dtype, m, caps)``."""
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set CXX or install g++)")
    t = "double" if dtype == torch.float64 else "float"
    defines = [
        f"-DCG_T={t}",
        f"-DCG_DOUBLE={int(dtype == torch.float64)}",
        f"-DCG_M={m}",
        f"-DCG_CAPS={int(caps)}",
    ]
    flags = ["-O3", *_arch_flags(), "-fopenmp", "-shared", "-fPIC", "-std=c++17"]
    key = hashlib.sha256(
        "\n".join([_source(), cxx, *defines, *flags, _cpu_id(), sys.platform]).encode()
    ).hexdigest()[:20]
    lib_path = _cache_dir() / "torch_kernels" / f"cg_{t}_m{m}_c{int(caps)}_{key}.so"
    return cxx, flags, defines, lib_path


def library_path(dtype: torch.dtype, m: int, caps: bool) -> Path:
    """Where the library for ``(dtype, m, caps)`` is cached (whether or not it exists)."""
    return _recipe(dtype, m, caps)[3]


def _compile(cxx: str, flags: list[str], defines: list[str], folder: Path) -> Path:
    """Compile the source into a fresh private temporary directory under ``folder``."""
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=folder))
    src = tmp / "cg_kernel.cpp"
    src.write_text(_source())
    out = tmp / "cg.so"
    proc = subprocess.run(
        [cxx, *flags, *defines, str(src), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"compiling the fused kernel failed:\n{proc.stderr[-2000:]}")
    return out


def _build(dtype: torch.dtype, m: int, caps: bool) -> Kernels:
    """Load the cached library if it is trusted, else (re)build it; see :mod:`cage_games._cache`.

    A cached file that fails the checks (another owner, writable by others, no hash record
    or a different hash) is never loaded: it is rebuilt, with a warning. If the cache
    directory itself is not private, the library is built in a private temporary directory
    for this process only.
    """
    cxx, flags, defines, lib_path = _recipe(dtype, m, caps)
    folder = lib_path.parent
    why = private_dir(folder)
    if why is not None:
        warnings.warn(
            f"cage_games.torch: not using the kernel cache ({why}); building in a private "
            "temporary directory",
            UserWarning,
            stacklevel=4,
        )
        tmp_root = Path(tempfile.mkdtemp(prefix="cage-games-kernel-"))
        out = _compile(cxx, flags, defines, tmp_root)
        return Kernels(ctypes.CDLL(str(out)), dtype, m, caps)
    reason = trusted_file(lib_path)
    if reason is not None:
        if reason != "absent":
            warnings.warn(
                f"cage_games.torch: not loading a cached kernel ({reason}); rebuilding it",
                UserWarning,
                stacklevel=4,
            )
        out = _compile(cxx, flags, defines, folder)
        os.replace(out, lib_path)  # atomic: concurrent builders race harmlessly
        shutil.rmtree(out.parent, ignore_errors=True)
        record_hash(lib_path)
        reason = trusted_file(lib_path)
        if reason is not None:
            raise RuntimeError(f"the freshly built kernel is not trusted: {reason}")
    return Kernels(ctypes.CDLL(str(lib_path)), dtype, m, caps)


def enabled() -> bool:
    """Whether the fused kernels may be used (``CAGE_GAMES_TORCH_FUSED`` not set to 0)."""
    return os.environ.get("CAGE_GAMES_TORCH_FUSED", "1").strip().lower() not in {
        "0", "false", "no", "off",
    }  # fmt: skip


def kernels(dtype: torch.dtype, m: int, caps: bool) -> Kernels | None:
    """The compiled kernels for ``(dtype, m, caps)``, building them on first use.

    Returns ``None`` (and warns once per process, ``UserWarning``) when they cannot be built;
    the caller then uses plain torch operations.
    """
    global _WARNED
    if not enabled() or m > MAX_M or dtype not in (torch.float32, torch.float64):
        return None
    key = (dtype, m, caps)
    with _LOCK:
        if key not in _LOADED:
            try:
                _LOADED[key] = _build(dtype, m, caps)
            except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                _LOADED[key] = None
                if not _WARNED:
                    _WARNED = True
                    warnings.warn(
                        "cage_games.torch: the fused CPU kernel is unavailable, using plain "
                        f"torch operations (slower): {exc}",
                        UserWarning,
                        stacklevel=3,
                    )
        return _LOADED[key]
