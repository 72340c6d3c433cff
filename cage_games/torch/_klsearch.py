"""The strength search of target-KL mode: one specification for every backend.

Given a row's game in the KL-regularised form (``v = beta log p0``, principals' utilities
``u``), find the temperature ``beta`` whose equilibrium policy has ``KL(pi || p0) = target``.
In ``x = log(1 / beta)`` the function ``f(x) = log KL(x) - log target`` is increasing (a
smaller temperature makes the same stakes count for more). The search:

1. ``R`` = the largest spread ``max_a u_i - min_a u_i`` of a principal's utility (at least
   ``min_range``). The weakest temperature searched is ``beta = weak * R``, the strongest
   ``weak * R / span``. Start at the caller's hint (for example the strength the same row
   needed at the previous decoding step), clipped to that range, or at the weakest.
2. Until the target is bracketed: below it, a step of ``max(-f / slope, min_step)`` in ``x``
   towards stronger tilts (weak tilts have ``KL ~ stakes^2``, a slope of 2 in ``x``), at most
   to the strongest; above it (possible from a hint), the same step towards weaker ones, at
   least to the weakest.
3. Once bracketed: Illinois false position (Dowell and Jarratt, BIT 11, 1971), each new point
   kept ``safeguard`` times the bracket's width inside it.
4. Stop when ``|f| <= rtol``, after ``max_solves`` solves, when the strongest temperature
   is still below the target (``kl_reached = False``; that row is returned at its closest),
   or when the weakest is still above it (returned there, ``kl_reached = True``).
   The answer is the solved point with the smallest ``|f|``; a failed solve counts as
   ``f = -60`` (never above the target). A KL below ``floor = max(zero_rel * target,
   zero_eps * eps)`` (``eps`` the dtype's machine epsilon) counts as ``floor``: it is zero up
   to rounding, and different backends' roundings must not steer the search differently.

Each solve is warm-started from the previous point's thresholds in utility units. The
Triton kernel runs this loop per row inside one launch; the other backends run it over the
batch in :func:`cage_games.torch._api.solve_batch_kl` with the same constants.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KL_SEARCH", "KLSearch"]


@dataclass(frozen=True)
class KLSearch:
    """Constants of the strength search (module docstring).

    Attributes
    ----------
    rtol : float
        Accept ``|log KL - log target| <= rtol`` (3 % relative).
    weak : float
        First temperature, in units of the stakes' range ``R``.
    span : float
        Ratio between the first and the strongest temperature.
    min_range : float
        Floor of ``R`` (rows whose rewards all tie).
    slope : float
        Assumed slope of ``log KL`` in ``log(1 / beta)`` before bracketing.
    min_step : float
        Smallest step in ``log(1 / beta)`` before bracketing.
    safeguard : float
        Fraction of the bracket a false-position point keeps from either end.
    max_solves : int
        Solves per row at most, the first included.
    zero_rel, zero_eps : float
        The KL floor (step 4), relative to the target and in machine epsilons.
    """

    rtol: float = 0.03
    weak: float = 2.0
    span: float = 100.0
    min_range: float = 1e-6
    slope: float = 2.0
    min_step: float = 0.1
    safeguard: float = 0.05
    max_solves: int = 12
    zero_rel: float = 1e-6
    zero_eps: float = 64.0

    def floor(self, target: float, eps: float) -> float:
        """The KL below which a value counts as zero (step 4)."""
        return max(self.zero_rel * target, self.zero_eps * eps)


KL_SEARCH = KLSearch()
