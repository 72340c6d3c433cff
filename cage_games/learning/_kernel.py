"""Payoffs and exact own-threshold derivatives of truthful-threshold schedules.

Every learner in this subpackage plays a *truthful-threshold* schedule
``tau_i(a) = clip(u_i(a) - c_i, 0, cap_i)`` (design note, fact 2), so a principal's strategy is
one number, its threshold ``c_i``. This module evaluates, for principal ``i`` facing the others'
current schedules, its net payoff and the derivative of that payoff in its own threshold, for
many candidate thresholds at once. Everything is computed in units of ``beta`` (as in
:class:`cage_games.ThresholdSystem`) and returned in utility units.

The derivative (derived in docs/learning.rst). Write ``r = u / beta``, ``gamma = c / beta``,
``t_i = clip(r_i - gamma_i, 0, kappa_i)``, ``w_i = r_i - t_i`` and
``A_i = 1[0 <= r_i - gamma_i < kappa_i]`` (the actions whose transfer moves with ``c_i``). Then
``d t_i / d gamma_i = -A_i`` and ``d log pi / d gamma_i = -(A_i - E_pi[A_i])``, so

.. math::  \\frac{\\partial U_i}{\\partial c_i} = P_\\pi(A_i)
           - \\tfrac{1}{\\beta}\\operatorname{Cov}_\\pi(u_i - \\tau_i,\\ A_i).

``U_i`` is piecewise smooth in ``c_i`` with kinks where ``c_i`` crosses a value ``u_i(a)`` (or
``u_i(a) - cap_i``); at a kink the formula with ``0 <= r - gamma`` (rather than ``0 <``) is the
*left* derivative, which keeps projected gradient ascent from stalling at ``c_i = max u_i``,
where the right derivative is zero because nothing is paid any more.
"""

from __future__ import annotations

import numpy as np

from cage_games.game import CommonAgencyGame
from cage_games.thresholds import ThresholdSystem, log_softmax

__all__ = ["Feedback", "Kernel", "threshold_payoff_gradients", "threshold_payoffs"]


