"""Existence of an equilibrium, checked for a given game: hypotheses, argument and samples.

For ``beta > 0`` the equilibria are the roots of the threshold system (design note, fact 2)

.. math::  G_i(c) = c_i - \\beta - E_{\\pi(c)}[u_i - \\tau_i],\\qquad
           \\tau_i = \\operatorname{clip}(u_i - c_i, 0, \\bar\\tau_i),\\qquad
           \\pi(c) \\propto \\exp\\big((v + \\textstyle\\sum_j \\tau_j) / \\beta\\big),

and existence follows from the **Poincaré–Miranda theorem** (Miranda, 1940, "Un'osservazione
su un teorema di Brouwer", Boll. Un. Mat. Ital. 3): a continuous map ``G`` on a box
``prod_i [l_i, h_i]`` with ``G_i <= 0`` on the face ``c_i = l_i`` and ``G_i >= 0`` on the face
``c_i = h_i`` has a zero in the box. The hypotheses hold on ``l_i = min_a u_i(a)``,
``h_i = max_a u_i(a) + beta`` (minimum and maximum over the agent's support), with caps or
without, whatever the other thresholds are:

* on ``c_i = min u_i`` every action has ``u_i - c_i >= 0``, so
  ``u_i - tau_i - c_i = (u_i - c_i - cap_i)_+ >= 0`` and ``G_i <= -beta``;
* on ``c_i = max u_i + beta`` every action has ``u_i - c_i <= -beta < 0``, so ``tau_i = 0``
  and ``G_i = c_i - beta - E[u_i] >= 0``.

The same two inequalities, read with ``t_i = c_i - min u_i``, say more: ``G_i <= t_i - beta``
always (because ``c_i - u_i - ... <= t_i``), so ``G_i < 0`` whenever ``c_i < min u_i + beta``,
and ``G_i > 0`` whenever ``c_i > max u_i + beta``. **Every** root therefore lies in the
*root box* ``[min u_i + beta, max u_i + beta]`` (equilibrium payoffs ``c_i - beta`` lie between
the principal's worst and best utility), which is again a Poincaré–Miranda box. The uniqueness
check (:mod:`cage_games.uniqueness`) works on that smaller box.

For ``beta = 0`` (the menu auction) the argument is Bernheim and Whinston's (1986, "Menu
auctions, resource allocation, and economic influence", QJE 101(1), Theorem 2): truthful
equilibria exist, the agent takes an efficient action of a finite set, and the payoffs are
the Pareto frontier of a non-empty polytope (see :mod:`cage_games.menu_auction`).

:func:`check_existence` states these arguments for the game at hand and evaluates ``G`` at the
corners of every face and at random points of it, reporting the worst values: a numerical
confirmation of the analytic signs, never a substitute for them.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from cage_games._validation import as_int
from cage_games.game import CommonAgencyGame
from cage_games.result import FrozenRecord, format_record
from cage_games.thresholds import ThresholdSystem

__all__ = ["ExistenceReport", "check_existence"]

#: Faces with more than ``2**_MAX_CORNER_BITS`` corners get random corners instead.
_MAX_CORNER_BITS = 10
#: Relative slack allowed on the numerical sign checks (round-off of a softmax expectation).
_SIGN_RTOL = 1e-9


# -- shared report plumbing (also used by uniqueness and sensitivity) ----------------------------


def render_report(obj: Any, title: str) -> str:
    """Render a report dataclass with a title line: :func:`cage_games.result.format_record`."""
    return format_record(obj, title=title)


def to_jsonable(value: Any) -> Any:
    """Convert report values (arrays, mappings, tuples, numpy scalars) to JSON types."""
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if np.isfinite(v) else repr(v)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if value is None or isinstance(value, str):
        return value
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return repr(value)


def report_to_dict(obj: Any) -> dict[str, Any]:
    """The report's printed fields as a JSON-ready ``dict``."""
    return {f.name: to_jsonable(getattr(obj, f.name)) for f in fields(obj) if f.repr}


def check_game(game: object) -> CommonAgencyGame:
    """Raise ``TypeError`` unless ``game`` is a :class:`CommonAgencyGame`."""
    if not isinstance(game, CommonAgencyGame):
        raise TypeError(f"game must be a cage_games.CommonAgencyGame, got {type(game).__name__}")
    return game


