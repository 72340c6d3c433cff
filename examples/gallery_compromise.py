"""A menu auction with a compromise action: the efficient compromise wins.

Published result (Bernheim and Whinston, 1986, "Menu auctions, resource allocation, and
economic influence", Quarterly Journal of Economics 101(1), 1-31, Theorem 2 and their
discussion of compromise): truthful equilibria implement the efficient action even when it is
no principal's favourite, and when the marginal contributions b_i = W(N) - W(N minus i) are
feasible every principal nets exactly b_i.

Two lobbies and three policies: L (lobby 1's favourite, worth 5 to it), R (lobby 2's, worth 4)
and a compromise C worth 3 to each. The agent is indifferent (v = 0). W(N) = 6 at C,
W({1}) = 5, W({2}) = 4, so b = (6 - 4, 6 - 5) = (2, 1). Truthful schedules tau_i = (u_i - b_i)_+
pay 1 + 2 = 3 on C, 5 - 2 = 3 on L and 4 - 1 = 3 on R: the agent is indifferent, takes the
efficient C, and each lobby pays just enough that the other's favourite does not win.

Run: ``python examples/gallery_compromise.py``
"""

import numpy as np

import cage_games as cg


def main() -> None:
    policies = ("L", "C", "R")
    game = cg.CommonAgencyGame(
        cg.Agent([0.0, 0.0, 0.0], beta=0.0),
        [
            cg.Principal([5.0, 3.0, 0.0], name="lobby_1"),
            cg.Principal([0.0, 3.0, 4.0], name="lobby_2"),
        ],
        action_names=policies,
    )
    res = cg.solve(game)
    print(res)
    # The published prediction, computed from its definition (not from the solver):
    u = game.utilities
    W = {s: max(u[list(s)].sum(axis=0)) if s else 0.0 for s in [(), (0,), (1,), (0, 1)]}
    b = np.array([W[(0, 1)] - W[(1,)], W[(0, 1)] - W[(0,)]])
    assert policies[res.action] == "C", "the efficient compromise must be chosen"
    assert res.payoffs_unique
    np.testing.assert_allclose(res.payoffs, b, atol=1e-12)
    np.testing.assert_allclose(res.transfers[:, 1], u[:, 1] - b, atol=1e-12)  # truthful on C
    assert res.agent_payoff == W[(0, 1)] - b.sum()
    # Every principal's best deviation (exact oracle) gains nothing.
    cert = cg.beta0_certificate(game, res.transfers, res.action)
    assert cert.residual <= 1e-12
    # The quantal agent converges to the same answer as beta -> 0.
    path = cg.zero_temperature_path(game, betas=[0.3, 0.03, 0.003])
    print(path.table())
    assert path.efficient_mass[-1] > 0.99
    np.testing.assert_allclose(path.payoffs[-1], b, atol=0.05)
    print("compromise C chosen; payoffs = marginal contributions", b.tolist())


if __name__ == "__main__":
    main()
