"""Solver benchmark: speed table, Newton vs diagonalization, robustness on 1000 random games.

Run ``python benchmarks/solver.py`` (``--quick`` for a smaller grid). Every ratio compares
methods on the same games in the same process. Timings are medians of wall-clock time per solve.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from tqdm import tqdm

import cage_games as cg


def llm_like_game(rng: np.random.Generator, n: int, m: int, beta: float) -> cg.CommonAgencyGame:
    """KL agent with a peaked reference (log-normal logits), standard-normal rewards."""
    logits = rng.normal(size=n) * 2.0
    p0 = np.exp(logits - logits.max())
    agent = cg.Agent.kl_regularized(p0 / p0.sum(), beta)
    return cg.CommonAgencyGame(agent, [cg.Principal(rng.normal(size=n)) for _ in range(m)])


def timed(game, method, **kw):
    t = time.perf_counter()
    res = cg.solve(game, method=method, **kw)
    return time.perf_counter() - t, res


def speed_table(ns, ms, betas, reps, gs_max_iter, diag_max_n=100):
    print(
        "## Median time per solve (ms) and worst residual; Gauss-Seidel capped at "
        f"{gs_max_iter} sweeps; diagonalization (one game, the first of each cell) for "
        f"n <= {diag_max_n}, with its policy distance to Newton's answer"
    )
    print(
        f"{'n':>6} {'m':>2} {'beta':>5} | {'newton ms':>10} {'nit':>4} {'residual':>9} | "
        f"{'g-s ms':>9} {'sweeps':>6} {'residual':>9} {'ok':>3} | {'g-s/newton':>10} | "
        f"{'diag ms':>8} {'|pi-pi_N|':>9} {'diag/newton':>11}"
    )
    rng = np.random.default_rng(0)
    cg.solve(llm_like_game(np.random.default_rng(99), 5, 2, 1.0), "diagonalization")  # warm-up
    for n in ns:
        for m in ms:
            for beta in betas:
                rows = {"newton": [], "gauss-seidel": []}
                count = reps if n < 10000 else max(1, reps - 2)
                games = [llm_like_game(rng, n, m, beta) for _ in range(count)]
                first = games[0]
                for game in games:
                    rows["newton"].append(timed(game, "newton"))
                    rows["gauss-seidel"].append(timed(game, "gauss-seidel", max_iter=gs_max_iter))
                tn = np.median([t for t, _ in rows["newton"]]) * 1e3
                tg = np.median([t for t, _ in rows["gauss-seidel"]]) * 1e3
                rn = max(r.residual for _, r in rows["newton"])
                rg = max(r.residual for _, r in rows["gauss-seidel"])
                itn = int(np.median([r.nit for _, r in rows["newton"]]))
                itg = int(np.median([r.nit for _, r in rows["gauss-seidel"]]))
                okg = sum(r.success for _, r in rows["gauss-seidel"])
                assert all(r.success for _, r in rows["newton"]), (n, m, beta)
                diag = ""
                if n <= diag_max_n:
                    td, rd = timed(first, "diagonalization", max_iter=500)
                    dist = float(np.max(np.abs(rd.policy - rows["newton"][0][1].policy)))
                    t0 = rows["newton"][0][0]
                    diag = f" | {td * 1e3:>8.1f} {dist:>9.1e} {td / t0:>10.0f}x"
                print(
                    f"{n:>6} {m:>2} {beta:>5} | {tn:>10.2f} {itn:>4} {rn:>9.1e} | "
                    f"{tg:>9.2f} {itg:>6} {rg:>9.1e} {okg:>2}/{count} | {tg / tn:>10.1f}" + diag
                )


def versus_diagonalization(reps):
    print("\n## Newton vs diagonalization (cvxpy best responses), n = 100, m = 3, same games")
    print(
        f"{'beta':>5} | {'newton ms':>10} | {'diag ms':>10} {'sweeps':>6} | "
        f"{'max |pi diff|':>13} | {'speed-up':>8}"
    )
    rng = np.random.default_rng(1)
    for beta in (0.05, 1.0):
        tn, td, diffs, sweeps = [], [], [], []
        for _ in range(reps):
            game = llm_like_game(rng, 100, 3, beta)
            a, ra = timed(game, "newton")
            b, rb = timed(game, "diagonalization", max_iter=500)
            tn.append(a)
            td.append(b)
            sweeps.append(rb.nit)
            diffs.append(float(np.max(np.abs(ra.policy - rb.policy))))
        n_ms, d_ms = np.median(tn) * 1e3, np.median(td) * 1e3
        print(
            f"{beta:>5} | {n_ms:>10.2f} | {d_ms:>10.1f} {int(np.median(sweeps)):>6} | "
            f"{max(diffs):>13.1e} | {d_ms / n_ms:>7.0f}x"
        )


def robustness(n_games, caps, method="newton", certify_every=0):
    """Solve seeded random games; every ``certify_every``-th answer also gets the independent
    Nash-gap certificate (cvxpy + dual bound)."""
    rng = np.random.default_rng(2026)
    ok, nits, worst, times, gaps = 0, [], 0.0, [], []
    for k in tqdm(range(n_games), desc="random games", leave=False, disable=None):
        n = int(rng.integers(2, 1001))
        m = int(rng.integers(1, 9))
        beta = float(10 ** rng.uniform(-2, 1))
        scale = 10 ** rng.uniform(-1, 2, size=(m, 1))
        U = rng.normal(size=(m, n)) * scale
        if rng.random() < 0.5:
            logits = rng.normal(size=n) * 3
            p = np.exp(logits - logits.max())
            agent = cg.Agent.kl_regularized(p / p.sum(), beta)
        else:
            agent = cg.Agent(rng.normal(size=n) * 10 ** rng.uniform(-1, 1), beta)
        principals = [
            cg.Principal(U[i], cap=float(0.3 * np.ptp(U[i])) if caps and i % 2 == 0 else None)
            for i in range(m)
        ]
        game = cg.CommonAgencyGame(agent, principals)
        t, res = timed(game, method)
        times.append(t)
        ok += res.success
        nits.append(res.nit)
        worst = max(worst, res.residual)
        if certify_every and k % certify_every == 0:
            gaps.append(cg.nash_gap(game, res.transfers).total)
    label = ("capped (half the principals, caps = 30% of range)" if caps else "uncapped") + (
        f", {method}"
    )
    print(
        f"{label:>52}: {ok}/{n_games} succeeded ({100 * ok / n_games:.1f}%), "
        f"Newton steps median {np.median(nits):.0f} / p95 {np.percentile(nits, 95):.0f} / "
        f"max {max(nits)}, worst residual {worst:.1e}, median {np.median(times) * 1e3:.1f} ms"
    )
    if gaps:
        print(
            f"{'':>52}  independent Nash gap on {len(gaps)} of them (every {certify_every}th): "
            f"max {max(gaps):.1e}, median {np.median(gaps):.1e}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small grid, 200 robustness games")
    args = ap.parse_args()
    if args.quick:
        speed_table([10, 1000, 50000], [1, 4], [0.05, 1.0], reps=3, gs_max_iter=300)
        versus_diagonalization(reps=2)
        print(
            "\n## Robustness: random games, n in [2, 1000], m in [1, 8], beta in [0.01, 10], "
            "utilities over 3 orders of magnitude"
        )
        robustness(200, caps=False)
    else:
        speed_table(
            [10, 100, 1000, 10000, 50000], [1, 2, 4, 8], [0.05, 1.0], reps=5, gs_max_iter=500
        )
        versus_diagonalization(reps=5)
        print(
            "\n## Robustness: random games, n in [2, 1000], m in [1, 8], beta in [0.01, 10], "
            "utilities over 3 orders of magnitude"
        )
        robustness(1000, caps=False, certify_every=20)
        robustness(300, caps=True, method="auto", certify_every=20)


if __name__ == "__main__":
    main()
