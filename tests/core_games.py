"""Random-game generators shared by the core tests."""

from __future__ import annotations

import numpy as np

import cage_games as cg


def random_game(
    rng: np.random.Generator,
    n: int,
    m: int,
    beta: float,
    *,
    spread: float = 1.0,
    kl: bool = False,
    caps: bool = False,
) -> cg.CommonAgencyGame:
    """Utilities on scales spread over ``10**(+-spread)``; optional KL agent and caps."""
    scale = 10 ** rng.uniform(-spread, spread, size=(m, 1))
    U = rng.normal(size=(m, n)) * scale
    if kl:
        p = np.exp(rng.normal(size=n) * 2)
        agent = cg.Agent.kl_regularized(p / p.sum(), beta)
    else:
        agent = cg.Agent(rng.normal(size=n), beta)
    principals = [
        cg.Principal(U[i], cap=float(np.ptp(U[i]) * 0.3) if caps and i % 2 == 0 else None)
        for i in range(m)
    ]
    return cg.CommonAgencyGame(agent, principals)
