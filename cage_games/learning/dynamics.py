"""Repeated play of a common-agency game by no-regret principals.

Each round ``t = 1..T``: every principal's learner picks a truthful-threshold schedule
``tau_i = clip(u_i - c_i, 0, cap_i)``; the agent responds with its logit policy to the sum of
the schedules; every principal receives its expected net payoff ``E_pi[u_i - tau_i]`` and full
information (the payoff of any threshold against the others' schedules of the round). The run
reports each principal's external regret against the best fixed schedule of its class in
hindsight, the learner's theoretical bound, and how far the time-averaged play is from the
equilibrium computed by :func:`cage_games.solve`.

No-regret play makes the *empirical distribution of joint play* an approximate coarse
correlated equilibrium (Cesa-Bianchi and Lugosi, 2006, chapter 7; Hart and Mas-Colell, 2000),
not a Nash equilibrium in general: closeness of the time averages to the Nash equilibrium is
measured, not promised (it holds with one principal, where the dynamics optimise, and in the
small-stakes games tested; see docs/learning.rst).
"""

from __future__ import annotations

import inspect
import numbers
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

from cage_games._validation import check_scale
from cage_games.game import CommonAgencyGame
from cage_games.learning._kernel import Kernel
from cage_games.learning.base import Learner
from cage_games.learning.gradient_ascent import OnlineGradientAscent
from cage_games.learning.hedge import Hedge
from cage_games.learning.optimistic_hedge import OptimisticHedge
from cage_games.learning.result import LearningResult
from cage_games.thresholds import log_softmax

__all__ = ["LEARNERS", "best_fixed_threshold", "learn"]

#: Learners by name.
LEARNERS: dict[str, type[Learner]] = {
    Hedge.name: Hedge,
    OptimisticHedge.name: OptimisticHedge,
    OnlineGradientAscent.name: OnlineGradientAscent,
}

_ROW_BLOCK = 1 << 20  # elements per vectorised block in the hindsight sums
_LONG_RUN = 10**7  # rounds * m * n from which progress is shown by default


def _resolve_learner(learner: object) -> type[Learner]:
    if isinstance(learner, str):
        key = learner.strip().lower().replace("_", "-")
        if key not in LEARNERS:
            raise ValueError(
                f"unknown learner {learner!r}; known learners: {', '.join(sorted(LEARNERS))}"
            )
        return LEARNERS[key]
    if isinstance(learner, type) and issubclass(learner, Learner):
        return learner
    raise TypeError(
        "learner must be a name (one of "
        f"{', '.join(sorted(LEARNERS))}) or a Learner subclass, got {type(learner).__name__}"
    )


