"""``solve``: one front door to the equilibrium methods, chosen from one registry.

========================  ==================================================================
method                    what it does
========================  ==================================================================
``"newton"``              safeguarded Newton on the threshold system (fast path)
``"gauss-seidel"``        bracketed 1-D threshold root per principal, sweeping
``"diagonalization"``     generic EPEC route: Gauss-Seidel over principals, each solving its
                          convex best-response program with cvxpy (the reference; slow)
``"menu-auction"``        ``beta = 0``: truthful equilibria of the Bernheim-Whinston menu
                          auction (:func:`cage_games.solve_menu_auction`)
``"quantal-limit"``       ``beta = 0`` with binding caps: the limit of quantal equilibria,
                          certified by the exact ``beta = 0`` best-response oracle
                          (:func:`cage_games.solvers.quantal_limit.solve_quantal_limit`)
``"auto"``                ``beta > 0``: ``"newton"``, falling back to Gauss-Seidel if Newton
                          fails; ``beta = 0``: ``"menu-auction"``, or ``"quantal-limit"`` when
                          a cap binds
========================  ==================================================================

As with :func:`scipy.optimize.root`, ``method`` is a name or a callable
``method(game, **options) -> EquilibriumResult``, and ``options`` a dict of the method's
parameters. New methods can be registered with
:func:`cage_games.solvers.registry.register_method`. A game on a
:class:`~cage_games.ContinuousActions` box is solved on a sequence of refined grids
(:func:`cage_games.solvers.continuous.solve_refined`), with the chosen method on each.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from cage_games._validation import as_int, as_scalar, check_scale
from cage_games.actions import ContinuousActions
from cage_games.game import CommonAgencyGame
from cage_games.menu_auction import solve_menu_auction
from cage_games.result import EquilibriumResult
from cage_games.solvers.continuous import REFINE_OPTIONS, solve_refined
from cage_games.solvers.diagonalization import solve_diagonalization
from cage_games.solvers.gauss_seidel import solve_gauss_seidel
from cage_games.solvers.newton import solve_newton
from cage_games.solvers.quantal_limit import solve_quantal_limit
from cage_games.solvers.registry import available_methods, get_method, register_method
from cage_games.thresholds import ThresholdSystem

__all__ = ["METHODS", "available_methods", "register_method", "solve"]


def _threshold_method(
    kernel: Callable[..., EquilibriumResult], name: str, max_iter_default: int
) -> Callable[..., Any]:
    def run(
        game: CommonAgencyGame,
        *,
        tol: float = 1e-10,
        max_iter: int = max_iter_default,
        x0: np.ndarray | None = None,
    ) -> EquilibriumResult:
        tol = as_scalar(tol, "tol", minimum=0.0, strict=True)
        max_iter = as_int(max_iter, "max_iter", minimum=1)
        return kernel(ThresholdSystem(game), tol=tol, max_iter=max_iter, x0=x0)

    run.__name__ = f"solve_{name.replace('-', '_')}"
    run.__doc__ = f"Registry entry {name!r}: the threshold-system solver on ``game``."
    return run


def _diagonalization(
    game: CommonAgencyGame, *, tol: float = 1e-8, max_iter: int = 200, x0: np.ndarray | None = None
) -> EquilibriumResult:
    tol = as_scalar(tol, "tol", minimum=0.0, strict=True)
    max_iter = as_int(max_iter, "max_iter", minimum=1)
    return solve_diagonalization(game, tol=tol, max_iter=max_iter, x0=x0)


register_method(
    "newton",
    _threshold_method(solve_newton, "newton", 2000),
    defaults={"tol": 1e-10, "max_iter": 2000},
    summary="safeguarded Newton on the threshold system",
)
register_method(
    "gauss-seidel",
    _threshold_method(solve_gauss_seidel, "gauss-seidel", 5000),
    defaults={"tol": 1e-10, "max_iter": 5000},
    summary="bracketed 1-D threshold roots, sweeping",
)
register_method(
    "diagonalization",
    _diagonalization,
    defaults={"tol": 1e-8, "max_iter": 200},
    summary="best-response sweeps with convex programs (cvxpy)",
)
register_method(
    "menu-auction",
    solve_menu_auction,
    beta_positive=False,
    beta_zero=True,
    defaults={"selection": "equal-sacrifice", "tol": 1e-9},
    summary="truthful equilibrium of the menu auction (beta = 0)",
)
register_method(
    "quantal-limit",
    solve_quantal_limit,
    beta_positive=False,
    beta_zero=True,
    capped_beta_zero=True,
    summary="beta = 0 with caps: limit of quantal equilibria, certified",
)

#: Names accepted by ``solve(game, method=...)`` (the built-in registry, ``"auto"`` first).
METHODS = available_methods()


def _call(func: Callable[..., Any], game: CommonAgencyGame, options: Mapping[str, Any], name: str):
    try:
        res = func(game, **options)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise TypeError(
                f"method {name!r} does not take option(s) {sorted(options)}: {exc}"
            ) from None
        raise
    if not isinstance(res, EquilibriumResult):
        raise TypeError(
            f"method {name!r} returned {type(res).__name__}; a method must return an "
            "EquilibriumResult (or a subclass)"
        )
    return res


def _solve_discrete(
    game: CommonAgencyGame, method: str | Callable[..., Any], options: dict[str, Any]
) -> EquilibriumResult:
    check_scale(game)  # utilities / beta beyond float64's range: a clear ValueError
    if callable(method):
        return _call(method, game, options, getattr(method, "__name__", "callable"))
    if method != "auto":
        entry = get_method(method)
        if game.beta > 0 and not entry.beta_positive:
            raise ValueError(
                f"method={method!r} is for beta = 0 games; this game has beta = {game.beta:g}"
            )
        if game.beta == 0 and not entry.beta_zero:
            raise NotImplementedError(
                f"method {method!r} needs beta > 0; beta = 0 is a menu auction: use "
                "method='auto', 'menu-auction' or (with binding caps) 'quantal-limit'"
            )
        return _call(entry.func, game, options, method)
    if game.beta == 0:
        # The threshold solvers' iteration options do not apply to the (finite) menu auction.
        options = {k: v for k, v in options.items() if k not in ("max_iter", "x0")}
        entry = get_method("menu-auction")
        if game.has_caps:
            try:
                return _call(entry.func, game, options, "menu-auction")
            except NotImplementedError:
                limit_opts = {k: v for k, v in options.items() if k in ("tol",)}
                return _call(get_method("quantal-limit").func, game, limit_opts, "quantal-limit")
        return _call(entry.func, game, options, "menu-auction")
    res = _call(get_method("newton").func, game, options, "newton")
    if res.success:
        return res
    fallback_opts = {k: v for k, v in options.items() if k != "max_iter"}
    fallback_opts["x0"] = res.thresholds
    fallback = _call(get_method("gauss-seidel").func, game, fallback_opts, "gauss-seidel")
    better = fallback if fallback.residual < res.residual else res
    return dataclasses.replace(
        better,
        method="newton>gauss-seidel",
        nit=res.nit + fallback.nit,
        nfev=res.nfev + fallback.nfev,
        history=res.history + fallback.history,
    )


def solve(
    game: CommonAgencyGame,
    method: str | Callable[..., EquilibriumResult] = "auto",
    options: Mapping[str, Any] | None = None,
    *,
    tol: float | None = None,
    max_iter: int | None = None,
    x0: np.ndarray | None = None,
) -> EquilibriumResult:
    """Compute an equilibrium of a common-agency game.

    Parameters
    ----------
    game : CommonAgencyGame
        The game. ``beta = 0`` (a deterministic agent) is a menu auction. A game on a
        :class:`~cage_games.ContinuousActions` box is solved on adaptively refined grids.
    method : str or callable
        A registered name (see the module docstring and :data:`METHODS`) or a callable
        ``method(game, **options) -> EquilibriumResult``. ``"auto"`` picks Newton (with a
        Gauss-Seidel fall-back) for ``beta > 0`` and the menu auction for ``beta = 0``
        (the quantal limit when a cap binds there).
    options : dict, optional
        The method's parameters, e.g. ``{"tol": 1e-12, "max_iter": 50}`` for Newton or
        ``{"selection": "max-sum"}`` for the menu auction. On a continuous box also
        ``refine_tol`` (default 1e-6), ``max_refinements`` (12) and ``max_actions``
        (200 000): see :func:`cage_games.solvers.continuous.solve_refined`.
    tol, max_iter, x0 : optional
        Shorthands for ``options["tol"]``, ``options["max_iter"]``, ``options["x0"]`` (kept
        for compatibility). ``tol`` is the tolerance on the residual ``max_i |G_i(c)| / beta``
        (default ``1e-10``; for ``"diagonalization"`` the policy change between sweeps,
        default ``1e-8``); ``x0`` starting thresholds in utility units.

    Returns
    -------
    EquilibriumResult
        One record type for every method (:class:`~cage_games.MenuAuctionResult` is a
        subclass with the auction's description). Policy, transfers, thresholds, payoffs,
        the residual; ``success`` says whether it met the tolerance. Check it independently
        with :func:`cage_games.nash_gap` (``beta > 0``).

    Raises
    ------
    NotImplementedError
        For ``beta = 0`` with a method that needs ``beta > 0``.

    Examples
    --------
    >>> import cage_games as cg
    >>> game = cg.CommonAgencyGame(cg.Agent([0.0, 0.0], beta=1.0),
    ...                            [cg.Principal([0.0, 2.0], name="p")])
    >>> res = cg.solve(game)
    >>> res.success, res.method
    (True, 'newton')
    >>> cg.solve(game, method="gauss-seidel", options={"tol": 1e-12}).residual <= 1e-12
    True
    """
    if not isinstance(game, CommonAgencyGame):
        raise TypeError(f"game must be a cage_games.CommonAgencyGame, got {type(game).__name__}")
    if not (callable(method) or isinstance(method, str)):
        raise TypeError(f"method must be a name or a callable, got {type(method).__name__}")
    if isinstance(method, str) and method != "auto":
        get_method(method)  # an unknown name fails here, before any work
    if options is not None and not isinstance(options, Mapping):
        raise TypeError(f"options must be a dict of the method's parameters, got {options!r}")
    opts = dict(options or {})
    for key, value in (("tol", tol), ("max_iter", max_iter), ("x0", x0)):
        if value is not None:
            if key in opts:
                raise ValueError(f"{key} is given both as a keyword and in options")
            opts[key] = value
    if isinstance(game.actions, ContinuousActions):
        refine = {k: opts.pop(k) for k in list(opts) if k in REFINE_OPTIONS}
        return solve_refined(game, lambda g: _solve_discrete(g, method, dict(opts)), **refine)
    unknown_refine = sorted(set(opts) & set(REFINE_OPTIONS))
    if unknown_refine:
        raise ValueError(f"options {unknown_refine} apply only to games on a ContinuousActions box")
    return _solve_discrete(game, method, opts)
