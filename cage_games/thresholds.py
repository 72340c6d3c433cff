"""The threshold system: the EPEC reduced to ``m`` equations in ``m`` unknowns.

At an equilibrium with temperature ``beta > 0`` every principal's transfer is *truthful up to a
threshold* (KKT of its best response, design note fact 2):

.. math::  \\tau_i(a) = \\operatorname{clip}(u_i(a) - c_i,\\ 0,\\ \\bar\\tau_i),
           \\qquad c_i = \\beta + E_\\pi[u_i - \\tau_i],

so the equilibrium thresholds solve ``G(c) = 0`` with

.. math::  G_i(c) = c_i - \\beta - E_{\\pi(c)}[u_i - \\tau_i(c)],
           \\qquad \\pi(c) \\propto \\exp\\big((v + \\textstyle\\sum_j \\tau_j(c)) / \\beta\\big).

Its Jacobian (derived in docs/model.rst) is, with ``A_j(a) = 1[0 < u_j(a) - c_j < cap_j]``,

.. math::  \\partial G_i / \\partial c_j = \\delta_{ij} P_\\pi(A_i = 0)
           + \\tfrac{1}{\\beta} \\operatorname{Cov}_\\pi(u_i - \\tau_i,\\ A_j).

Everything here works in units of ``beta`` (``r = u / beta``, ``gamma = c / beta``): the game
is invariant under scaling ``(u, v, beta, cap)`` together, so the scaled residual ``G / beta``
is dimensionless and is what the solvers report as ``residual``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cage_games.game import CommonAgencyGame

__all__ = ["ThresholdSystem", "log_softmax"]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Stable ``log(exp(x) / sum(exp(x)))`` over the last axis; ``-inf`` entries stay ``-inf``."""
    top = np.max(logits, axis=-1, keepdims=True)
    shifted = logits - top
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


@dataclass
class Evaluation:
    """``G``, its Jacobian and the agent's response at scaled thresholds ``gamma``."""

    gamma: np.ndarray  # (m,)
    G: np.ndarray  # (m,) scaled residual G / beta
    policy: np.ndarray  # (n,)
    log_policy: np.ndarray  # (n,)
    J: np.ndarray | None = None  # (m, m)
    d: np.ndarray | None = None  # (m, n) r - gamma, kept to form J later
    w: np.ndarray | None = None  # (m, n) (u - tau - c) / beta
    Ew: np.ndarray | None = None  # (m,)


class ThresholdSystem:
    """``G(c) / beta`` and its Jacobian for a game with ``beta > 0``, in units of ``beta``.

    Parameters
    ----------
    game : CommonAgencyGame
        A game with ``beta > 0``.
    beta : float, optional
        Use this temperature instead of the game's, holding ``v`` fixed (a homotopy).

    Attributes
    ----------
    r : ndarray, shape (m, n)
        Scaled utilities ``u / beta``.
    nu : ndarray, shape (n,)
        Scaled agent utility ``v / beta``, ``-inf`` outside the agent's support.
    kappa : ndarray, shape (m,)
        Scaled caps ``cap / beta`` (``inf`` where uncapped).
    lower, upper : ndarray, shape (m,)
        The existence box in scaled units: ``min_S r_i`` and ``max_S r_i + 1`` over the
        support ``S``. ``G_i <= -1`` on its lower face and ``G_i >= 0`` on its upper face,
        whatever the other thresholds (design note fact 3), so a root lies inside.
    """

    def __init__(self, game: CommonAgencyGame, beta: float | None = None) -> None:
        # ``beta`` overrides the game's temperature with ``v`` held fixed (used by the
        # temperature continuation of the Newton solver).
        beta = game.beta if beta is None else float(beta)
        if not beta > 0:
            raise ValueError("the threshold system needs beta > 0 (beta = 0 is a menu auction)")
        self.game = game
        self.beta = beta
        self.support = game.agent.support
        self.r = game.utilities / beta
        self.nu = np.where(self.support, game.agent.utility / beta, -np.inf)
        self.kappa = game.caps / beta
        self.uncapped = ~np.isfinite(self.kappa)
        rs = self.r[:, self.support]
        self.lower = rs.min(axis=1)
        self.upper = rs.max(axis=1) + 1.0

    # -- pieces -------------------------------------------------------------------------
    def scaled_transfers(self, gamma: np.ndarray) -> np.ndarray:
        """``tau / beta = clip(r - gamma, 0, kappa)``, shape (m, n)."""
        return np.clip(self.r - gamma[:, None], 0.0, self.kappa[:, None])

    def transfers(self, thresholds: np.ndarray) -> np.ndarray:
        """Transfers in utility units for thresholds ``c`` (zero off the agent's support)."""
        tau = self.beta * self.scaled_transfers(np.asarray(thresholds, float) / self.beta)
        tau[:, ~self.support] = 0.0
        return tau

    def evaluate(self, gamma: np.ndarray, jacobian: bool = True) -> Evaluation:
        """Evaluate the scaled residual (and optionally the Jacobian) at ``gamma``."""
        d = self.r - gamma[:, None]
        tau = np.clip(d, 0.0, self.kappa[:, None])
        logp = log_softmax(self.nu + tau.sum(axis=0))
        pi = np.exp(logp)
        w = d - tau  # (u_i - tau_i - c_i) / beta
        Ew = w @ pi
        ev = Evaluation(gamma=gamma, G=-1.0 - Ew, policy=pi, log_policy=logp, d=d, w=w, Ew=Ew)
        if jacobian:
            self.add_jacobian(ev)
        return ev

    def add_jacobian(self, ev: Evaluation) -> Evaluation:
        """Fill in ``ev.J`` from the pieces kept by :meth:`evaluate` (no new softmax)."""
        if ev.J is None:
            A = ((ev.d > 0.0) & (ev.d < self.kappa[:, None])).astype(np.float64)
            EA = A @ ev.policy
            J = ((ev.w - ev.Ew[:, None]) * ev.policy) @ A.T
            J[np.diag_indices_from(J)] += 1.0 - EA
            ev.J = J
        return ev

    def residual(self, thresholds: np.ndarray) -> np.ndarray:
        """Scaled residual ``G(c) / beta`` at thresholds ``c`` in utility units."""
        return self.evaluate(np.asarray(thresholds, float) / self.beta, jacobian=False).G

    # -- one principal at a time (Gauss-Seidel, capped best responses) --------------------
    def partial(self, i: int, gamma: np.ndarray):
        """Return ``g(x) -> (G_i, dG_i/dc_i)`` with the other thresholds held at ``gamma``."""
        d_others = self.r - gamma[:, None]
        tau_others = np.clip(d_others, 0.0, self.kappa[:, None])
        base = self.nu + tau_others.sum(axis=0) - tau_others[i]
        ri, ki = self.r[i], self.kappa[i]

        def g(x: float) -> tuple[float, float]:
            d = ri - x
            tau = np.clip(d, 0.0, ki)
            pi = np.exp(log_softmax(base + tau))
            w = d - tau
            Ew = float(w @ pi)
            A = (d > 0.0) & (d < ki)
            EA = float(pi[A].sum())
            cov = float(((w - Ew) * pi)[A].sum())
            return -1.0 - Ew, 1.0 - EA + cov

        return g
