"""Menu auctions (beta = 0): truthful equilibria, their payoff polytope, the beta -> 0 path.

Run::

    python examples/menu_auction.py [OUTPUT_DIR]

Prints three auctions and writes ``zero_temperature_path.png`` to OUTPUT_DIR (default: a new
temporary directory). Nothing is shown on screen.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

import cage_games as cg
from cage_games import solve_menu_auction, zero_temperature_path


def game(v, utilities, names, beta=0.0):
    principals = [cg.Principal(u, name=n) for u, n in zip(utilities, names, strict=True)]
    return cg.CommonAgencyGame(cg.Agent(v, beta=beta), principals)


def main(out_dir: Path) -> None:
    print("== 1. Second-price auction: two bidders for two different actions ==")
    auction = game([0.0, 0.0], [[3.0, 0.0], [0.0, 2.0]], ["alice", "bob"])
    res = solve_menu_auction(auction)
    print(res)
    print(res.coalition_table())

    print("\n== 2. Public good: both principals want action 0, the agent prefers action 1 ==")
    public = game([0.0, 1.0], [[2.0, 0.0], [2.0, 0.0]], ["alice", "bob"])
    res = solve_menu_auction(public)
    print(res.message)
    print("frontier vertices:", np.round(res.frontier_vertices, 9).tolist())
    for selection in ("equal-sacrifice", "egalitarian", "max-sum", [2.0, 1.0]):
        r = solve_menu_auction(public, selection=selection)
        print(
            f"  selection {r.selection!s:>17}: payoffs {np.round(r.payoffs, 6).tolist()}, "
            f"paid on a* {np.round(r.transfers[:, r.efficient_action], 6).tolist()}"
        )

    print("\n== 3. Three principals: the quantal equilibrium as beta -> 0 ==")
    rng = np.random.default_rng(5)
    three = game(rng.normal(size=5), rng.normal(size=(3, 5)), ["p0", "p1", "p2"], beta=1.0)
    path = zero_temperature_path(
        three, betas=[1.0, 0.1, 0.03, 0.01, 0.003], plot=out_dir / "zero_temperature_path.png"
    )
    print(path.table())
    print("plot written to", out_dir / "zero_temperature_path.png")


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="cage_"))
    target.mkdir(parents=True, exist_ok=True)
    main(target)
