"""``cage solve GAME.json``: the equilibrium as a readable table, or JSON with ``--json``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cage_games.certificates import NashGap


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "solve",
        help="compute the equilibrium of a game file",
        description="Compute the equilibrium of a JSON game file (format: docs/cli.rst) and "
        "certify it with an independent Nash gap.",
    )
    p.add_argument("game", help="path to a JSON game file, or - to read it from standard input")
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
        help="skip the Nash-gap certificate",
    )
    p.add_argument(
        "--cross-check",
        action="store_true",
        help="also certify every uncapped principal with the conic program (cvxpy), an "
        "independent method; by default it runs only on games of at most 100 actions",
    )
    p.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="seconds allowed to each conic program of the cross-check (default 60 with "
        "--cross-check, 10 for the automatic one on small games)",
    )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    import cage_games as cg

    if args.time_limit is not None and not args.time_limit > 0:
        raise ValueError(f"--time-limit must be > 0 seconds, got {args.time_limit}")
    game = cg.load_game(args.game)
    cert = None
    res = cg.solve(game, method=args.method, tol=args.tol, max_iter=args.max_iter)
    if args.no_certificate:
        gap = None
    elif game.beta == 0:  # menu auction: each principal's best-deviation gain, by enumeration
        gap = float(np.sum(res.nash_gaps))
    else:
        from cage_games.certificates import CONIC_AUTO_ACTIONS

        cross = True if args.cross_check else None
        if args.cross_check and game.n_actions > CONIC_AUTO_ACTIONS:
            print(
                f"cage: cross-checking {game.n_principals} best responses with the conic "
                f"program ({game.n_actions} actions, at most {args.time_limit or 60:g} s each)...",
                file=sys.stderr,
                flush=True,
            )
        cert = cg.nash_gap(game, res.transfers, cross_check=cross, time_limit=args.time_limit)
        gap = cert.total
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
            "certificate": _certificate_json(cert),
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
        print(f"Nash gap ({_certificate_words(cert)}): {gap:.2e}")
    return 0 if res.success else 1


def _certificate_words(cert: NashGap | None) -> str:
    """How the gap was certified, in words."""
    if cert is None:
        return "best deviations, enumerated"
    words = "threshold search, certified bracket"
    if cert.cross_checked:
        verdict = {True: "agrees", False: "DISAGREES (please report)", None: "inconclusive"}
        words += (
            f"; conic cross-check on {cert.cross_checked} principal(s) {verdict[cert.consistent]}"
        )
    else:
        words += "; no conic cross-check (--cross-check runs it)"
    return words


def _certificate_json(cert: NashGap | None) -> dict | None:
    """The certificate's summary for ``--json``."""
    if cert is None:
        return None
    return {
        "method": "threshold",
        "per_principal": cert.per_principal.tolist(),
        "cross_checked": cert.cross_checked,
        "consistent": cert.consistent,
    }
