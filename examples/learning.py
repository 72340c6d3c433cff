"""No-regret learning between two principals, compared with the equilibrium.

Two objectives pull the agent towards different actions. Each principal learns its transfer
threshold online (projected gradient ascent on the exact payoff derivative, then Hedge on a
grid); we print each principal's regret next to the learner's theoretical bound and how far
the time-averaged play is from the equilibrium computed by ``cage_games.solve``.

Run: ``python examples/learning.py [PLOT.png]`` (the plot goes to a temporary folder if no path
is given). Takes a few seconds.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

import cage_games as cg
from cage_games.learning import learn
from cage_games.solvers import solve


def main(plot_path: str | None = None) -> Path:
    game = cg.CommonAgencyGame(
        cg.Agent([-0.6, 0.4, -0.1, -0.1], beta=1.0),
        [
            cg.Principal([0.3, 1.2, 3.6, 0.2], name="a"),
            cg.Principal([3.4, 1.0, 0.3, 2.3], name="b"),
        ],
    )
    eq = solve(game)
    print(f"equilibrium thresholds {np.round(eq.thresholds, 4)}, policy {np.round(eq.policy, 4)}")
    rounds = 2000
    runs = {
        name: learn(game, name, rounds, seed=0, equilibrium=eq) for name in ("gradient", "hedge")
    }
    for name, res in runs.items():
        measured = res.linearized_regret if res.linearized_regret is not None else res.regret
        print(f"\n{name}, T = {rounds}")
        for i, who in enumerate(res.names):
            print(f"  {who}: regret {res.regret[i]:8.4f}   bounded quantity {measured[i]:8.4f}"
                  f"   bound {res.bound[i]:8.3f}")
        print(f"  TV(average policy, equilibrium) = {res.policy_distance:.2e}")
        print(f"  max |average transfer - equilibrium transfer| = "
              f"{np.round(res.transfer_distance, 4)}")
    path = Path(plot_path) if plot_path else Path(tempfile.mkdtemp()) / "learning.png"
    runs["gradient"].plot(path)
    print(f"\nplot: {path}")
    return path


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
