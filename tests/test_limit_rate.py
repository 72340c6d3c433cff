"""The rate of the zero-temperature limit (docs/menu_auction.rst, "What the limit costs").

One principal, stake Delta on action 0, an indifferent agent (v = 0, two actions): the
principal pays tau on action 0, keeps U(tau) = pi(tau) (Delta - tau) with
pi = 1 / (1 + exp(-tau / beta)). Its first-order condition gives, as beta -> 0,
mass off the efficient action p = beta / Delta (1 + o(1)), tau = beta log(Delta / beta) + o(beta)
and payoff shortfall Delta - U = beta (1 + log(Delta / beta)) + o(beta).
"""

from __future__ import annotations

import numpy as np
import pytest

import cage_games as cg


@pytest.mark.parametrize("delta", [0.5, 2.0, 10.0])
def test_one_principal_rate_matches_the_expansion(delta):
    game = cg.CommonAgencyGame(cg.Agent([0.0, 0.0], beta=1.0), [cg.Principal([delta, 0.0])])
    assert cg.solve(game.with_beta(0.0)).payoffs[0] == pytest.approx(delta)  # BW: pays nothing
    for beta in (1e-3 * delta, 1e-4 * delta, 1e-5 * delta):
        res = cg.solve(game.with_beta(beta))
        off = 1.0 - res.policy[0]
        shortfall = delta - res.payoffs[0]
        assert off == pytest.approx(beta / delta, rel=0.01)
        assert shortfall == pytest.approx(beta * (1 + np.log(delta / beta)), rel=0.01)


def test_two_principals_same_order():
    # Principal p (stake 2 on action 0) against q (stake 1 on action 1): Delta = 1. The mass
    # off a* is beta / Delta to first order; the shortfall is of order beta log(1 / beta).
    game = cg.CommonAgencyGame(
        cg.Agent([0.0, 0.0, 0.0], beta=1.0),
        [cg.Principal([2.0, 0.0, 0.0]), cg.Principal([0.0, 1.0, 0.0])],
    )
    auction = cg.solve(game.with_beta(0.0))
    for beta in (1e-3, 1e-4, 1e-5):
        res = cg.solve(game.with_beta(beta))
        assert 1.0 - res.policy[0] == pytest.approx(beta, rel=0.01)
        ratio = (auction.payoffs[0] - res.payoffs[0]) / (beta * np.log(1.0 / beta))
        assert 0.8 < ratio < 1.2
