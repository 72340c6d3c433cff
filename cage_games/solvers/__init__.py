"""``solve``: one front door to the equilibrium solvers.

========================  ==================================================================
method                    what it does
========================  ==================================================================
``"newton"``              safeguarded Newton on the threshold system (fast path)
``"gauss-seidel"``        bracketed 1-D threshold root per principal, sweeping
``"diagonalization"``     generic EPEC route: Gauss-Seidel over principals, each solving its
                          convex best-response program with cvxpy (the reference; slow)
``"auto"``                ``"newton"``, falling back to Gauss-Seidel if Newton fails; for
                          ``beta = 0``, ``"menu-auction"``
``"menu-auction"``        ``beta = 0``: truthful equilibria of the Bernheim-Whinston menu
                          auction (:func:`cage_games.solve_menu_auction`)
========================  ==================================================================
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cage_games._validation import as_int, as_scalar, check_scale
from cage_games.game import CommonAgencyGame
from cage_games.result import EquilibriumResult
from cage_games.solvers.gauss_seidel import solve_gauss_seidel
from cage_games.solvers.newton import solve_newton
from cage_games.thresholds import ThresholdSystem

__all__ = ["METHODS", "solve"]

METHODS = ("auto", "newton", "gauss-seidel", "diagonalization", "menu-auction")
_DEFAULT_MAX_ITER = {"newton": 200, "gauss-seidel": 5000, "diagonalization": 200}


def solve(
    game: CommonAgencyGame,
    method: str = "auto",
    *,
    tol: float | None = None,
    max_iter: int | None = None,
    x0: np.ndarray | None = None,
) -> EquilibriumResult:
    """Compute an equilibrium of a common-agency game.

    Parameters
    ----------
    game : CommonAgencyGame
        The game. ``beta = 0`` (a deterministic agent) is a menu auction, solved by
        :func:`cage_games.solve_menu_auction` with its default selection rule.
    method : {"auto", "newton", "gauss-seidel", "diagonalization", "menu-auction"}
        The algorithm (see the module docstring). ``"auto"`` runs Newton and falls back to
        Gauss-Seidel from Newton's last point if Newton does not converge.
    tol : float, optional
        Tolerance on the residual ``max_i |G_i(c)| / beta``. Default ``1e-10`` for the
        threshold solvers; for ``"diagonalization"`` it bounds the change of the policy
        between sweeps (default ``1e-8``, the accuracy of the conic solver).
    max_iter : int, optional
        Iteration limit (Newton steps, Gauss-Seidel or diagonalization sweeps); defaults 200,
        5000 and 200.
    x0 : array_like, shape (m,), optional
        Starting thresholds in utility units (default: every principal inactive).

    Returns
    -------
    EquilibriumResult
        Policy, transfers, thresholds, payoffs and the residual; ``success`` says whether the
        residual met ``tol``. Check it independently with :func:`cage_games.nash_gap`.

    Raises
    ------
    ValueError
        Bad arguments, or utilities / beta beyond ``1e150`` (float64 overflow; rescale).
    NotImplementedError
        For ``beta = 0`` with a threshold method (those need ``beta > 0``).

    Examples
    --------
    >>> import cage_games as cg
    >>> game = cg.CommonAgencyGame(cg.Agent([0.0, 0.0], beta=1.0),
    ...                            [cg.Principal([0.0, 2.0], name="p")])
    >>> res = cg.solve(game)
    >>> res.success, res.method
    (True, 'newton')
    """
    if not isinstance(game, CommonAgencyGame):
        raise TypeError(f"game must be a cage_games.CommonAgencyGame, got {type(game).__name__}")
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "menu-auction" and game.beta > 0:
        raise ValueError("method='menu-auction' is for beta = 0 games; this game has beta > 0")
    if game.beta == 0:
        if method not in ("auto", "menu-auction"):
            raise NotImplementedError(
                f"method {method!r} needs beta > 0; beta = 0 is a menu auction: use "
                "method='auto' (or call cage_games.solve_menu_auction for its options)"
            )
        from cage_games.menu_auction import solve_menu_auction

        return solve_menu_auction(game)  # type: ignore[return-value]
    check_scale(game)
    name = "newton" if method == "auto" else method
    if tol is None:
        tol = 1e-8 if name == "diagonalization" else 1e-10
    tol = as_scalar(tol, "tol", minimum=0.0, strict=True)
    max_iter = as_int(
        _DEFAULT_MAX_ITER[name] if max_iter is None else max_iter, "max_iter", minimum=1
    )
    if name == "diagonalization":
        from cage_games.solvers.diagonalization import solve_diagonalization

        return solve_diagonalization(game, tol=tol, max_iter=max_iter, x0=x0)
    system = ThresholdSystem(game)
    solver = solve_newton if name == "newton" else solve_gauss_seidel
    res = solver(system, tol=tol, max_iter=max_iter, x0=x0)
    if method == "auto" and not res.success:
        fallback = solve_gauss_seidel(
            system, tol=tol, max_iter=_DEFAULT_MAX_ITER["gauss-seidel"], x0=res.thresholds
        )
        better = fallback if fallback.residual < res.residual else res
        res = dataclasses.replace(
            better,
            method="newton>gauss-seidel",
            nit=res.nit + fallback.nit,
            nfev=res.nfev + fallback.nfev,
            history=res.history + fallback.history,
        )
    return res
