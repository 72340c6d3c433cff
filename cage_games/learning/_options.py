"""Validation helpers for learner options (errors name the option and the fix)."""

from __future__ import annotations

import numbers

import numpy as np


def positive_float(value: object, name: str, *, allow_none: bool = True) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a positive number, got {type(value).__name__}")
    val = float(value)
    if not (np.isfinite(val) and val > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {val}")
    return val


def count(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {type(value).__name__}")
    val = int(value)
    if val < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {val}")
    return val
