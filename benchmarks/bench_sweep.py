"""Sweep throughput: prints figures, asserts nothing.

For a sweep file (default examples/sweep_small.toml) this runs the sweep three times in a fresh
folder and prints:

* points per minute without synthesis (estimate + quality for every point);
* points per minute with synthesis as the file asks (and how many points were synthesized);
* the pruning ratio: the share of points the estimate alone ruled out;
* the time of a rerun from the cache.

    python benchmarks/bench_sweep.py [SWEEP.toml] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from ssmgen.sweep.config import load_sweep
from ssmgen.sweep.runner import run_sweep

ROOT = Path(__file__).resolve().parent.parent


def _timed(sweep, out, **options):
    start = time.perf_counter()
    results = run_sweep(sweep, out, show_progress=False, say=lambda _: None, **options)
    return results, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", nargs="?", default=str(ROOT / "examples" / "sweep_small.toml"))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    sweep = load_sweep(args.sweep)
    print(f"{sweep.name}: {sweep.grid_size}-point grid, strategy {sweep.strategy.kind}, "
          f"{args.workers} worker(s), {os.cpu_count()} core(s)")
    with tempfile.TemporaryDirectory(prefix="ssmgen-bench-sweep-") as tmp:
        tmp = Path(tmp)
        results, seconds = _timed(sweep, tmp / "none", workers=args.workers, synthesize="none")
        n, c = len(results["points"]), results["counts"]
        print(f"  without synthesis: {n} points in {seconds:.1f} s = "
              f"{60 * n / seconds:.1f} points/min; pruned by the estimate: {c['pruned']} "
              f"({100 * c['pruned'] / n:.0f}%)")
        results, seconds = _timed(sweep, tmp / "full", workers=args.workers)
        c = results["counts"]
        print(f"  with synthesis ({results['synthesize']}): {n} points in {seconds:.1f} s = "
              f"{60 * n / seconds:.1f} points/min; synthesized: {c['synthesized']}")
        _, seconds = _timed(sweep, tmp / "full", workers=args.workers)
        print(f"  rerun from the cache: {seconds:.2f} s")


if __name__ == "__main__":
    main()
