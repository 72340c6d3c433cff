"""``cage solve GAME.json``: the equilibrium as a readable table, or JSON with ``--json``."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "solve",
        help="compute the equilibrium of a game file",
        description="Compute the equilibrium of a JSON game file (format: docs/cli.rst) and "
        "certify it with an independent Nash gap.",
    )
    p.add_argument("game", help="path to a JSON game file")
    p.add_argument(
        "--method",
        default="auto",
        choices=[
            "auto",
            "newton",
            "gauss-seidel",
            "diagonalization",
            "menu-auction",
            "quantal-limit",
        ],
    )
    p.add_argument("--tol", type=float, default=None, help="residual tolerance (default 1e-10)")
    p.add_argument("--max-iter", type=int, default=None)
    p.add_argument(
        "--no-certificate",
        action="store_true",
        help="skip the independent Nash-gap certificate (cvxpy)",
    )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    import cage_games as cg

    game = cg.load_game(args.game)
    res = cg.solve(game, method=args.method, tol=args.tol, max_iter=args.max_iter)
    if args.no_certificate:
        gap = None
    elif game.beta == 0:  # menu auction: each principal's best-deviation gain, by enumeration
        gap = float(np.sum(res.nash_gaps))
    else:
        gap = cg.nash_gap(game, res.transfers).total
    labels = list(game.action_names or [f"a{j}" for j in range(game.n_actions)])
    if args.json:
        out = {
            "success": res.success,
            "status": res.status,
            "message": res.message,
            "method": res.method,
            "nit": res.nit,
            "residual": res.residual,
            "nash_gap": gap,
            "actions": labels,
            "policy": res.policy.tolist(),
            "principals": [
                {
                    "name": name,
                    "threshold": float(c),
                    "payoff": float(u),
                    "transfers": t.tolist(),
                    "expected_transfer": float(t @ res.policy),
                }
                for name, c, u, t in zip(
                    game.names, res.thresholds, res.payoffs, res.transfers, strict=True
                )
            ],
            "agent_payoff": res.agent_payoff,
        }
        json.dump(out, sys.stdout, indent=2)
        print()
        return 0 if res.success else 1
    w = max(8, *(len(s) for s in labels))
    cols = [f"{n[:12]:>12}" for n in game.names]
    print(f"{'action':<{w}}  {'policy':>10}  " + "  ".join(cols) + "   (transfers)")
    order = np.argsort(-res.policy)
    shown = order[: min(20, order.size)]
    for j in shown:
        row = "  ".join(f"{res.transfers[i, j]:12.6g}" for i in range(game.n_principals))
        print(f"{labels[j]:<{w}}  {res.policy[j]:10.6f}  {row}")
    if order.size > shown.size:
        print(f"... {order.size - shown.size} more actions (use --json for all)")
    print()
    print(f"{'principal':<12} {'threshold':>12} {'payoff':>12} {'E[transfer]':>12}")
    for name, c, u, t in zip(game.names, res.thresholds, res.payoffs, res.transfers, strict=True):
        print(f"{name[:12]:<12} {c:12.6g} {u:12.6g} {t @ res.policy:12.6g}")
    print(f"{'agent':<12} {'':>12} {res.agent_payoff:12.6g}")
    print()
    print(f"method {res.method}, {res.nit} iterations, residual {res.residual:.2e}: {res.message}")
    if gap is not None:
        how = "best deviations, enumerated" if game.beta == 0 else "independent certificate, cvxpy"
        print(f"Nash gap ({how}): {gap:.2e}")
    return 0 if res.success else 1
