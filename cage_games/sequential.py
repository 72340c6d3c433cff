"""Sequential common agency on a finite tree or DAG of states, solved by backward induction.

A :class:`SequentialGame` lives on a :class:`networkx.DiGraph`: nodes are states, the out-edges
of a state are the agent's actions there, and nodes without out-edges are terminal. Every edge
``s -> t`` carries the agent's reward ``v(s, t)`` and one reward ``u_i(s, t)`` per principal.
At each state the principals offer transfers on that state's out-edges only (Markov schedules,
paid when the edge is taken), and the agent maximises its total reward plus transfers plus
``beta`` times the entropy of each of its choices.

**Backward induction** (design note, section 5). In reverse topological order, at every
non-terminal state ``s`` with successors ``t_1..t_k``, play the one-shot game with

.. math::  \\tilde v(t) = v(s, t) + V_A(t), \\qquad \\tilde u_i(t) = u_i(s, t) + V_i(t),

where ``V_A(t)`` and ``V_i(t)`` are the agent's and principal ``i``'s equilibrium values at
``t`` (0 at terminal states). The one-shot equilibrium gives the policy at ``s``, the transfers
``tau_i(s, .)``, and the values at ``s``:

.. math::  V_A(s) = \\beta \\log \\sum_t \\exp\\big((\\tilde v(t) + \\textstyle\\sum_i
           \\tau_i(s, t)) / \\beta\\big), \\qquad
           V_i(s) = E_{\\pi_s}[\\tilde u_i - \\tau_i(s, \\cdot)].

``V_A`` is the agent's soft (entropy-regularised) Bellman value: it equals
``beta * log sum_paths exp(sum_edges (v + sum_i tau_i) / beta)`` over the paths from ``s``, and
the induced distribution over paths is the softmax of those sums (the identity the tests
check). ``V_i`` is principal ``i``'s expected net reward from ``s`` on. Because the
continuation play is fixed by the induction, each stage game is exactly the one-shot game of
:class:`cage_games.CommonAgencyGame`, and the profile is a subgame-perfect equilibrium in Markov
schedules (Kuhn's backward induction; for common agency in stages see Bernheim and Whinston,
1986, "Common agency", Econometrica 54(4), on the one-shot building block).

With ``beta = 0`` each stage is a menu auction (:func:`cage_games.menu_auction.solve_menu_auction`)
and ``V_A(s) = max_t (\\tilde v(t) + sum_i tau_i(s, t))``; the principals' continuation values
then depend on the stage's ``selection`` rule, since truthful payoffs need not be unique.

:func:`myopic_policy` plays the same stage games *without* continuation values (the per-token
equilibrium of decoding), and :func:`compare_myopic` sets the two side by side: outcome
distributions over terminal states, expected rewards and transfers.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import networkx as nx
import numpy as np

from cage_games._validation import as_scalar
from cage_games.game import Agent, CommonAgencyGame, Principal
from cage_games.result import FrozenRecord

__all__ = [
    "MyopicComparison",
    "SequentialGame",
    "SequentialResult",
    "compare_myopic",
    "myopic_policy",
    "outcome_distribution",
    "solve_sequential",
]


@dataclass(frozen=True, eq=False, init=False)
class SequentialGame:
    """A finite-horizon common-agency game on a tree or DAG of states.

    Parameters
    ----------
    graph : networkx.DiGraph
        States as nodes, actions as out-edges; nodes without out-edges are terminal. Must be
        acyclic and have at least one edge. Only the part reachable from ``root`` is used.
        The graph is copied and frozen: later changes to the caller's graph have no effect.
    beta : float
        The agent's temperature at every state, ``>= 0`` (0: menu auctions at every state).
    root : hashable, optional
        The initial state. Default: the unique node without in-edges (an error if there are
        several: pass ``root=``).
    principal_key : str or sequence of str
        Where the principals' rewards are on each edge. A string (default ``"principals"``):
        one edge attribute holding a sequence of ``m`` floats, principal ``i``'s reward at
        position ``i``. A sequence of strings: one scalar edge attribute per principal (e.g.
        ``("helpful", "brief")``), which also names the principals unless ``principal_names``
        is given.
    agent_key : str
        The edge attribute with the agent's reward (default ``"agent"``). For a language model,
        ``beta * log p0(token | prefix)``.
    principal_names : sequence of str, optional
        Names of the principals (default: the attribute names, or ``"principal_<i>"``).
    caps : sequence of float or None, optional
        Per-principal cap on every transfer at every state (``None`` entries: uncapped).

    Attributes
    ----------
    graph : networkx.DiGraph
        A frozen copy of the reachable part of the graph.
    root : hashable
        The initial state.
    order : tuple
        The reachable states in topological order (root first).
    terminals : tuple
        The reachable terminal states, in topological order.
    children : mapping
        ``state -> tuple of successor states`` (the order used by every per-state array).
    agent_rewards : mapping
        ``state -> ndarray (k,)``: the agent's edge rewards, aligned with ``children``.
    principal_rewards : mapping
        ``state -> ndarray (m, k)``: the principals' edge rewards, aligned with ``children``.
    n_principals : int
    names : tuple of str
    caps : ndarray, shape (m,)
        ``inf`` where uncapped.

    Examples
    --------
    >>> import networkx as nx
    >>> from cage_games.sequential import SequentialGame
    >>> g = nx.DiGraph()
    >>> g.add_edge("s", "a", agent=0.0, principals=[1.0])
    >>> g.add_edge("s", "b", agent=0.5, principals=[0.0])
    >>> SequentialGame(g, beta=1.0).terminals
    ('a', 'b')
    """

    graph: nx.DiGraph
    beta: float
    root: Hashable
    order: tuple
    terminals: tuple
    children: Mapping[Hashable, tuple]
    agent_rewards: Mapping[Hashable, np.ndarray]
    principal_rewards: Mapping[Hashable, np.ndarray]
    names: tuple[str, ...]
    caps: np.ndarray

    def __init__(
        self,
        graph: nx.DiGraph,
        beta: float,
        *,
        root: Hashable | None = None,
        principal_key: str | Sequence[str] = "principals",
        agent_key: str = "agent",
        principal_names: Sequence[str] | None = None,
        caps: Sequence[float | None] | None = None,
    ) -> None:
        if not isinstance(graph, nx.DiGraph):
            raise TypeError(
                f"graph must be a networkx.DiGraph (states as nodes, actions as out-edges), got "
                f"{type(graph).__name__}"
            )
        if graph.is_multigraph():
            raise TypeError(
                "graph must be a simple networkx.DiGraph, not a MultiDiGraph: two actions "
                "leading to the same state need distinct successor nodes"
            )
        beta = as_scalar(beta, "beta", minimum=0.0)
        if not isinstance(agent_key, str):
            raise TypeError(f"agent_key must be a string, got {type(agent_key).__name__}")
        if graph.number_of_edges() == 0:
            raise ValueError("graph has no edges: a sequential game needs at least one action")
        if not any(d == 0 for _, d in graph.out_degree()):
            raise ValueError(
                "graph has no terminal states (every node has an out-edge), so it has a cycle; "
                "a finite-horizon game needs a DAG whose paths end at nodes without out-edges"
            )
        if not nx.is_directed_acyclic_graph(graph):
            cycle = nx.find_cycle(graph)
            raise ValueError(
                f"graph must be acyclic (a tree or DAG of states); found the cycle {cycle[:6]}"
                + (" ..." if len(cycle) > 6 else "")
            )
        if root is None:
            sources = [s for s, d in graph.in_degree() if d == 0]
            if len(sources) != 1:
                raise ValueError(
                    f"the root is ambiguous: {len(sources)} nodes have no in-edges "
                    f"({sources[:5]}{' ...' if len(sources) > 5 else ''}); pass root=<state>"
                )
            root = sources[0]
        elif root not in graph:
            raise ValueError(f"root {root!r} is not a node of graph")
        if graph.out_degree(root) == 0:
            raise ValueError(f"root {root!r} has no out-edges: the agent has nothing to choose")

        reach = nx.descendants(graph, root) | {root}
        sub = graph.subgraph(reach)
        order = tuple(nx.topological_sort(sub))

        # Principals: how many and where their rewards are.
        if isinstance(principal_key, str):
            per_attr = None
            first = next(iter(sub.out_edges(root, data=True)))
            if principal_key not in first[2]:
                raise ValueError(
                    f"edge {first[0]!r} -> {first[1]!r} has no {principal_key!r} attribute; "
                    f"give each edge {principal_key}=[u_1, ..., u_m] (one reward per principal) "
                    "or pass principal_key= naming the attribute(s)"
                )
            try:
                m = len(first[2][principal_key])
            except TypeError:
                raise TypeError(
                    f"edge attribute {principal_key!r} must be a sequence of principal rewards, "
                    f"got {type(first[2][principal_key]).__name__} on edge {first[0]!r} -> "
                    f"{first[1]!r}; for scalar per-principal attributes pass "
                    "principal_key=('name_1', ...)"
                ) from None
            default_names = tuple(f"principal_{i}" for i in range(m))
        else:
            per_attr = tuple(principal_key)
            if not per_attr or not all(isinstance(k, str) for k in per_attr):
                raise TypeError("principal_key must be a string or a non-empty sequence of strings")
            m = len(per_attr)
            default_names = per_attr
        if m == 0:
            raise ValueError("the principals' reward sequences are empty: a game needs m >= 1")
        if principal_names is None:
            names = default_names
        else:
            names = tuple(principal_names)
            if len(names) != m or not all(isinstance(s, str) for s in names):
                raise ValueError(f"principal_names must be {m} strings, one per principal")
            if len(set(names)) != m:
                raise ValueError(f"principal_names must be unique, got {list(names)}")
        if caps is None:
            cap_arr = np.full(m, np.inf)
        else:
            caps = list(caps)
            if len(caps) != m:
                raise ValueError(f"caps must have {m} entries (one per principal, None = uncapped)")
            cap_arr = np.array(
                [
                    np.inf if c is None else as_scalar(c, f"caps[{i}]", minimum=0.0, strict=True)
                    for i, c in enumerate(caps)
                ]
            )
        cap_arr.setflags(write=False)

        children: dict = {}
        agent_rewards: dict = {}
        principal_rewards: dict = {}
        for s in order:
            succ = tuple(sub.successors(s))
            if not succ:
                continue
            v = np.empty(len(succ))
            u = np.empty((m, len(succ)))
            for k, t in enumerate(succ):
                data = sub.edges[s, t]
                where = f"edge {s!r} -> {t!r}"
                if agent_key not in data:
                    raise ValueError(
                        f"{where} has no {agent_key!r} attribute (the agent's reward); "
                        f"set it on every edge, e.g. G.add_edge(s, t, {agent_key}=0.0, ...)"
                    )
                v[k] = as_scalar(data[agent_key], f"{where}: {agent_key!r}")
                if per_attr is None:
                    if principal_key not in data:
                        raise ValueError(
                            f"{where} has no {principal_key!r} attribute; give it {m} principal "
                            "rewards"
                        )
                    vals = data[principal_key]
                    try:
                        vals = list(vals)
                    except TypeError:
                        raise TypeError(
                            f"{where}: {principal_key!r} must be a sequence of {m} rewards, got "
                            f"{type(vals).__name__}"
                        ) from None
                    if len(vals) != m:
                        raise ValueError(
                            f"{where}: {principal_key!r} has {len(vals)} rewards but the game "
                            f"has {m} principals (from the first edge out of the root); give "
                            "every edge one reward per principal"
                        )
                    for i, x in enumerate(vals):
                        u[i, k] = as_scalar(x, f"{where}: {principal_key!r}[{i}]")
                else:
                    for i, key in enumerate(per_attr):
                        if key not in data:
                            raise ValueError(
                                f"{where} has no {key!r} attribute (principal {names[i]!r}'s "
                                "reward); set it on every edge"
                            )
                        u[i, k] = as_scalar(data[key], f"{where}: {key!r}")
            v.setflags(write=False)
            u.setflags(write=False)
            children[s] = succ
            agent_rewards[s] = v
            principal_rewards[s] = u

        frozen = nx.freeze(nx.DiGraph(sub))
        object.__setattr__(self, "graph", frozen)
        object.__setattr__(self, "beta", beta)
        object.__setattr__(self, "root", root)
        object.__setattr__(self, "order", order)
        object.__setattr__(self, "terminals", tuple(s for s in order if s not in children))
        object.__setattr__(self, "children", MappingProxyType(children))
        object.__setattr__(self, "agent_rewards", MappingProxyType(agent_rewards))
        object.__setattr__(self, "principal_rewards", MappingProxyType(principal_rewards))
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "caps", cap_arr)

    @property
    def n_principals(self) -> int:
        return len(self.names)

    @property
    def states(self) -> tuple:
        """Non-terminal reachable states, in topological order."""
        return tuple(s for s in self.order if s in self.children)

    def stage_game(
        self,
        state: Hashable,
        agent_continuation: Mapping[Hashable, float] | None = None,
        principal_continuation: Mapping[Hashable, np.ndarray] | None = None,
    ) -> CommonAgencyGame:
        """The one-shot game at ``state``, with continuation values added to the edge rewards.

        Without continuation values this is the myopic (per-step) game.
        """
        if state not in self.children:
            raise ValueError(f"{state!r} is not a non-terminal reachable state of this game")
        succ = self.children[state]
        v = np.array(self.agent_rewards[state], dtype=float)
        u = np.array(self.principal_rewards[state], dtype=float)
        if agent_continuation is not None:
            v = v + np.array([agent_continuation[t] for t in succ])
        if principal_continuation is not None:
            u = u + np.stack([principal_continuation[t] for t in succ], axis=1)
        principals = [
            Principal(u[i], name=self.names[i], cap=None if np.isinf(c) else float(c))
            for i, c in enumerate(self.caps)
        ]
        return CommonAgencyGame(
            Agent(v, beta=self.beta), principals, action_names=tuple(str(t) for t in succ)
        )

    def __repr__(self) -> str:
        return (
            f"SequentialGame(root={self.root!r}, states={len(self.children)}, "
            f"terminals={len(self.terminals)}, principals={list(self.names)}, beta={self.beta:g})"
        )


@dataclass(frozen=True, eq=False, repr=False)
class SequentialResult(FrozenRecord):
    """The backward-induction equilibrium of a :class:`SequentialGame`.

    Per-state arrays are aligned with ``game.children[state]``.

    Attributes
    ----------
    success : bool
        Whether every stage solve succeeded.
    message : str
        What happened, naming the states whose solve failed, if any.
    residual : float
        The largest stage residual (each in its solver's units; see ``stages``).
    method : str
        ``"backward-induction"``, or ``"myopic"`` for :func:`myopic_policy`.
    policy : mapping
        ``state -> ndarray (k,)``: the agent's equilibrium distribution over the out-edges.
    transfers : mapping
        ``state -> ndarray (m, k)``: the principals' transfers on the out-edges.
    thresholds : mapping
        ``state -> ndarray (m,)``: the stage thresholds ``c_i``.
    agent_values : mapping
        ``state -> float``: ``V_A`` (0 at terminal states).
    principal_values : mapping
        ``state -> ndarray (m,)``: ``V_i``, the principals' expected net rewards from the state
        on (0 at terminal states).
    stages : mapping
        ``state -> EquilibriumResult`` (or ``MenuAuctionResult`` with ``beta = 0``): the
        one-shot solves, whose ``game`` is the augmented stage game.
    params : mapping
        Keyword arguments passed to the stage solver.
    game : SequentialGame
    """

    success: bool
    message: str
    residual: float
    method: str
    policy: Mapping[Hashable, np.ndarray]
    transfers: Mapping[Hashable, np.ndarray]
    thresholds: Mapping[Hashable, np.ndarray]
    agent_values: Mapping[Hashable, float]
    principal_values: Mapping[Hashable, np.ndarray]
    stages: Mapping[Hashable, Any] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    game: SequentialGame | None = None

    @property
    def root_agent_value(self) -> float:
        """The agent's value at the root."""
        return float(self.agent_values[self.game.root])

    @property
    def root_principal_values(self) -> np.ndarray:
        """The principals' values at the root."""
        return self.principal_values[self.game.root]

    def edge_policy(self, state: Hashable) -> dict[Hashable, float]:
        """The policy at ``state`` as ``{successor: probability}``."""
        return dict(zip(self.game.children[state], self.policy[state].tolist(), strict=True))

    def outcome_distribution(self) -> dict[Hashable, float]:
        """Probability of ending at each terminal state (see :func:`outcome_distribution`)."""
        return outcome_distribution(self.game, self.policy)

    def __repr__(self) -> str:
        g = self.game
        root = g.root
        lines = [
            f"{'message'.rjust(20)}: {self.message}",
            f"{'success'.rjust(20)}: {self.success}",
            f"{'method'.rjust(20)}: {self.method}",
            f"{'residual'.rjust(20)}: {self.residual:.3g}",
            f"{'root'.rjust(20)}: {root!r}",
            f"{'root agent value'.rjust(20)}: {self.agent_values[root]:.6g}",
            f"{'root principal vals'.rjust(20)}: "
            + ", ".join(
                f"{n}={x:.6g}" for n, x in zip(g.names, self.principal_values[root], strict=True)
            ),
            f"{'root policy'.rjust(20)}: "
            + ", ".join(f"{t!r}: {p:.4g}" for t, p in self.edge_policy(root).items()),
            f"{'states'.rjust(20)}: {len(self.policy)} non-terminal, {len(g.terminals)} terminal",
        ]
        return "\n".join(lines)

    __str__ = __repr__


def _stage_solve(game: CommonAgencyGame, selection: Any, solve_kwargs: Mapping[str, Any]):
    if game.beta == 0:
        from cage_games.menu_auction import solve_menu_auction

        return solve_menu_auction(game, selection=selection)
    from cage_games.solvers import solve

    return solve(game, **solve_kwargs)


def _check_game(game: object) -> SequentialGame:
    if not isinstance(game, SequentialGame):
        raise TypeError(
            f"game must be a cage_games.sequential.SequentialGame, got {type(game).__name__}; "
            "build one with SequentialGame(graph, beta=...)"
        )
    return game


def _run(
    game: SequentialGame, *, continuation: bool, selection: Any, solve_kwargs
) -> SequentialResult:
    m = game.n_principals
    agent_values: dict = {t: 0.0 for t in game.terminals}
    principal_values: dict = {t: np.zeros(m) for t in game.terminals}
    policy, transfers, thresholds, stages = {}, {}, {}, {}
    failed = []
    residual = 0.0
    for s in reversed(game.order):
        if s not in game.children:
            continue
        stage = (
            game.stage_game(s, agent_values, principal_values)
            if continuation
            else game.stage_game(s)
        )
        res = _stage_solve(stage, selection, solve_kwargs)
        if not res.success:
            failed.append(s)
        residual = max(residual, float(res.residual))
        stages[s] = res
        policy[s] = np.asarray(res.policy, dtype=float)
        transfers[s] = np.asarray(res.transfers, dtype=float)
        thresholds[s] = np.asarray(res.thresholds, dtype=float)
        if continuation:
            agent_values[s] = float(res.agent_payoff)
            principal_values[s] = np.asarray(res.payoffs, dtype=float)
    if not continuation:
        # Values of the myopic profile: expected rewards plus transfers (agent, with its entropy
        # bonus) and rewards minus transfers (principals) along the induced paths.
        for s in reversed(game.order):
            if s not in game.children:
                continue
            succ = game.children[s]
            p, tau = policy[s], transfers[s]
            v_next = np.array([agent_values[t] for t in succ])
            u_next = np.stack([principal_values[t] for t in succ], axis=1)
            q = game.agent_rewards[s] + tau.sum(axis=0) + v_next
            entropy = 0.0 if game.beta == 0 else -float(np.sum(p[p > 0] * np.log(p[p > 0])))
            agent_values[s] = float(p @ q + game.beta * entropy)
            principal_values[s] = (game.principal_rewards[s] - tau + u_next) @ p
    message = (
        "Every stage game was solved."
        if not failed
        else f"Stage solves failed at {len(failed)} state(s): {failed[:5]!r}"
        + (" ..." if len(failed) > 5 else "")
    )
    return SequentialResult(
        success=not failed,
        message=message,
        residual=residual,
        method="backward-induction" if continuation else "myopic",
        policy=policy,
        transfers=transfers,
        thresholds=thresholds,
        agent_values=agent_values,
        principal_values=principal_values,
        stages=stages,
        params={"selection": selection, **solve_kwargs} if game.beta == 0 else dict(solve_kwargs),
        game=game,
    )


def solve_sequential(
    game: SequentialGame,
    *,
    selection: str | Sequence[float] = "equal-sacrifice",
    **solve_kwargs: Any,
) -> SequentialResult:
    """Subgame-perfect equilibrium (Markov schedules) of a sequential game by backward induction.

    Algorithm (see the module docstring for the definitions):

    1. ``V_A(t) = V_i(t) = 0`` at terminal states.
    2. For each non-terminal state ``s`` in reverse topological order: build the stage game
       with ``v(s, t) + V_A(t)`` and ``u_i(s, t) + V_i(t)``; solve it with
       :func:`cage_games.solve` (``beta > 0``) or
       :func:`cage_games.menu_auction.solve_menu_auction` (``beta = 0``); set
       ``V_A(s)`` to the agent's stage payoff (``beta * logsumexp``) and ``V_i(s)`` to principal
       ``i``'s stage payoff.

    Parameters
    ----------
    game : SequentialGame
    selection : str or weights
        The frontier point of each stage menu auction when ``beta = 0`` (ignored otherwise);
        see :func:`cage_games.menu_auction.solve_menu_auction`.
    **solve_kwargs
        Passed to :func:`cage_games.solve` at each stage (``method``, ``tol``, ``max_iter``).

    Returns
    -------
    SequentialResult
    """
    return _run(
        _check_game(game), continuation=True, selection=selection, solve_kwargs=solve_kwargs
    )


def myopic_policy(
    game: SequentialGame,
    *,
    selection: str | Sequence[float] = "equal-sacrifice",
    **solve_kwargs: Any,
) -> SequentialResult:
    """The per-step (myopic) equilibrium: every stage game ignores continuation values.

    This is what per-token equilibrium decoding does: at each state the principals and the
    agent look only at the rewards of the next edge. The returned ``agent_values`` and
    ``principal_values`` are the *realised* values of this profile (expected rewards and
    transfers along the paths it induces, plus ``beta`` times the agent's entropy), so they are
    comparable with :func:`solve_sequential`'s.

    Parameters and returns as :func:`solve_sequential` (``method`` is ``"myopic"``).
    """
    return _run(
        _check_game(game), continuation=False, selection=selection, solve_kwargs=solve_kwargs
    )


def outcome_distribution(
    game: SequentialGame, policy: Mapping[Hashable, Sequence[float] | np.ndarray]
) -> dict[Hashable, float]:
    """Probability of ending at each terminal state when the agent follows ``policy``.

    Parameters
    ----------
    game : SequentialGame
    policy : mapping
        ``state -> probabilities over game.children[state]`` for every non-terminal state.

    Returns
    -------
    dict
        ``terminal -> probability``, in topological order; the values sum to 1.
    """
    reach = _reach(_check_game(game), policy)
    return {t: float(reach[t]) for t in game.terminals}


def _reach(game: SequentialGame, policy: Mapping) -> dict:
    reach = dict.fromkeys(game.order, 0.0)
    reach[game.root] = 1.0
    for s in game.order:
        if s not in game.children:
            continue
        if s not in policy:
            raise ValueError(f"policy has no entry for state {s!r}")
        p = np.asarray(policy[s], dtype=float)
        if p.shape != (len(game.children[s]),):
            raise ValueError(
                f"policy[{s!r}] must have {len(game.children[s])} probabilities (one per out-edge)"
            )
        for t, pt in zip(game.children[s], p, strict=True):
            reach[t] += reach[s] * pt
    return reach


@dataclass(frozen=True, eq=False, repr=False)
class MyopicComparison(FrozenRecord):
    """Whole-sequence equilibrium versus per-step (myopic) equilibrium on the same game.

    Attributes
    ----------
    sequential, myopic : SequentialResult
        The two profiles.
    terminals : tuple
        The terminal states (the order of the arrays below).
    sequential_outcomes, myopic_outcomes : ndarray, shape (T,)
        Probability of each terminal state under each profile.
    total_variation : float
        ``0.5 * sum |sequential - myopic|`` over terminal states.
    expected_rewards : mapping
        ``"sequential"``/``"myopic"`` -> ndarray (m,): each principal's expected gross reward
        (sum of its edge rewards along the path, transfers not deducted).
    expected_transfers : mapping
        ``"sequential"``/``"myopic"`` -> ndarray (m,): each principal's expected total transfers.
    expected_agent_reward : mapping
        ``"sequential"``/``"myopic"`` -> float: the agent's expected sum of edge rewards.
    """

    sequential: SequentialResult
    myopic: SequentialResult
    terminals: tuple
    sequential_outcomes: np.ndarray
    myopic_outcomes: np.ndarray
    total_variation: float
    expected_rewards: Mapping[str, np.ndarray]
    expected_transfers: Mapping[str, np.ndarray]
    expected_agent_reward: Mapping[str, float]

    def table(self) -> str:
        """Terminal-state probabilities side by side."""
        width = max(len("terminal"), *(len(repr(t)) for t in self.terminals))
        lines = [f"{'terminal'.ljust(width)}  {'sequential':>10}  {'myopic':>10}"]
        for t, p, q in zip(
            self.terminals, self.sequential_outcomes, self.myopic_outcomes, strict=True
        ):
            lines.append(f"{repr(t).ljust(width)}  {p:10.4f}  {q:10.4f}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        names = self.sequential.game.names

        def vec(x):
            return ", ".join(f"{n}={v:.4g}" for n, v in zip(names, x, strict=True))

        lines = [
            self.table(),
            f"total variation: {self.total_variation:.4g}",
        ]
        for key in ("sequential", "myopic"):
            lines.append(
                f"{key:>10}: agent reward {self.expected_agent_reward[key]:.4g}; "
                f"principal rewards [{vec(self.expected_rewards[key])}]; "
                f"transfers [{vec(self.expected_transfers[key])}]"
            )
        return "\n".join(lines)

    __str__ = __repr__


def _path_expectations(game: SequentialGame, res: SequentialResult):
    reach = _reach(game, res.policy)
    m = game.n_principals
    rewards, paid, agent = np.zeros(m), np.zeros(m), 0.0
    for s in game.states:
        flow = reach[s] * res.policy[s]
        rewards += game.principal_rewards[s] @ flow
        paid += res.transfers[s] @ flow
        agent += float(game.agent_rewards[s] @ flow)
    return reach, rewards, paid, agent


def compare_myopic(
    game: SequentialGame,
    *,
    selection: str | Sequence[float] = "equal-sacrifice",
    **solve_kwargs: Any,
) -> MyopicComparison:
    """Solve ``game`` both ways and compare the outcome distributions and expected rewards.

    Parameters and keyword arguments as :func:`solve_sequential`.

    Returns
    -------
    MyopicComparison
    """
    game = _check_game(game)
    seq = solve_sequential(game, selection=selection, **solve_kwargs)
    myo = myopic_policy(game, selection=selection, **solve_kwargs)
    r_seq, rew_s, paid_s, ag_s = _path_expectations(game, seq)
    r_myo, rew_m, paid_m, ag_m = _path_expectations(game, myo)
    p = np.array([r_seq[t] for t in game.terminals])
    q = np.array([r_myo[t] for t in game.terminals])
    return MyopicComparison(
        sequential=seq,
        myopic=myo,
        terminals=game.terminals,
        sequential_outcomes=p,
        myopic_outcomes=q,
        total_variation=float(0.5 * np.abs(p - q).sum()),
        expected_rewards={"sequential": rew_s, "myopic": rew_m},
        expected_transfers={"sequential": paid_s, "myopic": paid_m},
        expected_agent_reward={"sequential": ag_s, "myopic": ag_m},
    )
