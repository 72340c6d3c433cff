"""Capped menu auctions (``beta = 0`` with binding caps) as the limit of quantal equilibria.

Bernheim and Whinston's characterisation assumes unbounded schedules; with a cap (a
contribution limit) a principal may be unable to outbid, and a truthful equilibrium may not
exist at all. For every ``beta > 0`` an equilibrium exists (Poincaré–Miranda, design note fact
3, caps included), so this method follows the quantal equilibria down to ``beta -> 0`` and
turns the limit into an exact ``beta = 0`` answer, then *certifies* it with the exact
best-response oracle :func:`cage_games.beta0_certificate`.

Algorithm (:func:`solve_quantal_limit`):

1. Solve the quantal game (``v`` fixed) at ``beta = s * 10^-1, ..., s * 10^-6`` (``s`` the
   game's utility scale), each warm-started from the previous thresholds (Newton, with its
   own temperature continuation as fall-back). Keep the last thresholds ``c`` and the
   policy's mode ``a°``.
2. *Polish.* At ``beta = 0`` the capped truthful schedules
   ``tau_i = clip(u_i - c_i, 0, cap_i)`` are piecewise affine in ``c``. Freeze the pieces
   at the limit (which actions each principal pays nothing, a part or its cap on), the
   action ``a'_i`` the agent would take if ``i`` paid nothing, and which deviations each
   principal can afford; the equilibrium conditions (the agent takes ``a°``; no principal
   gains by inducing an affordable action at the least cost) are then linear in ``c``. A
   linear program finds the feasible ``c`` nearest to the limit (L1); the pieces are
   re-read at its answer and the program re-solved, at most three times.
3. If the polished point is not certified, run exact ``beta = 0`` best-response sweeps in
   capped truthful form from it and from the raw limit (each principal in turn replaces its
   threshold by ``u_i(a) - k``, ``a`` its best deviation's target and ``k`` its least cost,
   when that gains more than the tolerance), at most 100 sweeps.
4. *Certify* the first candidate that passes (or report the best one) with the exact oracle:
   ``success`` when the agent's shortfall and every principal's deviation gain are below
   ``tol`` times the scale.
5. Otherwise, say so: no capped truthful equilibrium was found, and the result is the limit
   of the quantal equilibria (the policy at the smallest ``beta``, possibly mixed), with the
   oracle's gains reported; ``success`` is false and ``status`` 4.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog

from cage_games._validation import as_scalar
from cage_games.game import Agent, CommonAgencyGame
from cage_games.menu_auction import (
    MenuAuctionResult,
    beta0_certificate,
    coalition_bounds,
)
from cage_games.solvers.newton import solve_newton
from cage_games.thresholds import ThresholdSystem

__all__ = ["solve_quantal_limit"]

_BETAS = 10.0 ** -np.arange(1, 7)


def _capped_truthful(u: np.ndarray, c: np.ndarray, caps: np.ndarray) -> np.ndarray:
    return np.clip(u - c[:, None], 0.0, caps[:, None])


def _polish(
    game: CommonAgencyGame, c0: np.ndarray, action: int, scale: float, atol: float
) -> np.ndarray | None:
    """Nearest thresholds to ``c0`` satisfying the frozen-piece equilibrium conditions."""
    support = game.agent.support
    idx = np.flatnonzero(support)
    u = game.utilities[:, idx]
    v = game.agent.utility[idx]
    caps = game.caps
    m, n = u.shape
    a0 = int(np.flatnonzero(idx == action)[0])
    c = c0.copy()
    for _ in range(3):
        r = u - c[:, None]
        zero = r <= 0
        capped = (r >= caps[:, None]) & ~zero
        linear = ~zero & ~capped
        # tau_ia = const_ia + slope_ia * c_i (slope -1 on the linear piece); z = Zk + Zg @ c.
        const = np.where(linear, u, np.where(capped, caps[:, None], 0.0))
        slope = np.where(linear, -1.0, 0.0)
        lo = np.full(m, -np.inf)
        hi = np.full(m, np.inf)
        for i in range(m):
            if zero[i].any():
                lo[i] = max(lo[i], u[i, zero[i]].max())
            if linear[i].any():
                lo[i] = max(lo[i], (u[i, linear[i]] - caps[i]).max())
                hi[i] = min(hi[i], u[i, linear[i]].min())
            if capped[i].any():
                hi[i] = min(hi[i], (u[i, capped[i]] - caps[i]).min())
        if np.any(lo > hi + 1e-12 * scale):
            return None
        Zg = slope.T  # (n, m)
        Zk = v + const.sum(axis=0)
        others = np.arange(n) != a0
        rows = [Zg[others] - Zg[a0]]  # the agent takes a0
        rhs = [Zk[a0] - Zk[others]]
        for i in range(m):
            Gi = Zg.copy()
            Gi[:, i] = 0.0
            Ki = Zk - const[i]
            z_oth = Ki + Gi @ c
            alt = int(np.argmax(z_oth))
            keep = np.arange(n) != alt
            rows.append(Gi[keep] - Gi[alt])  # alt stays the agent's choice without i
            rhs.append(Ki[alt] - Ki[keep])
            dG = Gi[alt] - Gi  # cost(a) = dK + dG @ c
            dK = Ki[alt] - Ki
            gU = np.zeros(m)
            gU[i] = -slope[i, a0]
            kU = u[i, a0] - const[i, a0]
            cost = z_oth[alt] - z_oth
            reach = cost < caps[i] - atol if np.isfinite(caps[i]) else np.ones(n, dtype=bool)
            if np.isfinite(caps[i]):
                rows.append(dG[reach])  # cost(a) <= cap_i
                rhs.append(caps[i] - dK[reach])
                rows.append(-dG[~reach])  # cost(a) >= cap_i
                rhs.append(dK[~reach] - caps[i])
            rows.append(-dG[reach] - gU)  # u_ia - cost(a) <= U_i(c)
            rhs.append(kU - u[i, reach] + dK[reach])
        A = np.vstack(rows)
        b = np.concatenate(rhs)
        # minimise sum e, e >= |c - c0|
        A_full = np.vstack(
            [
                np.hstack([A, np.zeros((A.shape[0], m))]),
                np.hstack([np.eye(m), -np.eye(m)]),
                np.hstack([-np.eye(m), -np.eye(m)]),
            ]
        )
        b_full = np.concatenate([b, c0, -c0])
        bounds = [
            (lo[i] if np.isfinite(lo[i]) else None, hi[i] if np.isfinite(hi[i]) else None)
            for i in range(m)
        ] + [(0, None)] * m
        res = linprog(
            np.r_[np.zeros(m), np.ones(m)],
            A_ub=A_full,
            b_ub=b_full,
            bounds=bounds,
            method="highs",
            options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10},
        )
        if res.status != 0:
            return None
        c_new = res.x[:m]
        if np.allclose(c_new, c, rtol=0, atol=1e-13 * scale):
            return c_new
        c = c_new
    return c


def _best_response_sweeps(
    game: CommonAgencyGame, c: np.ndarray, action: int, atol: float, sweeps: int = 100
) -> tuple[np.ndarray, int]:
    """Exact ``beta = 0`` best responses in capped truthful form, principal by principal.

    Principal ``i``'s best deviation (the oracle's ``argmax``: induce ``a`` at the least cost
    ``k``) is also reached by the capped truthful schedule with ``c_i = u_i(a) - k``; the
    agent, indifferent, takes ``a`` (its tie-breaking is part of the equilibrium). A principal
    moves only if that gains more than ``atol``; the sweep stops when nobody moves.
    """
    support = game.agent.support
    v = np.where(support, game.agent.utility, -np.inf)
    u = game.utilities
    caps = game.caps
    c = c.copy()
    for _ in range(sweeps):
        moved = False
        for i in range(c.size):
            tau = np.where(support[None, :], _capped_truthful(u, c, caps), 0.0)
            z_oth = v + tau.sum(axis=0) - tau[i]
            cost = np.max(z_oth) - z_oth
            reach = cost < caps[i] - atol if np.isfinite(caps[i]) else np.isfinite(cost)
            value = np.where(support & (reach | (cost == 0)), u[i] - cost, -np.inf)
            br = int(np.argmax(value))
            if value[br] > u[i, action] - tau[i, action] + atol:
                c[i] = u[i, br] - cost[br]
                action = br
                moved = True
        if not moved:
            break
    return c, action


def solve_quantal_limit(
    game: CommonAgencyGame,
    *,
    tol: float = 1e-9,
    betas: np.ndarray | None = None,
) -> MenuAuctionResult:
    """``beta = 0`` equilibrium with caps: limit of quantal equilibria, certified exactly.

    Parameters
    ----------
    game : CommonAgencyGame
        The game; its ``beta`` is ignored (the answer is for ``beta = 0``).
    tol : float
        Relative tolerance (times the scale ``max(1, max |v|, max |u|)``) of the
        certificate: the agent's shortfall at the action taken and every principal's gain
        from its best deviation (:func:`cage_games.beta0_certificate`).
    betas : array_like, optional
        Temperatures of the quantal path, relative to the scale (default ``1e-1 .. 1e-6``).

    Returns
    -------
    MenuAuctionResult
        ``method="quantal-limit"``. On success (``status`` 0) a capped truthful equilibrium:
        ``policy`` one-hot on the action taken (``taken_action``; it need not be the efficient
        one when a cap binds), ``transfers = clip(u_i - c_i, 0, cap_i)``, ``nash_gaps`` the
        oracle's deviation gains (all below ``tol`` times the scale). Otherwise ``status`` 4:
        no capped truthful equilibrium was found; the fields hold the limit of the quantal
        equilibria (the policy at the smallest temperature, possibly mixed) and the message
        says which principal gains how much by deviating from it.

    Examples
    --------
    A contribution limit: principal 0 values action 0 at 3 but may give at most 1; principal 1
    values action 1 at 2. Principal 1 wins paying 1 (all principal 0 can offer):

    >>> import cage_games as cg
    >>> game = cg.CommonAgencyGame(cg.Agent([0.0, 0.0], beta=0.0),
    ...     [cg.Principal([3.0, 0.0], cap=1.0), cg.Principal([0.0, 2.0])])
    >>> res = cg.solve(game)
    >>> res.method, bool(res.success), res.taken_action, res.payoffs.round(9).tolist()
    ('quantal-limit', True, 1, [0.0, 1.0])
    """
    if not isinstance(game, CommonAgencyGame):
        raise TypeError(f"game must be a cage_games.CommonAgencyGame, got {type(game).__name__}")
    tol = as_scalar(tol, "tol", minimum=0.0, strict=True)
    rel = _BETAS if betas is None else np.sort(np.asarray(betas, dtype=float))[::-1]
    if rel.ndim != 1 or rel.size == 0 or np.any(rel <= 0) or not np.all(np.isfinite(rel)):
        raise ValueError("betas must be a non-empty 1-D array of positive temperatures")
    support = game.agent.support
    v = game.agent.utility
    u = game.utilities
    caps = game.caps
    m, n = u.shape
    scale = max(1.0, float(np.max(np.abs(v[support]))), float(np.max(np.abs(u[:, support]))))
    atol = tol * scale

    x0 = None
    path_residuals = []
    path = []
    last = None
    nit = nfev = 0
    for b in rel * scale:
        g = CommonAgencyGame(Agent(v, float(b), support), game.principals)
        last = solve_newton(ThresholdSystem(g), tol=1e-10, max_iter=200, x0=x0)
        nit += last.nit
        nfev += last.nfev
        path_residuals.append(float(last.residual))
        path.append((float(b), last))
        x0 = last.thresholds
    assert last is not None
    c_lim = last.thresholds - float(rel[-1] * scale)  # c_i - beta -> U_i: the beta = 0 threshold
    a_mode = int(np.argmax(last.policy))

    def candidates():
        # The polished limit from the last three temperatures and the three likeliest
        # actions, then the raw limit, then best-response sweeps from it.
        for b, q in path[::-1][:3]:
            for a in np.argsort(-q.policy)[:3].tolist():
                if q.policy[a] > 1e-6:
                    c_pol = _polish(game, q.thresholds - b, int(a), scale, atol)
                    if c_pol is not None:
                        yield f"polished (beta={b:.2g}, action {a})", c_pol, int(a)
        yield "limit", c_lim, a_mode
        c_br, a_br = _best_response_sweeps(game, c_lim, a_mode, atol)
        yield "limit + best responses", c_br, a_br

    chosen = None
    for label, c, a in candidates():
        tau = np.where(support[None, :], _capped_truthful(u, c, caps), 0.0)
        cert = beta0_certificate(game, tau, a, cap_tol=atol)
        if chosen is None or cert.residual < chosen[2].residual:
            chosen = (label, c, cert, tau)
        if cert.residual <= atol:
            break
    label, c, cert, tau = chosen
    a_mode = cert.action
    success = cert.residual <= atol
    total = np.where(support, v + u.sum(axis=0), -np.inf)
    efficient = tuple(int(a) for a in np.flatnonzero(total >= total.max() - atol))
    a_eff = int(np.argmax(total))
    bounds = coalition_bounds(game) if m <= 12 else {}
    if success:
        policy = np.zeros(n)
        policy[a_mode] = 1.0
        worst = int(np.argmax(cert.gaps))
        message = (
            f"Capped truthful equilibrium (certified): the agent takes action {a_mode}"
            + (" (efficient)" if a_mode in efficient else f", not the efficient {a_eff}")
            + f"; the exact beta = 0 oracle finds no deviation gaining more than "
            f"{cert.gaps[worst]:.2g} and an agent shortfall of {cert.agent_shortfall:.2g}."
        )
        status = 0
    else:
        policy = last.policy.copy()
        worst = int(np.argmax(cert.gaps))
        message = (
            "No capped truthful equilibrium found: no candidate (the limit of the quantal "
            "equilibria, polished from the last three temperatures and likeliest actions, or "
            "improved by exact best responses) is an equilibrium at beta = 0 (principal "
            f"{game.names[worst]!r} gains {cert.gaps[worst]:.3g} by inducing action "
            f"{cert.best_deviations[worst]}; agent shortfall {cert.agent_shortfall:.3g}). "
            f"Returned instead: the quantal equilibrium at beta = {rel[-1] * scale:.3g} "
            f"(policy mass {last.policy[a_mode]:.4f} on action {a_mode}) with the beta = 0 "
            "truthful schedules of its thresholds. Caps can leave a menu auction without a "
            "pure equilibrium (docs/menu_auction.rst, 'Caps')."
        )
        status = 4
    payoffs = (u - tau) @ policy
    return MenuAuctionResult(
        message=message,
        success=bool(success),
        status=status,
        method="quantal-limit",
        residual=float(cert.residual),
        nit=int(nit),
        nfev=int(nfev),
        policy=policy,
        transfers=tau,
        thresholds=c,
        payoffs=payoffs,
        agent_payoff=float(policy @ np.where(support, v + tau.sum(axis=0), 0.0)),
        params={"tol": tol, "betas": tuple(float(x) for x in rel * scale), "candidate": label},
        history=tuple(path_residuals),
        game=game,
        efficient_action=a_eff,
        efficient_actions=efficient,
        welfare=float(total.max()),
        payoffs_unique=False,
        selection="quantal limit",
        nash_gaps=cert.gaps,
        marginal_contributions=None,
        coalition_bounds=bounds,
        frontier_vertices=None,
        taken_action=a_mode,
    )
