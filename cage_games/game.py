"""The one-shot common-agency game: an agent, several principals, a finite action set.

The agent chooses a mixed action ``pi`` over ``n`` actions maximising
``sum_a pi(a) (v(a) + sum_i tau_i(a)) + beta H(pi)``: the logit (quantal) response
``pi(a) ∝ exp((v(a) + sum_i tau_i(a)) / beta)``. Each principal ``i`` has gross utility
``u_i(a)``, offers a transfer schedule ``tau_i(a) >= 0`` (at most ``cap_i``) paid on the action
taken, and nets ``E_pi[u_i - tau_i]``. The principals play Nash in their schedules
(Bernheim and Whinston, 1986, "Menu auctions, resource allocation, and economic influence",
QJE 101(1); with a quantal agent as in the design note of this project).

All objects here are immutable data: solvers are functions of them (see :func:`cage_games.solve`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from cage_games._validation import as_scalar, as_vector
from cage_games.actions import ActionGrid, ContinuousActions

__all__ = ["Agent", "CommonAgencyGame", "Principal"]


@dataclass(frozen=True, eq=False)
class Agent:
    """The common agent: intrinsic utility ``v`` and rationality temperature ``beta``.

    Parameters
    ----------
    utility : array_like, shape (n,), or callable
        Intrinsic utility ``v(a)`` of each action; finite. On a structured action space
        (``CommonAgencyGame(..., actions=...)``) a vectorised callable of the coordinates,
        e.g. ``lambda t1, t2: -(t1**2 + t2**2)``; the game tabulates it.
    beta : float
        Temperature, ``>= 0``. ``beta > 0`` gives the logit response
        ``pi ∝ exp((v + sum_i tau_i) / beta)``; ``beta = 0`` a deterministic agent (menu auction).
    support : array_like of bool, shape (n,), optional
        Actions the agent may take at all; the others get probability 0 whatever the transfers.
        Defaults to every action. Built by :meth:`kl_regularized` from the zeros of the reference.

    Attributes
    ----------
    n_actions : int
        Number of actions ``n``.

    Examples
    --------
    >>> import numpy as np, cage_games as cg
    >>> cg.Agent(utility=[0.0, 1.0], beta=0.5).n_actions
    2
    >>> cg.Agent.kl_regularized(reference=[0.25, 0.75, 0.0], beta=1.0).support.tolist()
    [True, True, False]
    """

    utility: np.ndarray
    beta: float
    support: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        beta = as_scalar(self.beta, "beta", minimum=0.0)
        if callable(self.utility):
            # Bound to an action space by CommonAgencyGame(..., actions=...).
            object.__setattr__(self, "beta", beta)
            return
        v = as_vector(self.utility, "utility")
        if self.support is None:
            support = np.ones(v.size, dtype=bool)
        else:
            support = np.array(self.support)
            if support.dtype != bool:
                raise TypeError(f"support must be an array of booleans, got dtype {support.dtype}")
            if support.shape != v.shape:
                raise ValueError(
                    f"support has shape {support.shape} but utility has shape {v.shape}; "
                    "give one flag per action"
                )
            if not support.any():
                raise ValueError(
                    "support excludes every action: at least one action must be allowed"
                )
        support.setflags(write=False)
        object.__setattr__(self, "utility", v)
        object.__setattr__(self, "beta", beta)
        object.__setattr__(self, "support", support)

    @classmethod
    def kl_regularized(cls, reference: Sequence[float] | np.ndarray, beta: float) -> Agent:
        """The KL-regularised agent of an LLM: ``v = beta * log(reference)``.

        Its response to transfers is ``pi ∝ reference * exp(sum_i tau_i / beta)``, the
        maximiser of ``E_pi[sum_i tau_i] - beta KL(pi || reference)``.

        Parameters
        ----------
        reference : array_like, shape (n,)
            A probability vector (non-negative, sums to 1 within 1e-6; it is renormalised).
            Zeros are allowed: those actions get probability 0. An all-zero vector is an error.
        beta : float
            KL weight (temperature), ``>= 0``.
        """
        p0 = as_vector(reference, "reference")
        if (p0 < 0).any():
            raise ValueError(
                f"reference must be a probability vector; negative at positions "
                f"{np.flatnonzero(p0 < 0)[:5].tolist()}"
            )
        total = p0.sum()
        if total <= 0:
            raise ValueError(
                "reference is all zeros: it must put positive probability on some action"
            )
        if abs(total - 1.0) > 1e-6:
            raise ValueError(
                f"reference must sum to 1 (got {total:.9g}); normalise it, e.g. p / p.sum()"
            )
        beta = as_scalar(beta, "beta", minimum=0.0)
        support = p0 > 0
        v = np.zeros_like(p0)
        v[support] = beta * np.log(p0[support] / total)
        return cls(utility=v, beta=beta, support=support)

    @property
    def n_actions(self) -> int:
        if callable(self.utility):
            raise ValueError(
                "this agent's utility is a callable of the action coordinates: it has no "
                "number of actions until it is placed in CommonAgencyGame(..., actions=...)"
            )
        return int(self.utility.size)


@dataclass(frozen=True, eq=False)
class Principal:
    """A principal: gross utility over actions, an optional cap on its transfers, a name.

    Parameters
    ----------
    utility : array_like, shape (n,), or callable
        Gross utility ``u_i(a)``; finite. In alignment, ``w_i * r_i`` for an objective's reward.
        On a structured action space, a vectorised callable of the coordinates.
    name : str, optional
        A label used in reports; :class:`CommonAgencyGame` fills in ``"principal_<i>"``.
    cap : float, optional
        Upper bound on every transfer, ``> 0``. ``None`` (the default) means uncapped.
    """

    utility: np.ndarray
    name: str | None = None
    cap: float | None = None

    def __post_init__(self) -> None:
        if not callable(self.utility):
            object.__setattr__(self, "utility", as_vector(self.utility, "utility"))
        if self.name is not None and not isinstance(self.name, str):
            raise TypeError(f"name must be a string, got {type(self.name).__name__}")
        if self.cap is not None:
            cap = self.cap
            if (
                isinstance(cap, (int, float, np.number))
                and not isinstance(cap, bool)
                and np.isposinf(cap)
            ):
                object.__setattr__(self, "cap", None)
            else:
                object.__setattr__(self, "cap", as_scalar(cap, "cap", minimum=0.0, strict=True))


@dataclass(frozen=True, eq=False)
class CommonAgencyGame:
    """A one-shot common-agency game: one agent, ``m >= 1`` principals, ``n >= 1`` actions.

    Parameters
    ----------
    agent : Agent
        The common agent.
    principals : sequence of Principal
        At least one; each utility must have one entry per action. Unnamed principals are
        named ``"principal_<i>"``; names must be unique.
    action_names : sequence of str, optional
        Labels for the actions (used by reports and the CLI).
    actions : ActionGrid or ContinuousActions, optional
        A structured action space (:mod:`cage_games.actions`). The utilities may then be
        vectorised callables of the coordinates; the game tabulates them on ``grid``.
        A :class:`~cage_games.ContinuousActions` box is tabulated on its first uniform grid,
        with the agent's utility shifted by ``beta * log(w)`` for the cells' reference
        weights ``w``; :func:`cage_games.solve` refines it.
    grid : ActionGrid, optional
        The grid a continuous box is tabulated on (default: ``actions.initial_grid()``); for
        an :class:`~cage_games.ActionGrid` it is ``actions`` itself.

    Attributes
    ----------
    utilities : ndarray, shape (m, n)
        The principals' utilities stacked (read-only).
    caps : ndarray, shape (m,)
        Transfer caps, ``inf`` where uncapped.
    names : tuple of str
        The principals' names.
    """

    agent: Agent
    principals: tuple[Principal, ...]
    action_names: tuple[str, ...] | None = None
    actions: ActionGrid | ContinuousActions | None = None
    grid: ActionGrid | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.agent, Agent):
            raise TypeError(f"agent must be a cage_games.Agent, got {type(self.agent).__name__}")
        if isinstance(self.principals, Principal):
            raise TypeError(
                "principals must be a sequence of Principal: wrap a single one in a list"
            )
        try:
            principals = tuple(self.principals)
        except TypeError:
            raise TypeError("principals must be a sequence of cage_games.Principal") from None
        if not principals:
            raise ValueError(
                "principals is empty: a common-agency game needs at least one principal"
            )
        for i, p in enumerate(principals):
            if not isinstance(p, Principal):
                raise TypeError(
                    f"principals[{i}] must be a cage_games.Principal, got {type(p).__name__}"
                )
        object.__setattr__(self, "_source", (self.agent, principals))
        principals = self._bind_actions(principals)
        n = self.agent.n_actions
        named = []
        for i, p in enumerate(principals):
            if p.utility.size != n:
                raise ValueError(
                    f"principals[{i}].utility has {p.utility.size} entries but the agent has {n} "
                    "actions; every utility needs one value per action"
                )
            named.append(p if p.name is not None else Principal(p.utility, f"principal_{i}", p.cap))
        names = [p.name for p in named]
        if len(set(names)) != len(names):
            raise ValueError(f"principal names must be unique, got {names}")
        object.__setattr__(self, "principals", tuple(named))
        if self.action_names is not None:
            if isinstance(self.action_names, (str, bytes)):
                raise TypeError(
                    "action_names must be a sequence of strings, one per action, not one string "
                    f"(got {self.action_names!r}; write e.g. ['a', 'b', 'c'])"
                )
            labels = tuple(self.action_names)
            if len(labels) != n or not all(isinstance(s, str) for s in labels):
                raise ValueError(f"action_names must be {n} strings, one per action")
            object.__setattr__(self, "action_names", labels)
        utilities = np.stack([p.utility for p in self.principals])
        utilities.setflags(write=False)
        caps = np.array([np.inf if p.cap is None else p.cap for p in self.principals])
        caps.setflags(write=False)
        object.__setattr__(self, "_utilities", utilities)
        object.__setattr__(self, "_caps", caps)

    def _bind_actions(self, principals: tuple[Principal, ...]) -> tuple[Principal, ...]:
        """Tabulate callables on the action space's grid; replace ``agent`` by the tabulated one."""
        space = self.actions
        if space is None:
            if self.grid is not None:
                raise ValueError("grid is only meaningful with actions=ContinuousActions(...)")
            if callable(self.agent.utility) or any(callable(p.utility) for p in principals):
                raise ValueError(
                    "utilities are callables of action coordinates, but the game has no action "
                    "space: pass actions=cg.ActionGrid(...) or cg.ContinuousActions(...)"
                )
            return principals
        if isinstance(space, ActionGrid):
            if self.grid is not None and self.grid != space:
                raise ValueError("grid must be actions itself for an ActionGrid")
            grid = space
            log_w = None
        elif isinstance(space, ContinuousActions):
            if not callable(self.agent.utility) or not all(callable(p.utility) for p in principals):
                raise ValueError(
                    "on a ContinuousActions box every utility (the agent's and each principal's) "
                    "must be a vectorised callable of the coordinates: the solver re-tabulates "
                    "them on refined grids. For fixed tables use an ActionGrid"
                )
            grid = space.initial_grid() if self.grid is None else self.grid
            if not isinstance(grid, ActionGrid) or grid.names != space.names:
                raise ValueError(f"grid must be an ActionGrid over the dimensions {space.names}")
            axes = grid.axes
            for k, name in enumerate(space.names):
                if axes[name][0] < space.lower[k] or axes[name][-1] > space.upper[k]:
                    raise ValueError(f"grid {name!r} leaves the box {space.bounds[name]}")
            log_w = np.log(space.reference_weights(grid))
        else:
            raise TypeError(
                "actions must be a cage_games.ActionGrid or cage_games.ContinuousActions, got "
                f"{type(space).__name__}"
            )
        object.__setattr__(self, "grid", grid)
        agent = self.agent
        v = grid.evaluate(agent.utility, "agent.utility")
        if log_w is not None:
            v = v + agent.beta * log_w
        support = agent.support
        if support is not None and np.ndim(support) > 1:
            support = np.asarray(support).ravel()
        object.__setattr__(self, "agent", Agent(utility=v, beta=agent.beta, support=support))
        return tuple(
            Principal(grid.evaluate(p.utility, f"principals[{i}].utility"), p.name, p.cap)
            for i, p in enumerate(principals)
        )

    def on_grid(self, grid: ActionGrid) -> CommonAgencyGame:
        """The same game (same callables) tabulated on another grid of its continuous box."""
        if not isinstance(self.actions, ContinuousActions):
            raise ValueError("on_grid needs a game with actions=cg.ContinuousActions(...)")
        agent, principals = self._source  # type: ignore[attr-defined]
        return CommonAgencyGame(agent, principals, actions=self.actions, grid=grid)

    def with_beta(self, beta: float) -> CommonAgencyGame:
        """The same game with the agent's temperature set to ``beta`` (``v`` unchanged).

        On a continuous box the reference weights are re-applied at the new temperature.
        """
        agent, principals = self._source  # type: ignore[attr-defined]
        new_agent = Agent(utility=agent.utility, beta=beta, support=agent.support)
        if self.actions is None:
            return CommonAgencyGame(new_agent, principals, self.action_names)
        grid = self.grid if isinstance(self.actions, ContinuousActions) else None
        return CommonAgencyGame(new_agent, principals, actions=self.actions, grid=grid)

    @property
    def n_actions(self) -> int:
        return self.agent.n_actions

    @property
    def n_principals(self) -> int:
        return len(self.principals)

    @property
    def beta(self) -> float:
        return self.agent.beta

    @property
    def utilities(self) -> np.ndarray:
        return self._utilities  # type: ignore[attr-defined]

    @property
    def caps(self) -> np.ndarray:
        return self._caps  # type: ignore[attr-defined]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.principals)  # type: ignore[misc]

    @property
    def has_caps(self) -> bool:
        return bool(np.isfinite(self.caps).any())

    def __repr__(self) -> str:
        return (
            f"CommonAgencyGame(n_actions={self.n_actions}, principals={list(self.names)}, "
            f"beta={self.beta:g}, "
            f"caps={[None if not np.isfinite(c) else float(c) for c in self.caps]}"
            + ("" if self.actions is None else f", actions={self.actions!r}")
            + ")"
        )
