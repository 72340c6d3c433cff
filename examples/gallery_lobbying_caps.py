"""Lobbying with contribution caps: a cap can hand the policy to the smaller interest.

Benchmark (Bernheim and Whinston, 1986, "Menu auctions, resource allocation, and economic
influence", QJE 101(1), 1-31; Grossman and Helpman, 2001, *Special Interest Politics*, MIT
Press, ch. 8): without caps the policy maker picks the policy that maximises its own utility
plus the lobbies' stakes, and the winning lobby pays what the losers could add.

With a cap (a campaign-finance limit) below the rival's stake the answer changes; it is derived
here and certified by the exact beta = 0 oracle, not taken from a paper: if lobby H (stake 3 in
policy h) may give at most c < 2 and lobby L (stake 2 in policy l) is uncapped, L wins and pays
exactly c. (Pay less and H outbids it; pay more and L wastes money.) The allocative effect, a
cap handing the prize to the lower valuation, is the one Che and Gale (1998, "Caps on
political lobbying", American Economic Review 88(3), 643-651) found for all-pay contests.
The example sweeps the cap and also shows the limit of the quantal equilibria this answer
comes from.

Run: ``python examples/gallery_lobbying_caps.py``
"""

import numpy as np

import cage_games as cg


def lobbying(cap, beta=0.0):
    return cg.CommonAgencyGame(
        cg.Agent([0.0, 0.0], beta=beta),
        [cg.Principal([3.0, 0.0], name="H", cap=cap), cg.Principal([0.0, 2.0], name="L")],
        action_names=("h", "l"),
    )


def main() -> None:
    uncapped = cg.solve(lobbying(None))
    assert uncapped.action == 0 and np.allclose(uncapped.payoffs, [1.0, 0.0])  # BW: H pays 2
    print("no cap: policy h, payoffs", uncapped.payoffs.tolist())
    for cap in [0.5, 1.0, 1.5, 1.99, 2.5]:
        res = cg.solve(lobbying(cap))
        cert = cg.beta0_certificate(lobbying(cap), res.transfers, res.action, cap_tol=1e-9 * 3)
        policy = res.game.action_names[res.action]
        print(
            f"cap {cap:5.2f}: policy {policy}, payoffs {np.round(res.payoffs, 9).tolist()}, "
            f"method {res.method}, largest deviation gain {cert.gaps.max():.1e}"
        )
        assert res.success and cert.residual <= 1e-9 * 3
        if cap < 2.0:  # the cap binds: L wins paying exactly the cap
            assert policy == "l"
            np.testing.assert_allclose(res.payoffs, [0.0, 2.0 - cap], atol=1e-9)
            np.testing.assert_allclose(res.transfers[1, 1], cap, atol=1e-9)
        else:  # it does not bind: the uncapped menu auction
            assert policy == "h" and res.method == "menu-auction"
    # Where the beta = 0 answer comes from: the quantal equilibria as beta -> 0.
    for beta in [0.1, 0.01, 0.001]:
        q = cg.solve(lobbying(1.0, beta=beta))
        print(f"beta {beta:6.3f}: P(l) = {q.policy[1]:.4f}, L pays {q.transfers[1, 1]:.4f}")
    assert q.policy[1] > 0.99 and abs(q.transfers[1, 1] - 1.0) < 0.01


if __name__ == "__main__":
    main()
