"""Hedge (exponential weights) over a grid of truthful-threshold schedules.

Each principal keeps one weight per grid threshold ``c_1 < ... < c_K`` spanning
``[min u_i, max u_i]`` (over the agent's support), plays a threshold drawn from the normalised
weights, and, with full information, raises every weight by the payoff that grid point would
have earned against the others' schedules of the round (Freund and Schapire, 1997, "A
decision-theoretic generalization of on-line learning and an application to boosting", JCSS
55(1); the exponentially weighted average forecaster of Cesa-Bianchi and Lugosi, 2006,
*Prediction, Learning, and Games*, section 2.1).

Regret bound (Cesa-Bianchi and Lugosi, 2006, Theorem 2.2): with gains in ``[0, 1]`` and any
``eta > 0``, ``sum_t <p_t, g_t> - max_k sum_t g_t(k) >= -(ln K / eta + eta T / 8)``; with the
fixed-horizon step ``eta = sqrt(8 ln K / T)`` the regret is at most ``sqrt(T ln K / 2)``.
Payoffs ``U_i`` lie in ``[min u_i, max u_i]`` for every threshold schedule (docs/learning.rst),
so gains are ``(U_i - min u_i) / R_i`` with ``R_i = max u_i - min u_i`` and the bound in utility
units is ``R_i sqrt(T ln K / 2)``. The inequality holds for every sequence of gain vectors,
also adaptive ones, so it bounds the regret of the *mixed* play ``<p_t, g_t>`` on every run,
exactly; the sampled thresholds' regret exceeds it by a martingale term of order
``R_i sqrt(T)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from cage_games.learning._kernel import Feedback
from cage_games.learning._options import count, positive_float
from cage_games.learning.base import Learner, RegretBound
from cage_games.thresholds import log_softmax

__all__ = ["Hedge"]


class Hedge(Learner):
    """Hedge over ``K`` grid thresholds with full-information feedback.

    Parameters
    ----------
    low, high, beta, rounds, rng
        See :class:`~cage_games.learning.base.Learner`.
    grid : int, default 41
        Number ``K`` of equally spaced thresholds on ``[low, high]`` (``high`` is the zero
        schedule: "pay nothing").
    step_size : float, optional
        ``eta`` for payoffs scaled to ``[0, 1]``. Default ``sqrt(8 ln K / T)``, the step of
        Cesa-Bianchi and Lugosi (2006), Theorem 2.2.

    Notes
    -----
    The regret of the mixed play against the best grid threshold in hindsight is at most
    ``R (ln K / eta + eta T / 8)``, which is ``R sqrt(T ln K / 2)`` at the default step.
    """

    name: ClassVar[str] = "hedge"
    comparator_is_exact: ClassVar[bool] = True

    def __init__(
        self,
        low: float,
        high: float,
        beta: float,
        rounds: int,
        rng: np.random.Generator,
        *,
        grid: int = 41,
        step_size: float | None = None,
    ) -> None:
        super().__init__(low, high, beta, rounds, rng)
        self.k = count(grid, "grid", 1)
        self.grid = np.linspace(self.low, self.high, self.k)
        self.grid.setflags(write=False)
        eta = positive_float(step_size, "step_size")
        self.default_step = eta is None
        self.eta = float(np.sqrt(8.0 * np.log(self.k) / self.rounds)) if eta is None else eta
        self.log_weights = np.zeros(self.k)

    def _scaled(self, payoffs: np.ndarray) -> np.ndarray:
        if self.range <= 0:
            return np.zeros_like(payoffs)
        return np.clip((payoffs - self.low) / self.range, 0.0, 1.0)

    def mixed_strategy(self) -> tuple[np.ndarray, np.ndarray]:
        return self.grid, np.exp(log_softmax(self.eta * self.log_weights))

    def update(self, feedback: Feedback) -> None:
        # log_weights holds the cumulative scaled gains; eta multiplies at read time, so a
        # user-given step and the default share one code path.
        self.log_weights += self._scaled(feedback.payoff(self.grid))

    def comparator(self) -> np.ndarray:
        return self.grid

    def bound(self) -> RegretBound:
        T, K, R, eta = self.rounds, self.k, self.range, self.eta
        if K == 1 or R <= 0:
            value = 0.0
        elif self.default_step:
            value = R * np.sqrt(T * np.log(K) / 2.0)
        else:
            value = R * (np.log(K) / eta + eta * T / 8.0)
        return RegretBound(
            value=float(value),
            formula=(
                f"R*sqrt(T ln K/2) = {R:.6g}*sqrt({T}*ln {K}/2)"
                if self.default_step
                else f"R*(ln K/eta + eta T/8) with R={R:.6g}, K={K}, eta={eta:.6g}, T={T}"
            ),
            source="Cesa-Bianchi & Lugosi (2006), Prediction, Learning, and Games, Thm 2.2",
            covers=(
                "regret of the mixed play <p_t, U_t> against the best grid threshold in "
                "hindsight, every run (payoffs scaled to [0,1] by R = max u - min u)"
            ),
        )

    @property
    def params(self) -> Mapping[str, Any]:
        return {"grid": self.k, "step_size": float(self.eta)}
