"""Stability of an equilibrium: implicit-function sensitivities and a Lipschitz estimate.

At a root ``c*`` of the threshold system ``G(c; theta) = 0`` (utility units,
``G_i = c_i - beta - E_pi[y_i]`` with ``y_i = u_i - tau_i``) where the Jacobian
``J = dG/dc`` is non-singular and no action sits on a kink of a transfer schedule, the
**implicit function theorem** gives a differentiable equilibrium map with

.. math::  \\frac{dc^*}{d\\theta} = -J^{-1} \\frac{\\partial G}{\\partial \\theta}.

**Partial derivatives.** Write ``ell = (v + sum_j tau_j) / beta`` for the agent's logits
(``pi = softmax(ell)``), ``A_j(a) = 1[0 < u_j(a) - c_j < cap_j]`` and
``d pi(a) = pi(a) (d ell(a) - E_pi[d ell])``. A parameter ``theta`` enters ``G_i`` through
``y_i`` (directly), through the logits, and (``beta`` only) through the constant ``-beta``:

.. math::  \\frac{\\partial G_i}{\\partial\\theta} = \\frac{\\partial(-\\beta)}{\\partial\\theta}
           - E_\\pi\\Big[\\frac{\\partial y_i}{\\partial\\theta}\\Big]
           - \\operatorname{Cov}_\\pi\\Big(y_i, \\frac{\\partial\\ell}{\\partial\\theta}\\Big).

=====================  =========================================  ===========================
parameter              ``d y_i(a)``                               ``d ell(a)``
=====================  =========================================  ===========================
``u_j(b)``             ``delta_ij delta_ab (1 - A_i(a))``         ``delta_ab A_j(a) / beta``
weight ``w_j``         ``delta_ij (1 - A_i(a)) u_i(a)``           ``A_j(a) u_j(a) / beta``
(``u_j -> w_j u_j``)
``v(b)``               0                                          ``delta_ab / beta``
``beta`` (``v`` fixed) 0 (and ``d(-beta) = -1``)                  ``-ell(a) / beta``
=====================  =========================================  ===========================

(``tau_j = clip(u_j - c_j, 0, cap_j)`` moves one-for-one with ``u_j`` exactly where
``A_j = 1``; caps are held fixed, also under re-weighting.) With ``dc`` in hand the total
changes follow from the same rules with ``d ell(a) -= sum_j A_j(a) dc_j / beta`` and
``d y_i(a) += A_i(a) dc_i``: the policy ``d pi`` as above, the principals' payoffs
``U_i = E_pi[y_i]`` by the product rule (at the root ``U_i = c_i - beta``), and the agent's value
``V = beta log sum_a exp(ell(a))`` as ``dV = beta E_pi[d ell] (+ log sum exp ell`` for
``beta)``.

**Lipschitz estimate.** The policy's first-order response to the preference weights is
``D = d pi / d w`` (``n x m``). :func:`sensitivity` reports ``max_{|delta|_inf <= 1} TV(D delta)``
= ``max_{s in {-1, 1}^m} |D s|_1 / 2`` (a convex function is maximised at a vertex of the
cube), the total-variation change of the policy per unit change of the weights in the max norm,
and a sampled secant estimate: ``TV(pi(w + delta), pi(w)) / |delta|_inf`` for random
``delta`` in a small ball, each from a re-solved equilibrium.

The implicit function theorem needs ``G`` to be continuously differentiable near the root;
``G`` has kinks where some ``u_j(a) - c_j`` equals 0 or ``cap_j``. The report flags such
points (``smooth = False``): there the derivatives are one-sided (those of the formula with
the indicator convention above).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cage_games._validation import as_int, as_scalar
from cage_games.existence import check_game, render_report, report_to_dict
from cage_games.game import CommonAgencyGame, Principal
from cage_games.result import EquilibriumResult, FrozenRecord
from cage_games.thresholds import ThresholdSystem, log_softmax

__all__ = ["WRT", "Derivatives", "SensitivityReport", "sensitivity"]

#: The parameters :func:`sensitivity` differentiates with respect to.
WRT = ("weights", "utilities", "v", "beta")
#: A result whose thresholds leave a scaled residual above this in ``game`` is rejected.
_RESIDUAL_GATE = 1e-6
#: Distance (in units of beta) to a kink below which the point is reported as non-smooth.
_KINK_TOL = 1e-9
#: Exact max-norm-to-L1 operator norm by enumeration up to this many principals.
_MAX_SIGN_PRINCIPALS = 16


@dataclass(frozen=True, eq=False, repr=False)
class Derivatives(FrozenRecord):
    """Derivatives of the equilibrium with respect to one block of parameters.

    The trailing axes index the parameter: ``()`` for ``beta``, ``(m,)`` for ``weights``,
    ``(n,)`` for ``v`` and ``(m, n)`` for ``utilities`` (principal, action).

    Attributes
    ----------
    parameter : str
        One of :data:`WRT`.
    axes : str
        What the rows and the trailing axes of the arrays are, with names.
    thresholds : ndarray, shape (m, *p)
        ``dc_i / d theta`` (utility units).
    policy : ndarray, shape (n, *p)
        ``d pi(a) / d theta``.
    payoffs : ndarray, shape (m, *p)
        ``d U_i / d theta`` for the principals' net payoffs.
    agent_payoff : ndarray, shape p
        ``dV / d theta`` for the agent's value ``beta log sum exp((v + sum tau) / beta)``.
    """

    parameter: str
    axes: str
    thresholds: np.ndarray
    policy: np.ndarray
    payoffs: np.ndarray
    agent_payoff: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return report_to_dict(self)

    def __repr__(self) -> str:
        return render_report(self, f"Derivatives with respect to {self.parameter}")

    __str__ = __repr__


@dataclass(frozen=True, eq=False, repr=False)
class SensitivityReport(FrozenRecord):
    """Sensitivity of an equilibrium to the game's inputs (implicit function theorem).

    Attributes
    ----------
    message : str
        The conclusion in words.
    smooth : bool
        Whether no action on the agent's support sits on a kink of a transfer schedule
        (``u_j(a) - c_j`` within ``1e-9 beta`` of 0 or of the cap): then ``G`` is smooth near
        the root and the derivatives are two-sided.
    kink_margin : float
        The smallest such distance, in units of beta.
    jacobian : ndarray, shape (m, m)
        ``dG/dc`` at the root (dimensionless).
    condition_number : float
        2-norm condition number of ``jacobian``: how much errors in ``G`` are amplified in ``c``.
    lipschitz_tv : float
        First-order total-variation change of the policy per unit change of the weights in the
        max norm: ``max_{|delta|_inf <= 1} |(d pi / d w) delta|_1 / 2``.
    sampled_lipschitz_tv : float or None
        Largest sampled secant ``TV(pi(w + delta), pi(w)) / |delta|_inf`` over random
        ``|delta|_inf <= radius`` (re-solved equilibria).
    radius : float
        The radius of that ball of weights (around ``w = 1``).
    n_lipschitz_samples : int
        Number of re-solved perturbed games.
    wrt : tuple of str
        The parameter blocks differentiated.
    derivatives : mapping
        ``parameter -> Derivatives``.
    residual : float
        The threshold-system residual of ``result`` in this game (units of beta).
    game : CommonAgencyGame
        The game.
    result : EquilibriumResult
        The equilibrium that was differentiated.
    """

    message: str
    smooth: bool
    kink_margin: float
    jacobian: np.ndarray
    condition_number: float
    lipschitz_tv: float
    sampled_lipschitz_tv: float | None
    radius: float
    n_lipschitz_samples: int
    wrt: tuple[str, ...]
    derivatives: Mapping[str, Derivatives]
    residual: float
    game: CommonAgencyGame | None = field(default=None, repr=False)
    result: EquilibriumResult | None = field(default=None, repr=False)

    def __getitem__(self, parameter: str) -> Derivatives:
        """The :class:`Derivatives` for one parameter block, e.g. ``report["weights"]``."""
        try:
            return self.derivatives[parameter]
        except KeyError:
            raise KeyError(
                f"no derivatives with respect to {parameter!r}; this report has {list(self.wrt)}"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready ``dict`` (game and result left out)."""
        return report_to_dict(self)

    def __repr__(self) -> str:
        return render_report(self, "SensitivityReport")

    __str__ = __repr__


