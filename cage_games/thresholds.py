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

_TINY = 1e-200  # below this the unpaid mass s_i is recomputed in log space


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
    F: np.ndarray | None = None  # (m,) residual in log form (evaluate_log)
    JF: np.ndarray | None = None  # (m, m) its Jacobian
    log_parts: tuple | None = None  # pieces kept to form JF later


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
        self.has_caps = not bool(self.uncapped.all())
        rs = self.r if self.support.all() else self.r[:, self.support]
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
        if self.has_caps:
            tau = np.clip(d, 0.0, self.kappa[:, None])
            w = d - tau  # (u_i - tau_i - c_i) / beta
        else:
            tau = np.maximum(d, 0.0)
            w = np.minimum(d, 0.0)
        logits = self.nu + tau.sum(axis=0)
        logits -= logits.max()
        e = np.exp(logits)  # one exponential pass for both pi and log pi
        total = e.sum()
        pi = e / total
        logp = logits - np.log(total)
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

    def evaluate_log(self, gamma: np.ndarray, jacobian: bool = True) -> Evaluation:
        r"""The residual in log form, ``F``, with its Jacobian; same roots as ``G``.

        Write ``1 + G_i = s_i - o_i`` with ``s_i = E_pi[(gamma_i - r_i)_+]`` (what principal
        ``i`` keeps on unpaid actions) and ``o_i = E_pi[(r_i - gamma_i - kappa_i)_+]`` (its
        surplus above the cap; 0 when uncapped). Then ``G_i = 0`` iff

        .. math::  \rho_i = s_i / (1 + o_i) = 1, \qquad
                   F_i = \log \rho_i \ (\rho_i < 1), \quad F_i = \rho_i - 1 \ (\rho_i \ge 1),

        a C^1 function of ``rho`` that is ``G_i`` itself for an uncapped principal above its
        root (there ``s_i`` is nearly linear in ``gamma_i`` and a logarithm would overshoot).

        ``log s_i`` is a log-sum-exp over unpaid actions of ``log pi_a + log(gamma_i - r_ia)``,
        so it stays accurate when the unpaid actions have probabilities below ``1e-300``
        (a principal that pays for a dominant action). There ``G_i`` is flat, close to
        ``-1``, and grows like an exponential: Newton on ``G`` advances about one unit of
        ``beta`` per step, Newton on ``F`` jumps. With ``A_j`` the marginal-payment indicator
        of :meth:`evaluate`, ``g = (gamma_i - r_i)_+``, ``h = (r_i - gamma_i - kappa_i)_+``:

        .. math::  \frac{\partial \log \rho_i}{\partial \gamma_j}
                   = \delta_{ij}\Big(\frac{P(g > 0)}{s_i} + \frac{P(h > 0)}{1 + o_i}\Big)
                   - \frac{E[g A_j]}{s_i} + \frac{E[A_j] + E[h A_j]}{1 + o_i},

        multiplied by ``rho_i`` on the rows where ``rho_i >= 1``. The result carries ``G``
        (for the residual) and ``F``; ``JF`` is filled in by :meth:`add_log_jacobian`.
        """
        ev = self.evaluate(gamma, jacobian=False)
        d, pi = ev.d, ev.policy
        # pi_a (gamma_i - r_ia)_+, which is -w pi when nobody is capped
        gp = (np.maximum(-d, 0.0) if self.has_caps else -ev.w) * pi
        s = gp.sum(axis=1)
        log_s = np.empty_like(s)
        direct = s > _TINY
        log_s[direct] = np.log(s[direct])
        tiny_rows = np.flatnonzero(~direct)
        cond_tiny = {}
        for i in tiny_rows:  # unpaid mass below 1e-200: redo this row in log space
            unpaid = (d[i] < 0.0) & self.support
            with np.errstate(divide="ignore"):
                lg = np.where(unpaid, ev.log_policy + np.log(np.where(unpaid, -d[i], 1.0)), -np.inf)
            top = float(lg.max()) if unpaid.any() else 0.0
            wts = np.exp(lg - top)
            tot = float(wts.sum())
            log_s[i] = (np.log(tot) if tot > 0 else -np.inf) + top
            cond_tiny[int(i)] = (wts / tot if tot > 0 else wts, unpaid)
        if self.has_caps:
            hp = np.maximum(d - self.kappa[:, None], 0.0) * pi  # pi_a (r_ia - gamma_i - kappa_i)_+
            o = hp.sum(axis=1)
        else:
            hp, o = None, np.zeros_like(s)
        logr = log_s - np.log1p(o)
        above = logr > 0.0
        ev.F = np.where(above, np.expm1(np.where(above, logr, 0.0)), logr)
        ev.log_parts = (gp, s, log_s, cond_tiny, hp, o, above)
        if jacobian:
            self.add_log_jacobian(ev)
        return ev

    def add_log_jacobian(self, ev: Evaluation) -> Evaluation:
        """Fill in ``ev.JF`` from the pieces kept by :meth:`evaluate_log`."""
        if ev.JF is not None:
            return ev
        gp, s, log_s, cond_tiny, hp, o, above = ev.log_parts
        d, pi = ev.d, ev.policy
        A = ((d > 0.0) & (d < self.kappa[:, None])) if self.has_caps else (d > 0.0)
        A = A.astype(np.float64)
        EA = A @ pi
        unpaid_mass = (d < 0.0).astype(np.float64) @ pi  # pi = 0 off the support
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            # d log s_i / d gamma_j = delta_ij P(unpaid_i) / s_i - E[g_i A_j] / s_i + E[A_j]
            safe = np.where(s > 0, s, 1.0)
            JF = -(gp @ A.T) / safe[:, None] + EA[None, :]
            diag = unpaid_mass / safe
            for i, (cond, unpaid) in cond_tiny.items():
                JF[i] = -(A @ cond) + EA
                lpu = np.where(unpaid, ev.log_policy, -np.inf)
                top = float(lpu.max()) if unpaid.any() else 0.0
                diag[i] = np.exp(np.log(np.exp(lpu - top).sum()) + top - log_s[i])
        if hp is not None:
            # -d log(1 + o_i)/d gamma_j
            #   = [delta_ij P(h_i > 0) + E[h_i A_j] - o_i E[A_j]] / (1 + o_i)
            capped_mass = (hp > 0).astype(np.float64) @ pi
            JF += ((hp @ A.T) - o[:, None] * EA[None, :]) / (1.0 + o)[:, None]
            diag = diag + capped_mass / (1.0 + o)
        JF[np.diag_indices_from(JF)] += diag
        JF[above] *= (1.0 + ev.F[above])[:, None]
        ev.JF = JF
        return ev

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
