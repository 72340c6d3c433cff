"""Sequential common agency on a two-token decoding tree: whole-sequence versus per-token play.

A toy language model answers a request in two tokens. Its base distribution ``p0`` gives the
agent's reward ``beta * log p0(token | prefix)`` on every edge (the KL-regularised agent). Two
principals, ``warm`` and ``brief``, score tokens; ``brief`` only cares about how the answer
*ends*, so a per-token (myopic) equilibrium cannot see its stakes at the first token, while
the backward-induction equilibrium prices them in through continuation values.

Run::

    python examples/sequential_tree.py [OUTPUT_DIR]

Prints both equilibria and writes ``sequential_outcomes.png`` to OUTPUT_DIR (default: a new
temporary directory). Nothing is shown on screen.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import networkx as nx
import numpy as np

from cage_games.sequential import SequentialGame, compare_myopic

BETA = 0.5
# prefix -> [(token, p0(token | prefix), warm reward, brief reward)]
TREE = {
    "": [("Sure", 0.5, 1.0, 0.0), ("No", 0.3, -1.0, 0.0), ("Well", 0.2, 0.0, 0.0)],
    "Sure": [("!", 0.3, 1.0, 0.5), (", here is a long answer", 0.7, 0.5, -2.0)],
    "No": [(".", 0.8, 0.0, 2.0), (", sorry, let me explain", 0.2, 0.5, -2.0)],
    "Well": [("...", 0.5, 0.0, 0.5), (", it depends; let me think", 0.5, 0.0, -2.0)],
}


def build_graph() -> nx.DiGraph:
    g = nx.DiGraph()
    for prefix, options in TREE.items():
        for token, p0, warm, brief in options:
            sep = "" if not prefix or token[0] in "!.,;" else " "
            g.add_edge(
                prefix or "<start>",
                prefix + sep + token,
                agent=BETA * np.log(p0),
                warm=warm,
                brief=brief,
            )
    return g


def base_outcomes(game: SequentialGame) -> np.ndarray:
    """Terminal probabilities under the base model alone (``p0`` along each path)."""
    probs = {game.root: 1.0}
    for s in game.states:
        for t, v in zip(game.children[s], game.agent_rewards[s], strict=True):
            probs[t] = probs[s] * np.exp(v / BETA)
    return np.array([probs[t] for t in game.terminals])


def main(out_dir: Path) -> None:
    game = SequentialGame(build_graph(), beta=BETA, principal_key=("warm", "brief"))
    print(game)
    cmp = compare_myopic(game)
    print(cmp.sequential)
    print()
    print(cmp)
    print()
    for label, res in (("sequential", cmp.sequential), ("myopic", cmp.myopic)):
        pay = np.round(res.transfers["<start>"], 4).tolist()
        print(f"{label:>10} transfers at the first token (warm, brief): {pay}")

    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.8), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(cmp.terminals))
    ax.bar(x - 0.27, base_outcomes(game), 0.27, label="base model p0")
    ax.bar(x, cmp.myopic_outcomes, 0.27, label="per-token equilibrium")
    ax.bar(x + 0.27, cmp.sequential_outcomes, 0.27, label="whole-sequence equilibrium")
    ax.set_xticks(x, [str(t) for t in cmp.terminals], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("probability of the answer")
    ax.legend(fontsize=8)
    path = out_dir / "sequential_outcomes.png"
    fig.savefig(path, dpi=110)
    print("plot written to", path)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="cage_"))
    target.mkdir(parents=True, exist_ok=True)
    main(target)
