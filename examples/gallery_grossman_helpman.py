"""Grossman and Helpman's "Protection for Sale": tariffs from the solver vs the formula.

Published result (Grossman and Helpman, 1994, "Protection for sale", American Economic Review
84(4), 833-850, Proposition 2): in a truthful equilibrium the government sets, in every sector i,

    t_i / (1 + t_i) = (I_i - alpha_L) / (a + alpha_L) * (z_i / e_i),

with I_i = 1 for an organised sector, alpha_L the population share of organised factor owners,
a the weight on welfare, z_i = output/imports and e_i the import demand elasticity: organised
sectors get protection, unorganised ones import subsidies. With demand A - p and supply p
(imports M = A - 2p, so z_i / e_i = 1/2 at every price) the right side is a constant and the
tariff is explicit. The model below is written with a product grid of tariffs and vectorised
callables; the continuous box is refined adaptively and must match the formula to 1e-4.

Run: ``python examples/gallery_grossman_helpman.py``
"""

import numpy as np

import cage_games as cg

# ---- the model (under 25 lines) ----
A, a = 4.0, 2.0  # demand intercept, government's weight on welfare
share = {"t1": 0.1, "t2": 0.2}  # population shares of the two factor owners


def surplus(t):  # consumer surplus + tariff revenue from one good, per capita
    return (A - 1 - t) ** 2 / 2 + t * (A - 2 * (1 + t))


def welfare(t1, t2):  # producer profits p^2/2 + surpluses
    return sum((1 + t) ** 2 / 2 + surplus(t) for t in (t1, t2))


def lobby(good):  # owners of the good's specific factor
    return lambda t1, t2: (
        (1 + {"t1": t1, "t2": t2}[good]) ** 2 / 2 + share[good] * (surplus(t1) + surplus(t2))
    )


def tariff_game(actions, organised, beta=0.0):
    government = cg.Agent(utility=lambda t1, t2: a * welfare(t1, t2), beta=beta)
    lobbies = [cg.Principal(utility=lobby(g), name=f"lobby_{g}") for g in organised]
    return cg.CommonAgencyGame(government, lobbies, actions=actions)


# ---- formula vs solver ----
def formula(organised):
    alpha_l = sum(share[g] for g in organised)
    ratio = {g: ((g in organised) - alpha_l) / (a + alpha_l) * 0.5 for g in share}
    return {g: r / (1 - r) for g, r in ratio.items()}


def main() -> None:
    grid = cg.ActionGrid(t1=np.linspace(-0.3, 0.7, 101), t2=np.linspace(-0.3, 0.7, 101))
    box = cg.ContinuousActions(t1=(-0.3, 0.7), t2=(-0.3, 0.7))
    for organised in [("t1",), ("t1", "t2")]:
        want = formula(organised)
        on_grid = cg.solve(tariff_game(grid, organised))
        refined = cg.solve(tariff_game(box, organised))
        print(f"organised sectors {organised}:")
        for g in share:
            print(
                f"  {g}: formula {want[g]:+.6f}  101x101 grid {on_grid.action_coords[g]:+.6f}  "
                f"refined box {refined.action_coords[g]:+.6f}"
            )
            assert abs(on_grid.action_coords[g] - want[g]) <= 0.005 + 1e-12
            assert abs(refined.action_coords[g] - want[g]) < 1e-4
        assert refined.success, refined.message
        print(
            f"  refined over {len(refined.refinement)} grids, last {refined.game.n_actions} points"
        )
        # The organised sector is protected, the unorganised one subsidised (I_i - alpha_L < 0).
        assert want["t1"] > 0 and (want["t2"] > 0) == ("t2" in organised)
    # A quantal government (beta > 0): the mean tariff is pulled towards the box's centre, and
    # the payoffs converge under refinement (cell-volume reference weights).
    quantal = cg.solve(tariff_game(box, ("t1",), beta=0.05))
    print("beta = 0.05: mean tariffs", {k: round(v, 4) for k, v in quantal.mean_action.items()})
    print(f"  {quantal.message}")
    assert quantal.success


if __name__ == "__main__":
    main()
