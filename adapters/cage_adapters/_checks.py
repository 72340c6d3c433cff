"""Argument checks for the adapters' constructors: numbers from Python, numpy or torch.

A user holding ``beta`` as ``np.float32(0.5)``, ``np.int64(20)`` or a 0-d tensor
``torch.tensor(0.5)`` means a number; these helpers accept every such scalar, refuse booleans,
strings and arrays with more than one element, and say what was expected and what came.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np


def _unwrap(x: Any) -> Any:
    """A Python/numpy scalar from ``x`` if it is a 0-d array or tensor; ``x`` otherwise."""
    if hasattr(x, "ndim") and hasattr(x, "item") and getattr(x, "ndim", None) == 0:
        dtype = getattr(x, "dtype", None)
        if dtype is not None and "bool" in str(dtype):
            return bool(x.item())
        return x.item()
    return x


def _describe(x: Any) -> str:
    shape = getattr(x, "shape", None)
    if shape is not None and tuple(shape) != ():
        return f"an array of shape {tuple(shape)}"
    return f"{type(x).__name__} {x!r}"


def real(
    x: Any, name: str, *, expected: str, low: float, low_open: bool, high: float = math.inf
) -> float:
    """``x`` as a finite float in the interval from ``low`` to ``high`` (``high`` closed).

    Parameters
    ----------
    x : number
        A Python, numpy or 0-d array/tensor real number.
    name : str
        The argument's name, for messages.
    expected : str
        What is expected, in words (``"a positive finite number"``).
    low, low_open, high
        The interval.

    Raises
    ------
    TypeError
        ``x`` is not a real number (booleans and strings are not).
    ValueError
        ``x`` is not finite or outside the interval.
    """
    v = _unwrap(x)
    if isinstance(v, (bool, np.bool_)) or not isinstance(
        v, (numbers.Real, np.floating, np.integer)
    ):
        raise TypeError(f"{name} must be {expected}, got {_describe(x)}")
    val = float(v)
    inside = (val > low if low_open else val >= low) and val <= high
    if not (math.isfinite(val) and inside):
        raise ValueError(f"{name} must be {expected}, got {val!r}")
    return val


def integer(x: Any, name: str, *, expected: str, low: int) -> int:
    """``x`` as an int ``>= low`` (Python, numpy or 0-d torch integers; integral floats refused)."""
    v = _unwrap(x)
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be {expected}, got {_describe(x)}")
    val = int(v)
    if val < low:
        raise ValueError(f"{name} must be {expected}, got {val}")
    return val
