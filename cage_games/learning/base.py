"""The learner interface and the record of a regret bound.

A learner plays for one principal. Its strategy space is a set of truthful-threshold schedules
``tau(a) = clip(u(a) - c, 0, cap)`` indexed by the threshold ``c`` in ``[low, high]`` (the
range of the principal's utility over the agent's support). Each round the dynamics

1. ask every learner for its mixed strategy (:meth:`Learner.mixed_strategy`) and draw its
   threshold (:meth:`Learner.play`),
2. let the agent respond to the sum of the schedules,
3. hand every learner a :class:`~cage_games.learning._kernel.Feedback`: full information, the
   payoff (and exact derivative) of any threshold against the others' schedules of the round.

Regret is measured by the dynamics, not reported by the learners: against
:meth:`Learner.comparator` (the class the learner competes with) in hindsight.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from cage_games.learning._kernel import Feedback

__all__ = ["Learner", "RegretBound"]


@dataclass(frozen=True)
class RegretBound:
    """A theoretical bound on a learner's external regret, with what it assumes.

    Attributes
    ----------
    value : float
        The bound, in utility units (total over the rounds, not per round).
    formula : str
        The expression evaluated, with the parameters substituted.
    source : str
        The theorem it comes from.
    covers : str
        Which regret the bound controls, and under which assumption.
    """

    value: float
    formula: str
    source: str
    covers: str


class Learner(ABC):
    """One principal's online learner over truthful-threshold schedules.

    Parameters
    ----------
    low, high : float
        The threshold interval (utility units); ``high - low`` is also the range of the
        principal's payoff, used to scale payoffs to ``[0, 1]``.
    beta : float
        The agent's temperature (``> 0``).
    rounds : int
        The horizon ``T`` (fixed-horizon step sizes depend on it).
    rng : numpy.random.Generator
        Randomness for learners that sample their threshold.
    **options
        Learner-specific parameters (see each subclass).
    """

    #: Name used by :func:`cage_games.learning.learn`.
    name: ClassVar[str] = ""
    #: Whether :meth:`comparator` is the learner's whole class (regret then exact by enumeration)
    #: or a grid over a continuum (refined by a local search in hindsight).
    comparator_is_exact: ClassVar[bool] = True

    def __init__(
        self, low: float, high: float, beta: float, rounds: int, rng: np.random.Generator
    ) -> None:
        self.low = float(low)
        self.high = float(high)
        self.range = self.high - self.low
        self.beta = float(beta)
        self.rounds = int(rounds)
        self.rng = rng

    @abstractmethod
    def mixed_strategy(self) -> tuple[np.ndarray, np.ndarray]:
        """Thresholds and their probabilities for the coming round."""

    def play(self) -> float:
        """Draw the coming round's threshold from :meth:`mixed_strategy`."""
        points, probs = self.mixed_strategy()
        if points.size == 1:
            return float(points[0])
        return float(points[self.rng.choice(points.size, p=probs)])

    @abstractmethod
    def update(self, feedback: Feedback) -> None:
        """Learn from the round just played."""

    @abstractmethod
    def comparator(self) -> np.ndarray:
        """The fixed thresholds the learner's regret is measured against (same array object
        every round)."""

    @abstractmethod
    def bound(self) -> RegretBound:
        """The theoretical regret bound for this learner's parameters (after the run, for
        data-dependent bounds)."""

    @property
    @abstractmethod
    def params(self) -> Mapping[str, Any]:
        """The parameters actually used (resolved defaults included)."""

    def diagnostics(self) -> Mapping[str, Any]:
        """Learner-specific quantities worth reporting (empty by default)."""
        return {}
