"""Verify the theory on concrete games: existence, uniqueness and stability reports.

Run::

    python examples/guarantees.py

Every check returns a printable report that says what it established, by which argument, and
what it only sampled. Takes a few seconds; prints only.
"""

from __future__ import annotations

import numpy as np

import cage_games as cg
from cage_games.existence import check_existence
from cage_games.sensitivity import reweighted, sensitivity
from cage_games.uniqueness import check_uniqueness


def game(v, utilities, names, beta, caps=None, actions=None):
    caps = caps or [None] * len(utilities)
    principals = [
        cg.Principal(u, name=n, cap=c) for u, n, c in zip(utilities, names, caps, strict=True)
    ]
    return cg.CommonAgencyGame(cg.Agent(v, beta=beta), principals, action_names=actions)


def main() -> None:
    # A helpful-vs-harmless trade-off over five replies, the harmless principal capped.
    actions = ["refuse", "hedge", "partial", "answer", "overshare"]
    trade_off = game(
        [0.0, 0.2, 0.3, 0.3, 0.0],
        [[0.0, 0.5, 1.5, 2.5, 3.0], [2.0, 1.8, 1.2, 0.6, -1.0]],
        ["helpful", "harmless"],
        beta=0.5,
        caps=[None, 1.5],
        actions=actions,
    )

    print("== 1. Existence (Poincaré–Miranda on the threshold system) ==")
    print(check_existence(trade_off))

    print("\n== 2. Uniqueness ==")
    print("-- large stakes, a binding cap: the bound fails, so the check samples --")
    print(check_uniqueness(trade_off, n_samples=200, n_starts=8, seed=0))
    print("\n-- moderate stakes: the dominance bound proves it --")
    moderate = game(
        [0.0, 0.3, -0.2], [[0.0, 1.6, 0.4], [1.5, 0.0, 0.2]], ["a", "b"], beta=1.0, caps=[0.7, None]
    )
    rep = check_uniqueness(moderate)
    print(rep.conclusion, "|", rep.message)
    print("\n-- beta = 0, a public good: free riding leaves the payoffs undetermined --")
    public = game([1.0, 0.0], [[0.0, 1.0], [0.0, 1.0]], ["alice", "bob"], beta=0.0)
    rep = check_uniqueness(public)
    print(rep.conclusion, "|", rep.message)
    print("two truthful-equilibrium payoff vectors:", rep.details["two_frontier_points"].tolist())

    print("\n== 3. Stability (implicit function theorem) ==")
    res = cg.solve(trade_off)
    rep = sensitivity(trade_off, res, wrt=("weights", "beta"))
    print(rep)

    # The derivative against a re-solved central difference, in the helpful weight.
    h = 1e-5
    plus = cg.solve(reweighted(trade_off, np.array([1 + h, 1.0])), tol=1e-14)
    minus = cg.solve(reweighted(trade_off, np.array([1 - h, 1.0])), tol=1e-14)
    fd = (plus.policy - minus.policy) / (2 * h)
    an = rep["weights"].policy[:, 0]
    print(
        "\nd policy / d w_helpful: analytic vs re-solved central difference, max relative "
        f"error {np.max(np.abs(fd - an)) / np.max(np.abs(an)):.1e}"
    )


if __name__ == "__main__":
    main()