class Kernel:
    """The game in scaled units, with the per-principal threshold interval of the learners.

    Parameters
    ----------
    game : CommonAgencyGame
        A game with ``beta > 0``.

    Attributes
    ----------
    low, high : ndarray, shape (m,)
        ``min`` and ``max`` of ``u_i`` over the agent's support (utility units). Every
        threshold in ``[low_i, high_i]`` gives a different schedule; every threshold above
        ``high_i`` gives the zero schedule (the same as ``high_i``), and every best response's
        schedule is attained inside (docs/learning.rst). It is also the range of ``U_i``.
    """

    def __init__(self, game: CommonAgencyGame) -> None:
        self.system = ThresholdSystem(game)
        self.game = game
        self.beta = float(game.beta)
        sup = game.agent.support
        self.low = game.utilities[:, sup].min(axis=1)
        self.high = game.utilities[:, sup].max(axis=1)
        self.m = game.n_principals
        self.n = game.n_actions

    # -- whole profiles ---------------------------------------------------------------
    def scaled_transfers(self, thresholds: np.ndarray) -> np.ndarray:
        """``tau / beta`` for thresholds of shape (..., m): shape (..., m, n)."""
        s = self.system
        gamma = np.asarray(thresholds, float) / self.beta
        return np.clip(s.r - gamma[..., None], 0.0, s.kappa[:, None])

    def logits(self, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(nu + sum_j t_j, t)`` for thresholds of shape (..., m)."""
        t = self.scaled_transfers(thresholds)
        return self.system.nu + t.sum(axis=-2), t

    def policy(self, thresholds: np.ndarray) -> np.ndarray:
        """The agent's logit response to the threshold schedules, shape (..., n)."""
        total, _ = self.logits(thresholds)
        return np.exp(log_softmax(total))

    def feedback(self, i: int, base: np.ndarray) -> Feedback:
        """Full-information feedback for principal ``i`` given the others' scaled logits."""
        return Feedback(self, i, base)

    # -- one principal against fixed opponents ------------------------------------------
    def _pieces(self, i: int, base: np.ndarray, c: np.ndarray):
        s = self.system
        d = s.r[i] - np.asarray(c, float)[..., None] / self.beta
        t = np.clip(d, 0.0, s.kappa[i])
        pi = np.exp(log_softmax(base + t))
        w = s.r[i] - t
        return d, pi, w

    def payoff(self, i: int, base: np.ndarray, c: np.ndarray) -> np.ndarray:
        """``U_i`` (utility units) at thresholds ``c`` (shape broadcastable with base[..., 0])."""
        _, pi, w = self._pieces(i, base, c)
        return self.beta * np.sum(pi * w, axis=-1)

    def gradient(self, i: int, base: np.ndarray, c: np.ndarray) -> np.ndarray:
        """``dU_i / dc_i`` (left derivative at kinks), same shapes as :meth:`payoff`."""
        d, pi, w = self._pieces(i, base, c)
        active = (d >= 0.0) & (d < self.system.kappa[i])
        ew = np.sum(pi * w, axis=-1, keepdims=True)
        pa = np.sum(np.where(active, pi, 0.0), axis=-1)
        cov = np.sum(np.where(active, pi * (w - ew), 0.0), axis=-1)
        return pa - cov

    def gradient_bound(self) -> np.ndarray:
        """``1 + (high_i - low_i) / (4 beta)``: a bound on ``|dU_i/dc_i|`` everywhere."""
        return 1.0 + (self.high - self.low) / (4.0 * self.beta)


class Feedback:
    """What principal ``i`` observes after a round: its payoff function against the others.

    Full information: the learner can evaluate the payoff (and its derivative) of *any*
    threshold against the schedules the other principals just played. Results are cached per
    array object for the round, so the learner and the regret accounting share evaluations.
    """

    def __init__(self, kernel: Kernel, i: int, base: np.ndarray) -> None:
        self._kernel = kernel
        self.i = i
        self.base = base
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def payoff(self, c: np.ndarray) -> np.ndarray:
        """Payoffs ``U_i(c)`` in utility units for an array of thresholds."""
        hit = self._cache.get(id(c))
        if hit is not None and hit[0] is c:
            return hit[1]
        value = self._kernel.payoff(self.i, self.base, np.asarray(c, float))
        if isinstance(c, np.ndarray):
            self._cache[id(c)] = (c, value)
        return value

    def gradient(self, c: np.ndarray) -> np.ndarray:
        """Exact derivatives ``dU_i/dc_i`` at an array of thresholds (left ones at kinks)."""
        return self._kernel.gradient(self.i, self.base, np.asarray(c, float))


def _profile(game: CommonAgencyGame, thresholds: object) -> tuple[Kernel, np.ndarray]:
    if not isinstance(game, CommonAgencyGame):
        raise TypeError(f"game must be a cage_games.CommonAgencyGame, got {type(game).__name__}")
    if not game.beta > 0:
        raise ValueError(
            "game.beta is 0: threshold payoffs need the agent's logit response (beta > 0)"
        )
    c = np.asarray(thresholds, dtype=float)
    if c.shape != (game.n_principals,) or not np.isfinite(c).all():
        raise ValueError(
            f"thresholds must be {game.n_principals} finite numbers (one per principal), "
            f"got shape {c.shape}"
        )
    return Kernel(game), c


def threshold_payoffs(game: CommonAgencyGame, thresholds: object) -> np.ndarray:
    """Net payoffs ``U_i = E_pi[u_i - tau_i]`` when every principal plays its threshold schedule.

    Parameters
    ----------
    game : CommonAgencyGame
        A game with ``beta > 0``.
    thresholds : array_like, shape (m,)
        Thresholds ``c_i`` in utility units; ``tau_i = clip(u_i - c_i, 0, cap_i)``.

    Returns
    -------
    ndarray, shape (m,)
    """
    kernel, c = _profile(game, thresholds)
    total, t = kernel.logits(c)
    return np.array([kernel.payoff(i, total - t[i], c[i]) for i in range(kernel.m)])


def threshold_payoff_gradients(game: CommonAgencyGame, thresholds: object) -> np.ndarray:
    """Own-threshold derivatives ``dU_i/dc_i`` of the threshold-schedule payoffs.

    ``dU_i/dc_i = P_pi(A_i) - Cov_pi(u_i - tau_i, A_i) / beta`` with
    ``A_i = 1[0 <= u_i - c_i < cap_i]`` (docs/learning.rst); at a kink (``c_i`` equal to some
    ``u_i(a)`` or ``u_i(a) - cap_i``) this is the left derivative. Without caps it equals
    ``-P_pi(A_i) G_i(c) / beta`` with ``G`` the threshold system, so it vanishes (on the active
    region) exactly at the truthful best response.

    Parameters
    ----------
    game : CommonAgencyGame
        A game with ``beta > 0``.
    thresholds : array_like, shape (m,)
        Thresholds ``c_i`` in utility units.

    Returns
    -------
    ndarray, shape (m,)
        Dimensionless (utility per utility).
    """
    kernel, c = _profile(game, thresholds)
    total, t = kernel.logits(c)
    return np.array([kernel.gradient(i, total - t[i], c[i]) for i in range(kernel.m)])
