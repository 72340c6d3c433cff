"""Certificate and regret-accounting benchmark (issue 11): ratios against the solve, same run.

Run ``python benchmarks/certificate.py`` (``--quick`` for smaller sizes). Sections:

1. ``cg.nash_gap`` (the threshold-search certificate) against ``cg.solve`` on the same game:
   median wall-clock times and their ratio; the bar is ``nash_gap <= 20 x solve`` at
   ``n = 2000, m = 4``, and a certificate at ``n = 200 000``. The conic cross-check is timed
   where it is cheap enough to run (it had not finished in 120 s at ``n = 200 000``).
2. ``cage learn``'s regret accounting after the rounds: the prefix-sum method against the
   per-threshold evaluation it replaced, on the same rounds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import cage_games as cg
from cage_games.learning import dynamics
from cage_games.learning._kernel import Kernel


def game_for(rng: np.random.Generator, n: int, m: int, beta: float, caps: bool):
    """KL agent with a peaked reference; standard-normal rewards; every other principal capped."""
    logits = rng.normal(size=n) * 2.0
    p0 = np.exp(logits - logits.max())
    agent = cg.Agent.kl_regularized(p0 / p0.sum(), beta)
    principals = [
        cg.Principal(u, cap=(0.5 if caps and i % 2 == 0 else None))
        for i, u in enumerate(rng.normal(size=(m, n)))
    ]
    return cg.CommonAgencyGame(agent, principals)


def median_time(fn, reps):
    times, out = [], None
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def certificate_table(sizes, reps):
    print("## nash_gap (threshold search) vs solve, median of", reps, "runs, same games")
    print(
        f"{'n':>7} {'m':>2} {'caps':>5} | {'solve ms':>9} {'gap ms':>9} {'ratio':>6} | "
        f"{'gap':>9} {'max bracket':>11} | {'conic ms':>9} {'agrees':>6}"
    )
    for n, m, caps in sizes:
        rng = np.random.default_rng(n + m)
        game = game_for(rng, n, m, 0.5, caps)
        ts, res = median_time(lambda g=game: cg.solve(g), reps)
        tg, gap = median_time(
            lambda g=game, r=res: cg.nash_gap(g, r.transfers, cross_check=False), reps
        )
        width = max(b.upper_bound - b.payoff for b in gap.best_responses)
        conic = "-"
        agrees = "-"
        if n <= 2000:
            tc, cg_gap = median_time(
                lambda g=game, r=res: cg.nash_gap(g, r.transfers, cross_check=True, time_limit=120),
                1,
            )
            conic = f"{1e3 * tc:9.1f}"
            agrees = str(cg_gap.consistent)
        print(
            f"{n:>7} {m:>2} {caps!s:>5} | {1e3 * ts:9.2f} {1e3 * tg:9.2f} {tg / ts:6.2f} | "
            f"{gap.total:9.1e} {width:11.1e} | {conic:>9} {agrees:>6}"
        )


def accounting_table(n, rounds, m, grid):
    print(
        f"## regret accounting after the rounds: {grid}-point threshold grid, T = {rounds}, "
        f"n = {n}, one principal"
    )
    rng = np.random.default_rng(0)
    game = game_for(rng, n, m, 0.5, caps=True)
    kernel = Kernel(game)
    played = rng.uniform(kernel.low, kernel.high, size=(rounds, m))
    cs = np.linspace(kernel.low[0], kernel.high[0], grid)
    t = time.perf_counter()
    fast = dynamics._hindsight_sums(kernel, 0, played, cs)
    t_fast = time.perf_counter() - t
    t = time.perf_counter()
    slow = dynamics._hindsight_sums_direct(kernel, 0, played, cs)
    t_slow = time.perf_counter() - t
    err = float(np.max(np.abs(fast - slow)) / np.max(np.abs(slow)))
    print(
        f"prefix sums {t_fast:.2f} s, per-threshold evaluation {t_slow:.2f} s, "
        f"ratio {t_slow / t_fast:.1f}x, max relative difference {err:.1e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        certificate_table([(200, 4, False), (2000, 4, True)], reps=3)
        accounting_table(500, 500, 2, 201)
    else:
        sizes = [
            (100, 4, False),
            (2000, 4, False),
            (2000, 4, True),
            (20_000, 4, True),
            (200_000, 4, True),
        ]
        certificate_table(sizes, reps=5)
        accounting_table(2000, 2000, 4, 201)


if __name__ == "__main__":
    main()