def _parse_wrt(wrt: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(wrt, str):
        names = WRT if wrt == "all" else (wrt,)
    else:
        try:
            names = tuple(wrt)
        except TypeError:
            raise TypeError(f"wrt must be a string or a sequence of strings from {WRT}") from None
    if not names:
        raise ValueError(f"wrt is empty: give at least one of {WRT} (or 'all')")
    for name in names:
        if not isinstance(name, str) or name not in WRT:
            raise ValueError(f"wrt must name parameters from {WRT} (or be 'all'), got {name!r}")
    return tuple(dict.fromkeys(names))


def reweighted(game: CommonAgencyGame, weights: np.ndarray) -> CommonAgencyGame:
    """``game`` with each principal's utility scaled by its weight (caps unchanged)."""
    return CommonAgencyGame(
        game.agent,
        [
            Principal(w * p.utility, p.name, p.cap)
            for w, p in zip(weights, game.principals, strict=True)
        ],
        game.action_names,
    )


def _check_result(game: CommonAgencyGame, result: object, system: ThresholdSystem) -> float:
    if not isinstance(result, EquilibriumResult):
        raise TypeError(
            f"result must be a cage_games EquilibriumResult (from cage_games.solve), got "
            f"{type(result).__name__}"
        )
    c = np.asarray(result.thresholds, dtype=float)
    if c.shape != (game.n_principals,):
        raise ValueError(
            f"result has {c.size} thresholds but game has {game.n_principals} principals: the "
            "result comes from another game"
        )
    if not result.success:
        raise ValueError(
            f"result did not converge (status {result.status}: {result.message}); sensitivities "
            "are only meaningful at an equilibrium"
        )
    residual = float(np.max(np.abs(system.residual(c))))
    if not residual <= _RESIDUAL_GATE:
        raise ValueError(
            f"result is not an equilibrium of game: its thresholds leave a residual "
            f"{residual:.3g} (> {_RESIDUAL_GATE:g}) in this game; the result comes from another "
            "game (solve this one with cage_games.solve)"
        )
    return residual


class _Propagator:
    """Implicit-function propagation at one root (utility units; see the module docstring)."""

    def __init__(self, system: ThresholdSystem, thresholds: np.ndarray) -> None:
        self.beta = beta = system.beta
        self.game = system.game
        gamma = thresholds / beta
        ev = system.evaluate(gamma)
        self.J = ev.J
        self.pi = ev.policy
        S = system.support
        d = system.r - gamma[:, None]
        tau = np.clip(d, 0.0, system.kappa[:, None])
        self.A = ((d > 0.0) & (d < system.kappa[:, None])).astype(float)
        self.A[:, ~S] = 0.0
        self.y = beta * (d - tau + gamma[:, None])  # u_i - tau_i
        self.y[:, ~S] = 0.0
        self.u = np.where(S, system.game.utilities, 0.0)
        logits = system.nu + tau.sum(axis=0)
        self.ell = np.where(S, logits, 0.0)
        self.lse = float(np.max(logits) - log_softmax(logits)[np.argmax(logits)])
        dist = np.minimum(np.abs(d), np.abs(d - system.kappa[:, None]))[:, S]
        self.kink_margin = float(dist.min())

    def propagate(self, dy: np.ndarray, dl: np.ndarray, dconst: np.ndarray, dV_direct: np.ndarray):
        """Total derivatives from the direct partials ``dy``, ``dl`` and ``dconst``."""
        pi, beta, y, A = self.pi, self.beta, self.y, self.A
        Ey = y @ pi
        dG = dconst - np.einsum("a,iak->ik", pi, dy) - ((y - Ey[:, None]) * pi) @ dl
        dc = -np.linalg.solve(self.J, dG)
        dl_tot = dl - (A.T @ dc) / beta
        dpi = pi[:, None] * (dl_tot - pi @ dl_tot)
        dy_tot = dy + A[:, :, None] * dc[:, None, :]
        dU = y @ dpi + np.einsum("a,iak->ik", pi, dy_tot)
        dV = beta * (pi @ dl_tot) + dV_direct
        return dc, dpi, dU, dV


def _derivatives(prop: _Propagator, name: str, m: int, n: int) -> Derivatives:
    beta, A, u = prop.beta, prop.A, prop.u
    if name == "weights":
        dy = np.zeros((m, n, m))
        dy[np.arange(m), :, np.arange(m)] = (1.0 - A) * u
        dl = (A * u).T / beta
        out = prop.propagate(dy, dl, np.zeros((m, m)), np.zeros(m))
        shape: tuple[int, ...] = (m,)
    elif name == "utilities":
        k = m * n
        dy = np.zeros((m, n, k))
        dl = np.zeros((n, k))
        for j in range(m):
            cols = j * n + np.arange(n)
            dy[j, np.arange(n), cols] = 1.0 - A[j]
            dl[np.arange(n), cols] = A[j] / beta
        out = prop.propagate(dy, dl, np.zeros((m, k)), np.zeros(k))
        shape = (m, n)
    elif name == "v":
        dl = np.eye(n) / beta  # off the support pi = 0, so those columns do nothing
        out = prop.propagate(np.zeros((m, n, n)), dl, np.zeros((m, n)), np.zeros(n))
        shape = (n,)
    else:  # beta, with v held fixed
        dl = (-prop.ell / beta)[:, None]
        out = prop.propagate(np.zeros((m, n, 1)), dl, -np.ones((m, 1)), np.array([prop.lse]))
        shape = ()
    dc, dpi, dU, dV = out
    game = prop.game
    principals = ", ".join(game.names)
    actions = ", ".join(game.action_names or [f"a{j}" for j in range(n)])
    columns = {
        "weights": f"one column per weight ({principals})",
        "utilities": f"then principal ({principals}) and action ({actions})",
        "v": f"one column per action ({actions})",
        "beta": "no parameter axis",
    }[name]
    axes = (
        f"rows: principals ({principals}) for thresholds and payoffs, actions ({actions}) for "
        f"the policy; {columns}"
    )
    return Derivatives(
        parameter=name,
        axes=axes,
        thresholds=dc.reshape((m, *shape)),
        policy=dpi.reshape((n, *shape)),
        payoffs=dU.reshape((m, *shape)),
        agent_payoff=np.asarray(dV).reshape(shape),
    )


def _operator_norm_inf_to_l1(D: np.ndarray) -> float:
    m = D.shape[1]
    if m <= _MAX_SIGN_PRINCIPALS:
        signs = np.array(list(itertools.product((-1.0, 1.0), repeat=m)))
        return float(np.max(np.abs(D @ signs.T).sum(axis=0)))
    return float(np.abs(D).sum())  # an upper bound


def sensitivity(
    game: CommonAgencyGame,
    result: EquilibriumResult,
    wrt: str | Sequence[str] = "all",
    *,
    lipschitz_samples: int = 8,
    radius: float = 0.05,
    seed: int | None = 0,
) -> SensitivityReport:
    """Derivatives of an equilibrium with respect to the game's inputs, and its conditioning.

    Implicit function theorem at the root of the threshold system:
    ``dc/dtheta = -J^{-1} dG/dtheta`` with ``dG/dtheta`` derived analytically (module
    docstring), propagated to the policy, the principals' payoffs and the agent's value. Also
    reports ``cond(J)`` and a Lipschitz estimate of the policy in the preference weights (the
    first-order operator norm, max norm to total variation, and a sampled secant over a ball
    of re-solved games).

    Parameters
    ----------
    game : CommonAgencyGame
        The game, ``beta > 0``.
    result : EquilibriumResult
        An equilibrium of ``game`` (``cage_games.solve(game)``), ``success`` required.
    wrt : str or sequence of str
        Parameter blocks from :data:`WRT`: ``"weights"`` (scaling ``u_i -> w_i u_i`` at
        ``w = 1``, caps fixed), ``"utilities"`` (each ``u_i(a)``), ``"v"`` (each ``v(a)``),
        ``"beta"`` (with ``v`` fixed); or ``"all"`` (the default).
    lipschitz_samples : int
        Perturbed games re-solved for the sampled Lipschitz estimate (0 to skip).
    radius : float
        Max-norm radius of the ball of weights sampled, in ``(0, 1)``.
    seed : int or None
        Seed of the sampled perturbations.

    Returns
    -------
    SensitivityReport
        ``report["weights"].policy`` is ``d pi / d w`` (shape ``(n, m)``), and so on.

    Raises
    ------
    ValueError
        For ``beta = 0``, a bad ``wrt``, a result that did not converge or that is not an
        equilibrium of ``game``, or a singular Jacobian.

    Examples
    --------
    >>> import cage_games as cg
    >>> from cage_games.sensitivity import sensitivity
    >>> from cage_games.solvers import solve
    >>> game = cg.CommonAgencyGame(cg.Agent([0.0, 0.0, 0.0], beta=1.0),
    ...                            [cg.Principal([0.0, 3.0, 1.0]), cg.Principal([2.0, 0.0, 2.5])])
    >>> rep = sensitivity(game, solve(game), wrt="weights", lipschitz_samples=0)
    >>> rep["weights"].policy.shape, bool(rep.smooth)
    ((3, 2), True)
    """
    game = check_game(game)
    if game.beta == 0:
        raise ValueError(
            "sensitivity needs beta > 0: at beta = 0 (a menu auction) the equilibrium payoffs "
            "are set-valued and the policy is not differentiable"
        )
    names = _parse_wrt(wrt)
    lipschitz_samples = as_int(lipschitz_samples, "lipschitz_samples", minimum=0)
    radius = as_scalar(radius, "radius", minimum=0.0, strict=True)
    if radius >= 1.0:
        raise ValueError(f"radius must be < 1 (weights must stay positive), got {radius}")
    system = ThresholdSystem(game)
    residual = _check_result(game, result, system)
    m, n = game.n_principals, game.n_actions
    thresholds = np.asarray(result.thresholds, dtype=float)
    prop = _Propagator(system, thresholds)
    cond = float(np.linalg.cond(prop.J))
    if not np.isfinite(cond) or cond > 1e14:
        raise ValueError(
            f"the threshold Jacobian is singular at this equilibrium (condition number {cond:.3g}):"
            " the implicit function theorem does not apply"
        )
    derivs = {name: _derivatives(prop, name, m, n) for name in names}
    dpi_dw = (
        derivs["weights"].policy
        if "weights" in derivs
        else _derivatives(prop, "weights", m, n).policy
    )
    lip = 0.5 * _operator_norm_inf_to_l1(np.asarray(dpi_dw))
    sampled = None
    if lipschitz_samples:
        from cage_games.solvers import solve

        rng = np.random.default_rng(seed)
        ratios = []
        for _ in range(lipschitz_samples):
            delta = rng.uniform(-radius, radius, size=m)
            res = solve(reweighted(game, 1.0 + delta), x0=thresholds * (1.0 + delta))
            if res.success:
                tv = 0.5 * float(np.abs(res.policy - prop.pi).sum())
                ratios.append(tv / float(np.max(np.abs(delta))))
        sampled = max(ratios) if ratios else None
    smooth = prop.kink_margin > _KINK_TOL
    msg = (
        f"Implicit-function derivatives at the equilibrium (cond(J) = {cond:.3g}). "
        f"First order, a change of the weights by delta (max norm) moves the policy by about "
        f"{lip:.3g} * delta in total variation"
    )
    if sampled is not None:
        msg += f"; sampled secants over a ball of radius {radius:g}: at most {sampled:.3g}."
    else:
        msg += "."
    if not smooth:
        msg += (
            f" CAUTION: an action sits on a kink of a transfer schedule (distance "
            f"{prop.kink_margin:.2g} beta): G is not differentiable there and these are one-sided "
            "derivatives."
        )
    return SensitivityReport(
        message=msg,
        smooth=bool(smooth),
        kink_margin=prop.kink_margin,
        jacobian=prop.J,
        condition_number=cond,
        lipschitz_tv=lip,
        sampled_lipschitz_tv=sampled,
        radius=radius,
        n_lipschitz_samples=lipschitz_samples,
        wrt=names,
        derivatives=derivs,
        residual=residual,
        game=game,
        result=result,
    )
