"""Many games at once with the batched torch backend, checked against the numpy solver.

A decoding step of a language model with two alignment objectives is a batch of games: one row
per sequence, the candidate tokens as actions, the base model as a KL-regularised agent and
one principal per objective (weight times normalised reward). We solve four such rows in one
call with :func:`cage_games.torch.solve_batch_kl`, print how the equilibrium moves each row's
next-token distribution, check every row against :func:`cage_games.solve`, and run the same
batch with a fixed number of iterations (the mode that never reads a tensor on the host).

Run: ``python examples/torch_batch.py`` (a second or two; needs torch).
"""

from __future__ import annotations

import numpy as np
import torch

import cage_games as cg
from cage_games.torch import solve_batch_kl


def main() -> float:
    gen = torch.Generator().manual_seed(0)
    B, n, beta = 4, 12, 1.0
    logits = 2.0 * torch.randn(B, n, generator=gen, dtype=torch.float64)
    rewards = torch.randn(B, 2, n, generator=gen, dtype=torch.float64)  # 2 objectives
    rewards = (rewards - rewards.mean(-1, keepdim=True)) / rewards.std(-1, keepdim=True)
    weights = torch.tensor([[1.0, 1.0], [3.0, 0.5], [0.5, 3.0], [0.0, 4.0]], dtype=torch.float64)
    utilities = weights.unsqueeze(-1) * rewards
    # candidates: the base model's top 8 tokens in every row (True = allowed)
    mask = torch.zeros(B, n, dtype=torch.bool)
    mask.scatter_(1, logits.topk(8, dim=-1).indices, True)

    sol = solve_batch_kl(logits, utilities, beta, mask=mask)
    print(sol)
    p0 = torch.softmax(logits.masked_fill(~mask, -torch.inf), dim=-1)
    kl = (sol.policy * (sol.log_policy - p0.log()).nan_to_num(0.0)).sum(-1)
    for b in range(B):
        w = weights[b].tolist()
        print(
            f"row {b}: weights {w}, thresholds {np.round(sol.thresholds[b].numpy(), 3)}, "
            f"KL(pi || p0) = {kl[b]:.4f} nats, residual {sol.residual[b]:.1e}"
        )

    # the same games, one at a time, with the numpy solver
    worst = 0.0
    for b in range(B):
        support = mask[b].numpy()
        v = np.where(support, beta * torch.log(p0[b]).numpy(), 0.0)
        game = cg.CommonAgencyGame(
            cg.Agent(v, beta=beta, support=support),
            [cg.Principal(utilities[b, i].numpy()) for i in range(2)],
        )
        ref = cg.solve(game, method="newton")
        worst = max(worst, float(np.abs(ref.policy - sol.policy[b].numpy()).max()))
    print(f"largest policy difference from cage_games.solve: {worst:.1e}")

    fixed = solve_batch_kl(logits, utilities, beta, mask=mask, fixed_iters=15, check_inputs=False)
    same = float((fixed.policy - sol.policy).abs().max())
    print(f"fixed_iters=15 (no host reads): success {fixed.success.tolist()}, |dpi| {same:.1e}")
    assert worst <= 1e-9 and bool(sol.success.all()) and bool(fixed.success.all())
    return worst


if __name__ == "__main__":
    main()
