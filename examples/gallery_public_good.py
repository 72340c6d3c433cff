"""A public good with no agent rent: the agent gets only its outside option.

Published result (Laussel and Le Breton, 2001, "Conflict and cooperation: the structure of
equilibrium payoffs in common agency", Journal of Economic Theory 100(1), 93-128): when the
principals' interests are aligned, so that the characteristic function W is supermodular
(convex), every truthful equilibrium leaves the agent no rent: its payoff is W(empty set), what
it gets on its own; the principals' payoffs are then a whole continuum (free riding decides who
pays what).

A public project costs the agent K = 5 (v = -K if built, 0 otherwise); three towns value it at
2, 2.5 and 3: no one town can fund it, any two can. W(S) = max(0, sum_S u_i - K) is
supermodular. The frontier of the truthful payoffs is then {U : U_1 + U_2 + U_3 = W(N) - W(0)}
(within the bounds), and the agent's payoff W(N) - sum U_i = W(0) = 0 at every point of it.

Run: ``python examples/gallery_public_good.py``
"""

import itertools

import numpy as np

import cage_games as cg


def main() -> None:
    K, values = 5.0, [2.0, 2.5, 3.0]
    game = cg.CommonAgencyGame(
        cg.Agent([0.0, -K], beta=0.0),
        [cg.Principal([0.0, x], name=f"town_{i}") for i, x in enumerate(values)],
        action_names=("status quo", "build"),
    )

    def W(S):
        return max(0.0, sum(values[i] for i in S) - K)

    # Supermodularity of W, checked on every pair of coalitions (the theorem's hypothesis).
    coalitions = [c for r in range(4) for c in itertools.combinations(range(3), r)]
    for S, T in itertools.product(coalitions, repeat=2):
        union, inter = tuple(sorted(set(S) | set(T))), tuple(sorted(set(S) & set(T)))
        assert W(union) + W(inter) >= W(S) + W(T) - 1e-12
    for selection in ["equal-sacrifice", "egalitarian", "max-sum", [1.0, 2.0, 3.0]]:
        res = cg.solve(game, options={"selection": selection})
        print(
            f"{res.selection:>24}: payoffs {np.round(res.payoffs, 6)}, agent {res.agent_payoff:.2e}"
        )
        assert res.success and game.action_names[res.action] == "build"
        assert abs(res.agent_payoff - W(())) < 1e-9  # no rent
    assert not res.payoffs_unique  # free riding: a continuum of splits
    verts = res.frontier_vertices
    print("frontier vertices:\n", verts)
    np.testing.assert_allclose(verts.sum(axis=1), W((0, 1, 2)) - W(()), atol=1e-9)
    print("no agent rent at any truthful equilibrium: agent payoff = W(empty) =", W(()))


if __name__ == "__main__":
    main()