def _check_options(cls: type[Learner], options: dict[str, Any]) -> None:
    sig = inspect.signature(cls.__init__)
    accepted = [p.name for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(
            f"learner {cls.name!r} does not take option(s) {', '.join(unknown)}; "
            f"its options are: {', '.join(accepted) or 'none'}"
        )


def _hindsight_sums_direct(
    kernel: Kernel, i: int, played: np.ndarray, cs: np.ndarray
) -> np.ndarray:
    """``sum_t U_i(c; c_{-i}^t)`` by evaluating the agent's response for every ``(t, c)``.

    Cost ``O(T n)`` per threshold: the right method for a handful of thresholds.
    """
    T, m = played.shape
    n = kernel.n
    rows = max(1, _ROW_BLOCK // max(1, m * n))
    out = np.zeros(cs.size)
    for lo in range(0, T, rows):
        total, t = kernel.logits(played[lo : lo + rows])
        base = total - t[:, i, :]
        cols = max(1, _ROW_BLOCK // max(1, base.shape[0] * n))
        for k in range(0, cs.size, cols):
            block = cs[k : k + cols]
            vals = kernel.payoff(i, base[:, None, :], block[None, :])
            out[k : k + cols] += vals.sum(axis=0)
    return out


def _log_prefix(x: np.ndarray) -> np.ndarray:
    """``out[:, k] = log sum_{j < k} exp(x[:, j])``, shape (B, n + 1), in the log domain."""
    out = np.empty((x.shape[0], x.shape[1] + 1))
    out[:, 0] = -np.inf
    np.logaddexp.accumulate(x, axis=1, out=out[:, 1:])
    return out


def _log_suffix(x: np.ndarray) -> np.ndarray:
    """``out[:, k] = log sum_{j >= k} exp(x[:, j])``, shape (B, n + 1)."""
    return _log_prefix(x[:, ::-1])[:, ::-1]


def _hindsight_sums(kernel: Kernel, i: int, played: np.ndarray, cs: np.ndarray) -> np.ndarray:
    """``sum_t U_i(c; c_{-i}^t)`` for every ``c`` in ``cs`` (utility units), by prefix sums.

    Against fixed opponents' logits ``b`` and in units of ``beta`` (``r = u_i / beta``,
    ``gamma = c / beta``, ``kappa = cap_i / beta``) the threshold schedule splits the actions,
    sorted by ``r``, into three runs: ``Z`` (``r <= gamma``, paid nothing, weight ``e^b``, net
    ``r``), ``A`` (paid ``r - gamma``, weight ``e^{b + r - gamma}``, net ``gamma``) and ``C``
    (``r >= gamma + kappa``, paid the cap, weight ``e^{b + kappa}``, net ``r - kappa``). So
    ``U_i / beta`` is a ratio of prefix and suffix sums of ``e^b``, ``e^b r`` and ``e^{b + r}``
    over the sorted actions, read at the two positions where ``gamma`` and ``gamma + kappa``
    fall: ``O(T n)`` for the sums plus ``O(T K)`` for ``K`` thresholds, instead of the
    ``O(T n K)`` of evaluating each ``(t, c)`` (166 of 249 s of a run at ``n = T = 2000``
    before). Every sum is accumulated in the log domain (no overflow or underflow), and the
    ``A`` mass is a difference of two prefix sums whose rounding error is at most machine
    precision times the agent's total weight (the terms before ``gamma`` weigh at most their
    ``Z`` weight), so each payoff is exact to rounding.
    """
    cs = np.asarray(cs, float)
    if cs.size <= 8:
        return _hindsight_sums_direct(kernel, i, played, cs)
    s = kernel.system
    beta = kernel.beta
    sup = kernel.game.agent.support
    order = np.argsort(s.r[i][sup], kind="stable")
    rs = s.r[i][sup][order]
    kappa = float(s.kappa[i])
    capped = bool(np.isfinite(kappa))
    gam = cs / beta
    idx = np.searchsorted(rs, gam, side="right")  # Z = [0, idx)
    jdx = np.searchsorted(rs, gam + kappa, side="left") if capped else np.full(cs.size, rs.size)
    with np.errstate(divide="ignore"):
        log_pos = np.log(np.maximum(rs, 0.0))
        log_neg = np.log(np.maximum(-rs, 0.0))
    T = played.shape[0]
    rows = max(1, _ROW_BLOCK // max(1, 8 * rs.size))
    out = np.zeros(cs.size)
    for lo in range(0, T, rows):
        total, t = kernel.logits(played[lo : lo + rows])
        b = (total - t[:, i, :])[:, sup][:, order]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            lz_all = _log_prefix(b)
            lz = lz_all[:, idx]
            z_mean = np.exp(_log_prefix(b + log_pos)[:, idx] - lz) - np.exp(
                _log_prefix(b + log_neg)[:, idx] - lz
            )
            la_all = _log_prefix(b + rs)
            hi, lo_a = la_all[:, jdx], la_all[:, idx]
            la = np.where(hi > lo_a, hi + np.log1p(-np.exp(lo_a - hi)), -np.inf) - gam
            parts = [(lz, np.where(np.isfinite(lz), z_mean, 0.0)), (la, gam[None, :])]
            if capped:
                lc0 = _log_suffix(b)[:, jdx]
                c_mean = np.exp(_log_suffix(b + log_pos)[:, jdx] - lc0) - np.exp(
                    _log_suffix(b + log_neg)[:, jdx] - lc0
                )
                parts.append((lc0 + kappa, np.where(np.isfinite(lc0), c_mean - kappa, 0.0)))
            top = np.max([p[0] for p in parts], axis=0)
            num = np.zeros_like(top)
            den = np.zeros_like(top)
            for logw, val in parts:
                w = np.exp(logw - top)
                num += w * val
                den += w
        out += beta * (num / den).sum(axis=0)
    return out


def best_fixed_threshold(
    kernel: Kernel,
    i: int,
    played: np.ndarray,
    grid_sums: np.ndarray | None = None,
    grid: np.ndarray | None = None,
    size: int = 201,
) -> tuple[float, float]:
    """Best fixed threshold in ``[low_i, high_i]`` against the realised opponents' play.

    Maximises ``S(c) = sum_t U_i(c; c_{-i}^t)`` by a dense grid (``size`` points, or the given
    ``grid`` with its already-accumulated sums ``grid_sums``) followed by a bounded Brent search
    on the two grid cells around the best grid point.

    Returns
    -------
    (c, S(c)) : tuple of float
    """
    if grid is None:
        grid = np.linspace(kernel.low[i], kernel.high[i], size)
        grid_sums = _hindsight_sums(kernel, i, played, grid)
    k = int(np.argmax(grid_sums))
    best_c, best_s = float(grid[k]), float(grid_sums[k])
    a, b = grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]
    if b > a:
        res = minimize_scalar(
            lambda x: -_hindsight_sums(kernel, i, played, np.array([x]))[0],
            bounds=(a, b),
            method="bounded",
            options={"xatol": 1e-10 * max(1.0, abs(b - a))},
        )
        if -res.fun > best_s:
            best_c, best_s = float(res.x), float(-res.fun)
    return best_c, best_s


def _equilibrium(game: CommonAgencyGame, equilibrium: object):
    if equilibrium is False:
        return None
    if equilibrium is None:
        from cage_games.solvers import solve

        equilibrium = solve(game)
    pol = getattr(equilibrium, "policy", None)
    thr = getattr(equilibrium, "thresholds", None)
    if pol is None or thr is None:
        raise TypeError(
            "equilibrium must be an EquilibriumResult (with .policy and .thresholds), None to "
            f"compute one with cage_games.solve, or False to skip; got {type(equilibrium).__name__}"
        )
    pol = np.asarray(pol, float)
    thr = np.asarray(thr, float)
    if pol.shape != (game.n_actions,) or thr.shape != (game.n_principals,):
        raise ValueError(
            f"equilibrium has policy shape {pol.shape} and thresholds shape {thr.shape}; this "
            f"game needs ({game.n_actions},) and ({game.n_principals},)"
        )
    return pol, thr


def learn(
    game: CommonAgencyGame,
    learner: str | type[Learner] = "hedge",
    rounds: int = 1000,
    *,
    seed: int | None = None,
    equilibrium: Any = None,
    progress: bool | None = None,
    **options: Any,
) -> LearningResult:
    """Run no-regret learning dynamics between the principals of a game.

    Every principal runs its own copy of ``learner`` over truthful-threshold schedules
    ``tau_i = clip(u_i - c_i, 0, cap_i)`` with ``c_i`` in ``[min u_i, max u_i]`` (over the
    agent's support); each round the agent plays its logit response to the sum of the schedules
    and each principal gets its expected net payoff and full-information feedback.

    Parameters
    ----------
    game : CommonAgencyGame
        The game; ``beta > 0``.
    learner : str or Learner subclass, default "hedge"
        ``"hedge"`` (exponential weights on a threshold grid; Cesa-Bianchi and Lugosi, 2006,
        Thm 2.2), ``"optimistic-hedge"`` (Syrgkanis et al., 2015) or ``"gradient"`` (projected
        online gradient ascent on the threshold; Zinkevich, 2003).
    rounds : int, default 1000
        Number of rounds ``T >= 1``; fixed-horizon step sizes use it.
    seed : int, optional
        Seed of the run (Hedge samples its thresholds). The result records the seed used, so
        a run without one can be reproduced.
    equilibrium : EquilibriumResult or False, optional
        The equilibrium to measure the time averages against; by default
        ``cage_games.solve(game)``; ``False`` skips the distances.
    progress : bool, optional
        Show tqdm progress bars (stderr) for the rounds and the regret accounting after them.
        Default: only on long runs (``rounds * m * n >= 10**7``, several seconds or more).
    **options
        Learner parameters, the same for every principal: ``grid`` and ``step_size`` for the
        Hedge learners; ``step_size``, ``start`` and ``hindsight_grid`` for ``"gradient"``.

    Returns
    -------
    LearningResult
        Regret per principal with its bound, trajectories, time averages and the distance to
        the equilibrium.

    Raises
    ------
    ValueError
        ``rounds < 1``, an unknown learner name (the message lists the known ones), or
        ``beta = 0``.

    Examples
    --------
    >>> import cage_games as cg
    >>> from cage_games.learning import learn
    >>> game = cg.CommonAgencyGame(cg.Agent([0.0, 0.0, 0.0], beta=1.0),
    ...                            [cg.Principal([0.0, 1.0, 2.0])])
    >>> res = learn(game, "hedge", rounds=200, seed=0)
    >>> bool(res.within_bound.all())
    True
    """
    if not isinstance(game, CommonAgencyGame):
        raise TypeError(f"game must be a cage_games.CommonAgencyGame, got {type(game).__name__}")
    if isinstance(rounds, bool) or not isinstance(rounds, (numbers.Integral, np.integer)):
        raise TypeError(f"rounds must be a positive integer, got {type(rounds).__name__}")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1 (the number of rounds of play), got {rounds}")
    rounds = int(rounds)
    cls = _resolve_learner(learner)
    _check_options(cls, options)
    if not game.beta > 0:
        raise ValueError(
            "game.beta is 0: learning dynamics need the agent's logit response, which is "
            "defined for beta > 0 only; give the agent a positive temperature"
        )
    check_scale(game)
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, (numbers.Integral, np.integer)) or seed < 0
    ):
        raise TypeError(f"seed must be a non-negative integer or None, got {seed!r}")

    kernel = Kernel(game)
    m, n, beta = kernel.m, kernel.n, kernel.beta
    seq = np.random.SeedSequence(None if seed is None else int(seed))
    rngs = [np.random.default_rng(s) for s in seq.spawn(m)]
    learners = [
        cls(kernel.low[i], kernel.high[i], beta, rounds, rngs[i], **options) for i in range(m)
    ]
    eq = _equilibrium(game, equilibrium)
    if eq is not None:
        eq_policy, eq_thresholds = eq
        eq_eff = np.clip(eq_thresholds, kernel.low, kernel.high)
        eq_tau = kernel.scaled_transfers(eq_thresholds)  # scaled; compared on the support
        support = game.agent.support

    r = kernel.system.r
    cmp = [L.comparator() for L in learners]
    cum_cmp = [np.zeros(c.size) for c in cmp]
    own = np.zeros(m)  # learner's payoff (expected under its mixed strategy)
    realised = np.zeros(m)
    regret_traj = np.empty((rounds, m))
    played = np.empty((rounds, m))
    sum_pi = np.zeros(n)
    sum_c = np.zeros(m)
    sum_tau = np.zeros((m, n))  # scaled transfers
    dist_traj = np.empty(rounds) if eq is not None else None
    thr_traj = np.empty((rounds, m)) if eq is not None else None
    tau_traj = np.empty((rounds, m)) if eq is not None else None

    if progress is None:
        progress = rounds * m * n >= _LONG_RUN
    iterator: Any = range(rounds)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc=f"learn[{cls.name}]", unit="round")
    for t in iterator:
        mixes = [L.mixed_strategy() for L in learners]
        c = np.array([L.play() for L in learners])
        total, tr = kernel.logits(c)
        pi = np.exp(log_softmax(total))
        for i, L in enumerate(learners):
            fb = kernel.feedback(i, total - tr[i])
            points, probs = mixes[i]
            own[i] += float(probs @ fb.payoff(points))
            realised[i] += beta * float(pi @ (r[i] - tr[i]))
            cum_cmp[i] += fb.payoff(cmp[i])
            L.update(fb)
            regret_traj[t, i] = cum_cmp[i].max() - own[i]
        played[t] = c
        sum_pi += pi
        sum_c += c
        sum_tau += tr
        if eq is not None:
            k = t + 1
            dist_traj[t] = 0.5 * float(np.abs(sum_pi / k - eq_policy).sum())
            thr_traj[t] = np.abs(sum_c / k - eq_eff)
            gap = np.abs(sum_tau[:, support] / k - eq_tau[:, support])
            tau_traj[t] = beta * gap.max(axis=1)

    # hindsight: best fixed schedule of the class, and of the whole interval
    best_fixed = np.empty(m)
    best_class = np.empty(m)
    best_interval = np.empty(m)
    accounting: Any = enumerate(learners)
    if progress:
        accounting = tqdm(accounting, total=m, desc="regret in hindsight", unit="principal")
    for i, L in accounting:
        if L.comparator_is_exact:
            k = int(np.argmax(cum_cmp[i]))
            best_fixed[i], best_class[i] = cmp[i][k], cum_cmp[i][k]
            _, best_interval[i] = best_fixed_threshold(kernel, i, played)
            best_interval[i] = max(best_interval[i], best_class[i])
        else:
            best_fixed[i], best_class[i] = best_fixed_threshold(
                kernel, i, played, grid_sums=cum_cmp[i], grid=cmp[i]
            )
            best_interval[i] = best_class[i]
    bounds = [L.bound() for L in learners]
    lin = None
    if isinstance(learners[0], OnlineGradientAscent):
        lin = np.array([L.linearized_regret for L in learners])
    avg_pi = sum_pi / rounds
    avg_c = sum_c / rounds
    params = dict(learners[0].params)
    if m > 1:  # values that differ between principals (e.g. gradient steps) become tuples
        for key in params:
            vals = [L.params[key] for L in learners]
            if any(v != vals[0] for v in vals):
                params[key] = tuple(vals)
    diagnostics: dict[str, Any] = {}
    for key in learners[0].diagnostics():
        diagnostics[key] = np.array([L.diagnostics()[key] for L in learners])
    regret = best_class - own
    return LearningResult(
        learner=cls.name,
        params=params,
        rounds=rounds,
        seed=int(seq.entropy),
        names=game.names,
        regret=regret,
        bound=np.array([b.value for b in bounds]),
        average_regret=regret / rounds,
        realized_regret=best_class - realised,
        interval_regret=best_interval - own,
        linearized_regret=lin,
        best_fixed=best_fixed,
        average_thresholds=avg_c,
        average_policy=avg_pi,
        average_payoffs=realised / rounds,
        equilibrium_thresholds=None if eq is None else eq_thresholds,
        equilibrium_policy=None if eq is None else eq_policy,
        policy_distance=None if eq is None else float(dist_traj[-1]),
        threshold_distance=None if eq is None else thr_traj[-1],
        transfer_distance=None if eq is None else tau_traj[-1],
        bound_formula="; ".join(
            f"{nm}: {b.formula}" for nm, b in zip(game.names, bounds, strict=True)
        ),
        bound_source=bounds[0].source,
        bound_covers=bounds[0].covers,
        regret_trajectory=regret_traj,
        distance_trajectory=dist_traj,
        threshold_distance_trajectory=thr_traj,
        transfer_distance_trajectory=tau_traj,
        thresholds=played,
        diagnostics=diagnostics,
    )