def root_box(system: ThresholdSystem) -> tuple[np.ndarray, np.ndarray]:
    """The box ``[min r_i + 1, max r_i + 1]`` (scaled units) that contains every root."""
    return system.lower + 1.0, system.upper


def face_points(
    lower: np.ndarray,
    upper: np.ndarray,
    i: int,
    value: float,
    n_random: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Points of the face ``x_i = value`` of a box: its corners (or random corners), then uniform.

    Returns an array of shape ``(k, m)``. With more than ``2**10`` corners, ``2**10`` random
    corners are used instead of all of them.
    """
    m = lower.size
    others = [j for j in range(m) if j != i]
    if len(others) <= _MAX_CORNER_BITS:
        bits = np.array(list(itertools.product((0, 1), repeat=len(others))), dtype=bool)
        bits = bits.reshape(2 ** len(others), len(others))
    else:
        bits = rng.random((2**_MAX_CORNER_BITS, len(others))) < 0.5
    corners = np.empty((bits.shape[0], m))
    corners[:, others] = np.where(bits, upper[others], lower[others])
    rand = lower + rng.random((n_random, m)) * (upper - lower)
    points = np.vstack([corners, rand])
    points[:, i] = value
    return points


# -- the report -----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class ExistenceReport(FrozenRecord):
    """What :func:`check_existence` established, by which argument, and what it only sampled.

    Attributes
    ----------
    established : bool
        Whether existence of an equilibrium follows from the stated argument for this game.
    argument : str
        The theorem used (``"Poincaré–Miranda"`` for ``beta > 0``; ``"Bernheim–Whinston"``
        for ``beta = 0``; ``"none"`` when no argument applies).
    message : str
        The conclusion in one sentence.
    reasons : tuple of str
        The hypotheses of the argument and why each holds for this game (analytic).
    beta : float
        The agent's temperature.
    principals : tuple of str
        The principals' names, in the order of the rows below.
    bracket : ndarray, shape (m, 2), or None
        The Poincaré–Miranda box in utility units: ``[min u_i, max u_i + beta]`` per principal
        (over the agent's support); a safe bracket for solvers. ``None`` for ``beta = 0``.
    root_box : ndarray, shape (m, 2), or None
        The smaller box ``[min u_i + beta, max u_i + beta]`` that contains every root.
    lower_face_max : ndarray, shape (m,), or None
        Largest ``G_i`` (utility units) found on the face ``c_i = min u_i``; the theory says
        ``<= -beta``.
    upper_face_min : ndarray, shape (m,), or None
        Smallest ``G_i`` found on the face ``c_i = max u_i + beta``; the theory says ``>= 0``.
    root_face_max : ndarray, shape (m,), or None
        Largest ``G_i`` found on the face ``c_i = min u_i + beta``; the theory says ``<= 0``.
    n_points : int
        Number of face points at which ``G`` was evaluated (all faces together).
    sampled : str
        What the numerical part looked at.
    numerical_ok : bool or None
        Whether every sampled value had the sign the theory predicts (``None``: nothing sampled).
    details : mapping
        Further facts (for ``beta = 0``: the efficient actions, marginal contributions).
    game : CommonAgencyGame
        The game that was checked.
    """

    established: bool
    argument: str
    message: str
    reasons: tuple[str, ...]
    beta: float
    principals: tuple[str, ...]
    bracket: np.ndarray | None
    root_box: np.ndarray | None
    lower_face_max: np.ndarray | None
    upper_face_min: np.ndarray | None
    root_face_max: np.ndarray | None
    n_points: int
    sampled: str
    numerical_ok: bool | None
    details: Mapping[str, Any] = field(default_factory=dict)
    game: CommonAgencyGame | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready ``dict`` (the game is left out)."""
        return report_to_dict(self)

    def __repr__(self) -> str:
        return render_report(self, "ExistenceReport")

    __str__ = __repr__


def _quantal_reasons(game: CommonAgencyGame) -> tuple[str, ...]:
    capped = "with caps, " if game.has_caps else ""
    return (
        "G is continuous on R^m: clip and softmax are continuous, so Poincaré–Miranda applies "
        "to any box on whose faces G has the right signs.",
        f"Lower faces c_i = min_a u_i: {capped}u_i(a) - c_i >= 0 on every action of the "
        "support, so u_i - tau_i - c_i = (u_i - c_i - cap_i)_+ >= 0 and "
        "G_i = -beta - E_pi[u_i - tau_i - c_i] <= -beta < 0, whatever pi, hence whatever the "
        "other thresholds.",
        "Upper faces c_i = max_a u_i + beta: u_i(a) - c_i <= -beta < 0 on every action, so "
        "tau_i = 0 and G_i = c_i - beta - E_pi[u_i] >= max u_i - E_pi[u_i] >= 0, whatever the "
        "others do.",
        "Hence a root of G (an equilibrium in threshold form, design note fact 2) lies in the "
        "box; moreover G_i <= (c_i - min u_i) - beta < 0 below min u_i + beta and G_i > 0 "
        "above max u_i + beta, so every root lies in the root box "
        "[min u_i + beta, max u_i + beta].",
    )


def _menu_auction_report(game: CommonAgencyGame) -> ExistenceReport:
    details: dict[str, Any] = {}
    reasons = [
        "beta = 0: the agent maximises v(a) + sum_i tau_i(a) over a finite support, so its "
        "choice set is finite and non-empty (ties broken in favour of the principals' total).",
        "Bernheim and Whinston (1986, Theorem 2): truthful schedules tau_i = (u_i - U_i)_+ "
        "with payoffs U on the Pareto frontier of the polytope "
        "{U : sum_{i in S} U_i <= W(N) - W(N minus S) for all S} form an equilibrium in which "
        "the agent takes an efficient action argmax v + sum_i u_i; that polytope is non-empty "
        "and bounded above (U_i <= W(N) - W(N minus i)), so its frontier is non-empty.",
    ]
    established = True
    constructed_capped = False
    try:
        from cage_games.menu_auction import solve_menu_auction
    except ImportError:  # pragma: no cover - the module ships with the package
        solve_menu_auction = None
    if solve_menu_auction is not None and game.n_principals <= 12:
        try:
            auction = solve_menu_auction(game, vertices=False)
        except NotImplementedError as exc:
            from cage_games.solvers.quantal_limit import solve_quantal_limit

            limit = solve_quantal_limit(game)
            established = constructed_capped = bool(limit.success)
            reasons.append(f"But the caps bind: {exc}")
            reasons.append(
                "Constructed one instead: the limit of the quantal equilibria, certified by the "
                f"exact beta = 0 best-response oracle (residual {limit.residual:.3g})."
                if limit.success
                else f"The limit of the quantal equilibria was not certified: {limit.message}"
            )
            details = {
                "taken_action": limit.taken_action,
                "capped_equilibrium_payoffs": limit.payoffs,
                "certificate_residual": limit.residual,
            }
        else:
            details = {
                "efficient_actions": auction.efficient_actions,
                "welfare": auction.welfare,
                "marginal_contributions": auction.marginal_contributions,
                "truthful_equilibrium_payoffs": auction.payoffs,
                "certificate_residual": auction.residual,
            }
            reasons.append(
                "Constructed one: cage_games.menu_auction.solve_menu_auction found a truthful "
                f"equilibrium with certificate residual {auction.residual:.3g} (largest gain "
                "from any principal's best deviation)."
            )
            established = established and bool(auction.success)
    elif game.has_caps:
        established = False
        reasons.append(
            "But the game has caps: the Bernheim-Whinston characterisation assumes unbounded "
            "schedules, so it does not apply as is."
        )
    if constructed_capped:
        message = (
            "An equilibrium exists: a capped truthful equilibrium was constructed and certified "
            "by the exact beta = 0 best-response oracle."
        )
    elif established:
        message = (
            "An equilibrium exists: a truthful equilibrium of the menu auction (Bernheim-Whinston)."
        )
    else:
        message = (
            "Existence is not established: the menu-auction argument does not cover this game."
        )
    return ExistenceReport(
        established=established,
        argument=(
            "constructed (certified)"
            if constructed_capped
            else "Bernheim–Whinston"
            if established
            else "none"
        ),
        message=message,
        reasons=tuple(reasons),
        beta=0.0,
        principals=game.names,
        bracket=None,
        root_box=None,
        lower_face_max=None,
        upper_face_min=None,
        root_face_max=None,
        n_points=0,
        sampled="nothing (beta = 0: no threshold system to evaluate)",
        numerical_ok=None,
        details=details,
        game=game,
    )


def check_existence(
    game: CommonAgencyGame, *, n_samples: int = 64, seed: int | None = 0
) -> ExistenceReport:
    """Check the hypotheses of the existence argument for ``game`` and report them.

    For ``beta > 0``: the Poincaré–Miranda sign conditions of the threshold system on the box
    ``c_i in [min_a u_i, max_a u_i + beta]`` (Miranda, 1940). They are proved in general
    (``reasons`` states why, caps included); the check also evaluates ``G`` at every corner of
    every face (random corners beyond ``2**10``) and at ``n_samples`` uniform points of each
    face, and reports the worst values. For ``beta = 0``: the Bernheim and Whinston (1986)
    argument for menu auctions, with a constructed truthful equilibrium when
    :mod:`cage_games.menu_auction` can build one.

    Parameters
    ----------
    game : CommonAgencyGame
        The game.
    n_samples : int
        Random points per face (besides its corners), ``>= 0``.
    seed : int or None
        Seed of the random face points.

    Returns
    -------
    ExistenceReport
        ``established``, the argument and its reasons, the bracket, the worst sampled values
        of ``G`` on each face, and whether they all had the predicted sign.

    Examples
    --------
    >>> import cage_games as cg
    >>> from cage_games.existence import check_existence
    >>> game = cg.CommonAgencyGame(cg.Agent([0.0, 0.0], beta=1.0),
    ...                            [cg.Principal([0.0, 2.0]), cg.Principal([1.0, 0.0])])
    >>> rep = check_existence(game)
    >>> rep.established, rep.argument, bool(rep.numerical_ok)
    (True, 'Poincaré–Miranda', True)
    >>> rep.bracket.tolist()
    [[0.0, 3.0], [0.0, 2.0]]
    """
    game = check_game(game)
    n_samples = as_int(n_samples, "n_samples", minimum=0)
    if game.beta == 0:
        return _menu_auction_report(game)
    rng = np.random.default_rng(seed)
    system = ThresholdSystem(game)
    beta = system.beta
    lo, hi = system.lower, system.upper
    rlo, rhi = root_box(system)
    m = game.n_principals
    lower_max = np.full(m, -np.inf)
    upper_min = np.full(m, np.inf)
    root_max = np.full(m, -np.inf)
    count = 0
    for i in range(m):
        faces = ((lo[i], lower_max, max), (hi[i], upper_min, min), (rlo[i], root_max, max))
        for value, sink, pick in faces:
            pts = face_points(lo, hi, i, value, n_samples, rng)
            vals = np.array([system.evaluate(p, jacobian=False).G[i] for p in pts])
            sink[i] = pick(sink[i], float(vals.max() if pick is max else vals.min()))
            count += len(pts)
    slack = _SIGN_RTOL * (1.0 + np.abs(system.r).max())
    ok = bool(
        np.all(lower_max <= -1.0 + slack)
        and np.all(upper_min >= -slack)
        and np.all(root_max <= slack)
    )
    corners = "all" if m - 1 <= _MAX_CORNER_BITS else f"{2**_MAX_CORNER_BITS} random"
    message = (
        "An equilibrium exists (Poincaré–Miranda): the sign conditions hold on every face of "
        "the bracket, analytically"
        + (
            " and at every sampled point."
            if ok
            else "; BUT a sampled value has the wrong sign "
            "(a numerical defect in evaluating G: please report it)."
        )
    )
    return ExistenceReport(
        established=True,
        argument="Poincaré–Miranda",
        message=message,
        reasons=_quantal_reasons(game),
        beta=beta,
        principals=game.names,
        bracket=beta * np.column_stack([lo, hi]),
        root_box=beta * np.column_stack([rlo, rhi]),
        lower_face_max=beta * lower_max,
        upper_face_min=beta * upper_min,
        root_face_max=beta * root_max,
        n_points=count,
        sampled=(
            f"G at {corners} corners and {n_samples} uniform points of each of the {3 * m} faces "
            "(lower, upper and root-box lower face of every principal); others' thresholds "
            "range over the bracket"
        ),
        numerical_ok=ok,
        details={},
        game=game,
    )
