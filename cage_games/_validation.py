"""Front-door argument checks shared by the public API.

Every check raises ``TypeError`` or ``ValueError`` whose message names the argument and says
what is expected, so that a bad input fails early and clearly instead of leaking NaN later.
"""

from __future__ import annotations

import numbers
import reprlib

import numpy as np


def as_vector(
    x: object, name: str, *, n: int | None = None, allow_neg_inf: bool = False
) -> np.ndarray:
    """Return `x` as a read-only 1-D float64 array, checking shape and finiteness.

    Parameters
    ----------
    x : array_like
        The values.
    name : str
        The argument's name, used in error messages.
    n : int, optional
        Required length.
    allow_neg_inf : bool
        Whether ``-inf`` entries are allowed (never NaN or ``+inf``).
    """
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{name} must be a 1-D array of numbers, got {type(x).__name__}")
    _reject_non_numbers(x, name)
    try:
        arr = np.array(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a 1-D array of real numbers ({exc})") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per action), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: a game needs at least one action")
    if n is not None and arr.size != n:
        raise ValueError(
            f"{name} has {arr.size} entries but the game has {n} actions; give one value per action"
        )
    if np.isnan(arr).any():
        raise ValueError(
            f"{name} contains NaN at positions {np.flatnonzero(np.isnan(arr))[:5].tolist()}"
        )
    bad = np.isposinf(arr) | (np.isneginf(arr) if not allow_neg_inf else False)
    if np.any(bad):
        raise ValueError(
            f"{name} must be finite; infinite at positions {np.flatnonzero(bad)[:5].tolist()}"
        )
    arr.setflags(write=False)
    return arr


def _reject_non_numbers(x: object, name: str) -> None:
    """Refuse strings and booleans where numbers are expected (numpy would convert them).

    ``np.array(["0", "1"], dtype=float)`` and ``np.array([True, False], dtype=float)`` both
    succeed, so a game file with ``"utility": ["0", "1"]`` or ``[true, false]`` used to be read
    as numbers. Lists are scanned element by element; arrays by their dtype.
    """
    if isinstance(x, (list, tuple)):
        for j, e in enumerate(x):
            if isinstance(e, (bool, np.bool_, str, bytes)):
                raise TypeError(
                    f"{name}[{j}] must be a number, got {type(e).__name__} {_short(e)}"
                    + ("; write the number without quotes" if isinstance(e, str) else "")
                )
            if isinstance(e, (list, tuple)):
                _reject_non_numbers(e, name)
        return
    kind = getattr(getattr(x, "dtype", None), "kind", None)
    if kind in ("b", "U", "S"):
        raise TypeError(f"{name} must hold numbers, got an array of dtype {x.dtype}")  # type: ignore[attr-defined]
    if kind == "O":
        _reject_non_numbers(list(np.asarray(x).ravel()), name)


def _short(x: object) -> str:
    """A short repr of a bad value for error messages."""
    return reprlib.repr(x)


def as_scalar(x: object, name: str, *, minimum: float | None = None, strict: bool = False) -> float:
    """Return `x` as a finite float, optionally bounded below (``> minimum`` when `strict`)."""
    if isinstance(x, bool) or not isinstance(x, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}: {_short(x)}")
    val = float(x)
    if not np.isfinite(val):
        raise ValueError(f"{name} must be finite, got {val}")
    if minimum is not None:
        if strict and not val > minimum:
            raise ValueError(f"{name} must be > {minimum}, got {val}")
        if not strict and val < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {val}")
    return val


def as_int(x: object, name: str, *, minimum: int = 0) -> int:
    """Return `x` as an int >= `minimum`."""
    if isinstance(x, bool) or not isinstance(x, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(x).__name__}")
    val = int(x)
    if val < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {val}")
    return val


MAX_SCALED_UTILITY = 1e150
"""Largest ``|u| / beta`` and ``|v| / beta`` the solvers and certificates accept.

The threshold system works with utilities divided by ``beta`` and with their products (the
Newton Jacobian); beyond ``1e150`` those overflow float64. Only ``u / beta`` and ``v / beta``
shape the equilibrium policy, so a game over the limit can be rescaled without changing it.
"""


def check_scale(game: object) -> None:
    """Raise ``ValueError`` if a ``beta > 0`` game's utilities divided by ``beta`` overflow.

    Parameters
    ----------
    game : CommonAgencyGame
        The game (``beta = 0`` games pass: they never divide by ``beta``).

    Raises
    ------
    ValueError
        Naming the largest ratio and the two fixes (rescale, or ``beta = 0``).
    """
    beta = float(game.beta)  # type: ignore[attr-defined]
    if beta == 0:
        return
    support = game.agent.support  # type: ignore[attr-defined]
    top = max(
        float(np.max(np.abs(game.utilities[:, support]))),  # type: ignore[attr-defined]
        float(np.max(np.abs(game.agent.utility[support]))),  # type: ignore[attr-defined]
    )
    with np.errstate(over="ignore"):
        ratio = top / beta
    if not ratio <= MAX_SCALED_UTILITY:
        raise ValueError(
            f"utilities / beta reach {ratio:.3g} (largest |utility| {top:.3g}, beta {beta:.3g}), "
            f"beyond the {MAX_SCALED_UTILITY:.0e} that float64 arithmetic allows: rescale the "
            "utilities and beta together (only their ratio matters), or use beta = 0 for a "
            "deterministic agent"
        )
