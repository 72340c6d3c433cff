"""Projected online gradient ascent on a principal's threshold.

Each round the principal moves its threshold along the exact derivative of its payoff against
the others' schedules of the round and projects back on ``[min u_i, max u_i]``:
``c_{t+1} = Proj(c_t + eta dU_i/dc_i(c_t))`` (Zinkevich, 2003, "Online convex programming and
generalized infinitesimal gradient ascent", ICML).

Regret bound (the argument of Zinkevich, 2003, Theorem 1, with a fixed step): for any vectors
``g_t`` with ``|g_t| <= G`` and any ``x`` in an interval of width ``D``,

    sum_t g_t (x - c_t) <= D^2 / (2 eta) + eta G^2 T / 2,

which is ``D G sqrt(T)`` at the default ``eta = D / (G sqrt(T))``. Here ``D = max u_i - min u_i``
and ``G = 1 + D / (4 beta)`` bounds ``|dU_i/dc_i|`` (docs/learning.rst). This controls the
*linearised* regret ``max_x sum_t g_t (x - c_t)`` on every run. It controls the true regret
``max_x sum_t U_t(x) - U_t(c_t)`` only when every ``U_t`` is concave in ``c_i``
(``U_t(x) - U_t(c_t) <= g_t (x - c_t)``), and ``U_i`` is **not** concave in its threshold in
general (about half of random games have a non-concave section). For this class the bound on
the true regret is therefore a heuristic yardstick; the dynamics report both regrets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from cage_games._validation import as_scalar
from cage_games.learning._kernel import Feedback
from cage_games.learning._options import count, positive_float
from cage_games.learning.base import Learner, RegretBound

__all__ = ["OnlineGradientAscent"]


class OnlineGradientAscent(Learner):
    """Projected online gradient ascent on the threshold ``c`` in ``[low, high]``.

    Parameters
    ----------
    low, high, beta, rounds, rng
        See :class:`~cage_games.learning.base.Learner`.
    step_size : float, optional
        ``eta`` (utility units per unit gradient). Default ``D / (G sqrt(T))`` with
        ``D = high - low`` and ``G = 1 + D / (4 beta)``.
    start : float, optional
        First threshold; default the midpoint of ``[low, high]``. Clipped into the interval.
    hindsight_grid : int, default 201
        Size of the grid on ``[low, high]`` the regret is tracked against during the run
        (refined by a bounded local search at the end).
    """

    name: ClassVar[str] = "gradient"
    comparator_is_exact: ClassVar[bool] = False

    def __init__(
        self,
        low: float,
        high: float,
        beta: float,
        rounds: int,
        rng: np.random.Generator,
        *,
        step_size: float | None = None,
        start: float | None = None,
        hindsight_grid: int = 201,
    ) -> None:
        super().__init__(low, high, beta, rounds, rng)
        self.G = 1.0 + self.range / (4.0 * self.beta)
        eta = positive_float(step_size, "step_size")
        self.default_step = eta is None
        self.eta = float(self.range / (self.G * np.sqrt(self.rounds))) if eta is None else eta
        if start is None:
            self.c = 0.5 * (self.low + self.high)
        else:
            self.c = float(np.clip(as_scalar(start, "start"), self.low, self.high))
        self.start = self.c
        self._grid = np.linspace(self.low, self.high, count(hindsight_grid, "hindsight_grid", 2))
        self._grid.setflags(write=False)
        self._point = np.array([self.c])
        self.sum_g = 0.0
        self.sum_gc = 0.0

    def mixed_strategy(self) -> tuple[np.ndarray, np.ndarray]:
        return self._point, np.ones(1)

    def play(self) -> float:
        return self.c

    def update(self, feedback: Feedback) -> None:
        g = float(feedback.gradient(self._point)[0])
        self.sum_g += g
        self.sum_gc += g * self.c
        self.c = float(np.clip(self.c + self.eta * g, self.low, self.high))
        self._point = np.array([self.c])

    def comparator(self) -> np.ndarray:
        return self._grid

    @property
    def linearized_regret(self) -> float:
        """``max_{x in [low, high]} sum_t g_t (x - c_t)``: exact (linear in ``x``)."""
        return max(self.low * self.sum_g, self.high * self.sum_g) - self.sum_gc

    def bound(self) -> RegretBound:
        D, G, eta, T = self.range, self.G, self.eta, self.rounds
        value = 0.0 if D <= 0 else D**2 / (2 * eta) + eta * G**2 * T / 2
        return RegretBound(
            value=float(value),
            formula=f"D^2/(2 eta) + eta G^2 T/2 with D={D:.6g}, G={G:.6g}, eta={eta:.6g}, T={T}",
            source=(
                "Zinkevich (2003), Online convex programming and generalized infinitesimal "
                "gradient ascent, proof of Thm 1 with a fixed step"
            ),
            covers=(
                "linearised regret max_x sum_t g_t (x - c_t), every run; the true regret only "
                "when U_i is concave in c_i, which fails in general (a heuristic yardstick here)"
            ),
        )

    @property
    def params(self) -> Mapping[str, Any]:
        return {
            "step_size": float(self.eta),
            "start": float(self.start),
            "hindsight_grid": int(self._grid.size),
        }

    def diagnostics(self) -> Mapping[str, Any]:
        return {"linearized_regret": self.linearized_regret}
