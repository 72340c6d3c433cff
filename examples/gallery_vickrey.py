"""A private-good auction as a menu auction: Vickrey payoffs.

Published result (Bernheim and Whinston, 1986, "Menu auctions, resource allocation, and
economic influence", Quarterly Journal of Economics 101(1), 1-31, section on the private-good
auction): when the auctioneer allocates one object and each bidder values only its own
receipt, the truthful equilibrium gives the object to the highest valuation and the winner
pays the second-highest valuation: the payoffs of Vickrey's (1961, "Counterspeculation,
auctions, and competitive sealed tenders", Journal of Finance 16(1), 8-37) second-price
auction: winner theta_(1) - theta_(2), everybody else 0.

Run: ``python examples/gallery_vickrey.py``
"""

import numpy as np

import cage_games as cg


def auction(values, beta=0.0):
    m = len(values)
    # action k = "bidder k gets the object"; the auctioneer is indifferent (v = 0).
    bidders = [cg.Principal(np.eye(m)[k] * values[k], name=f"bidder_{k}") for k in range(m)]
    return cg.CommonAgencyGame(cg.Agent(np.zeros(m), beta=beta), bidders)


def main() -> None:
    rng = np.random.default_rng(1961)
    for trial in range(20):
        values = rng.uniform(0, 10, size=int(rng.integers(2, 7)))
        res = cg.solve(auction(values))
        order = np.argsort(values)[::-1]
        vickrey = np.zeros(values.size)
        vickrey[order[0]] = values[order[0]] - values[order[1]]
        assert res.action == order[0] and res.payoffs_unique
        np.testing.assert_allclose(res.payoffs, vickrey, atol=1e-9)
        np.testing.assert_allclose(res.transfers[order[0], order[0]], values[order[1]], atol=1e-9)
        if trial < 3:
            pay = np.round(res.payoffs, 3)
            print(f"values {np.round(values, 3)} -> winner {res.action}, payoffs {pay}")
    # The quantal auction approaches the same payoffs as beta -> 0.
    values = np.array([7.0, 4.0, 1.0])
    path = cg.zero_temperature_path(auction(values), betas=[1.0, 0.1, 0.01, 0.001])
    print(path.table())
    np.testing.assert_allclose(path.payoffs[-1], [3.0, 0.0, 0.0], atol=0.02)
    print("20 random auctions: the highest value wins and pays the second-highest")


if __name__ == "__main__":
    main()
