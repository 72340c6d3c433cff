"""The registry of equilibrium methods behind :func:`cage_games.solve`.

A *method* is a function ``func(game, **options) -> EquilibriumResult`` plus what it accepts
(``beta > 0``, ``beta = 0``, caps at ``beta = 0``) and its default options. Built-in methods
register themselves in :mod:`cage_games.solvers`; users can add their own with
:func:`register_method` (or pass a callable to ``solve`` directly, as with
``scipy.optimize.root``).

>>> from cage_games.solvers.registry import available_methods
>>> "newton" in available_methods()
True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["Method", "available_methods", "get_method", "register_method"]


@dataclass(frozen=True)
class Method:
    """A registered equilibrium method.

    Attributes
    ----------
    name : str
        The name ``solve(game, method=name)`` selects it by.
    func : callable
        ``func(game, **options) -> EquilibriumResult``.
    beta_positive, beta_zero : bool
        Which games it accepts: a quantal agent (``beta > 0``), a deterministic one.
    capped_beta_zero : bool
        Whether it handles binding caps at ``beta = 0``.
    defaults : mapping
        Default options (merged under the caller's).
    summary : str
        One line for the table of methods.
    """

    name: str
    func: Callable[..., Any]
    beta_positive: bool = True
    beta_zero: bool = False
    capped_beta_zero: bool = False
    defaults: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))


_REGISTRY: dict[str, Method] = {}


def register_method(
    name: str,
    func: Callable[..., Any],
    *,
    beta_positive: bool = True,
    beta_zero: bool = False,
    capped_beta_zero: bool = False,
    defaults: Mapping[str, Any] | None = None,
    summary: str = "",
    replace: bool = False,
) -> Method:
    """Add a method to the registry; return its record.

    Raises ``ValueError`` if ``name`` is taken (pass ``replace=True`` to override) or is
    ``"auto"`` (reserved for the front door's choice).
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string, got {name!r}")
    if name == "auto":
        raise ValueError("'auto' is reserved: it lets solve() choose a registered method")
    if not callable(func):
        raise TypeError(f"func must be callable (game, **options) -> result, got {func!r}")
    if name in _REGISTRY and not replace:
        raise ValueError(f"method {name!r} is already registered; pass replace=True to override")
    method = Method(
        name, func, beta_positive, beta_zero, capped_beta_zero, dict(defaults or {}), summary
    )
    _REGISTRY[name] = method
    return method


def get_method(name: str) -> Method:
    """The registered method called ``name``; ``ValueError`` listing the names otherwise."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"method must be one of {('auto', *_REGISTRY)} or a callable, got {name!r}"
        ) from None


def available_methods() -> tuple[str, ...]:
    """Names accepted by ``solve(game, method=...)``, ``"auto"`` first."""
    return ("auto", *_REGISTRY)
