"""Immutable, printable result records.

Modelled on scipy's ``OptimizeResult`` (attribute access, a readable ordered repr with message,
success and status first) and on Gambit's ``NashComputationResult`` (the record keeps the game,
the method and its parameters, so it explains how it was obtained).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

import numpy as np

from cage_games.game import CommonAgencyGame

__all__ = ["EquilibriumResult", "FrozenRecord", "format_record", "freeze"]


def freeze(value: Any) -> Any:
    """A read-only version of a record field: arrays copied and locked, dicts as mapping
    proxies, lists as tuples. Used by every immutable record of the package."""
    if isinstance(value, np.ndarray):
        value = value.copy()
        value.setflags(write=False)
    elif isinstance(value, dict):
        value = MappingProxyType(dict(value))
    elif isinstance(value, list):
        value = tuple(value)
    return value


class FrozenRecord:
    """Mixin for the package's frozen dataclass records: after construction every field is
    made read-only with :func:`freeze` (arrays locked, dicts as mapping proxies, lists as
    tuples), so a record cannot be changed after the fact."""

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            object.__setattr__(self, f.name, freeze(getattr(self, f.name)))


def format_record(obj: Any, skip: tuple[str, ...] = ()) -> str:
    """Render a dataclass record as aligned ``name: value`` lines, arrays compactly."""
    names = [f.name for f in fields(obj) if f.repr and f.name not in skip]
    width = max(len(n) for n in names)
    lines = []
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, np.ndarray):
            text = np.array2string(
                value, precision=6, threshold=12, edgeitems=3, suppress_small=False
            )
        elif isinstance(value, Mapping):
            text = ", ".join(f"{k}={v!r}" for k, v in value.items()) or "{}"
        elif isinstance(value, float):
            text = f"{value:.6g}"
        else:
            text = repr(value) if not isinstance(value, str) else value
        text = text.replace("\n", "\n" + " " * (width + 2))
        lines.append(f"{name.rjust(width)}: {text}")
    return "\n".join(lines)


@dataclass(frozen=True, eq=False, repr=False)
class EquilibriumResult(FrozenRecord):
    """The outcome of :func:`cage_games.solve`: an equilibrium with its own residual.

    Attributes
    ----------
    message : str
        What happened, in words.
    success : bool
        Whether the residual met the tolerance (and, with caps, whether every capped principal's
        KKT point was checked to be a global best response; see ``cap_check``).
    status : int
        0 converged; 1 iteration limit reached; 2 no further progress possible (stagnation at
        the floating-point floor); 3 numerical failure.
    method : str
        The solver that produced the answer (``"auto"`` is resolved to the one used; a
        fall-back is written as ``"newton>gauss-seidel"``).
    residual : float
        ``max_i |G_i(c)| / beta``: the threshold system's residual in units of the agent's
        temperature (dimensionless: the game only depends on ``u / beta``).
    nit : int
        Iterations (Newton steps, Gauss-Seidel sweeps or diagonalization sweeps).
    nfev : int
        Evaluations of the threshold system (or best-response programs for diagonalization).
    policy : ndarray, shape (n,)
        The agent's equilibrium mixed action.
    transfers : ndarray, shape (m, n)
        Equilibrium transfer schedules, ``>= 0`` and ``<= cap``; zero off the agent's support.
    thresholds : ndarray, shape (m,)
        The thresholds ``c_i`` (utility units): ``tau_i = clip(u_i - c_i, 0, cap_i)``.
    payoffs : ndarray, shape (m,)
        Principals' net payoffs ``E_pi[u_i - tau_i]``.
    agent_payoff : float
        The agent's value ``beta * log sum_a exp((v + sum_i tau_i) / beta)``.
    params : mapping
        The parameters the solver ran with (tol, max_iter, ...).
    history : tuple of float
        Residual after each iteration (the first entry is at the starting point).
    game : CommonAgencyGame
        The game that was solved.
    """

    message: str
    success: bool
    status: int
    method: str
    residual: float
    nit: int
    nfev: int
    policy: np.ndarray
    transfers: np.ndarray
    thresholds: np.ndarray
    payoffs: np.ndarray
    agent_payoff: float
    params: Mapping[str, Any] = field(default_factory=dict)
    history: tuple[float, ...] = field(default=(), repr=False)
    game: CommonAgencyGame | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return format_record(self)

    __str__ = __repr__
