"""Solve a two-objective game three ways and certify the answer independently.

Run: python examples/solve_and_certify.py
"""

import numpy as np

import cage_games as cg

rng = np.random.default_rng(0)
n = 40
logits = rng.normal(size=n) * 2
p0 = np.exp(logits - logits.max())
agent = cg.Agent.kl_regularized(p0 / p0.sum(), beta=0.3)
game = cg.CommonAgencyGame(
    agent,
    [
        cg.Principal(rng.normal(size=n), name="helpful"),
        cg.Principal(rng.normal(size=n), name="harmless"),
    ],
)

results = {m: cg.solve(game, method=m) for m in ("newton", "gauss-seidel", "diagonalization")}
print(results["newton"])
for name, res in results.items():
    diff = np.max(np.abs(res.policy - results["newton"].policy))
    print(
        f"{name:>16}: success={res.success} nit={res.nit:4d} residual={res.residual:.1e} "
        f"max|pi - pi_newton|={diff:.1e}"
    )
gap = cg.nash_gap(game, results["newton"].transfers)
print(f"Nash gap of Newton's equilibrium (cvxpy + dual bound): {gap.total:.2e}")
assert gap.total < 1e-8
pi = results["newton"].policy
print(f"KL(pi* || p0) = {np.sum(pi * np.log(pi / (p0 / p0.sum()))):.4f} nats")
