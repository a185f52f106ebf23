"""Time the batched spectral simulator against a per-schedule Python loop (paper Sec. 4.1.2).

``nsf.spectral.decay_table`` simulates all schedules of a table as one array [S, N]. This script
times it against calling it once per schedule, in the same process, with interleaved repeats, and
prints the medians and their ratio. Run it on an otherwise idle machine::

    OMP_NUM_THREADS=1 python benchmarks/spectral_batch.py [--repeats 7] [--sweep]

``--sweep`` also times the table batch of the sensitivity sweep (the 8 period x phase variants of
the paper's table in one simulation, 29 distinct schedules) against one simulation per variant.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from nsf import spectral


def _median_times(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():  # warm-up: imports, caches, first allocation
        fn()
    for _ in range(repeats):  # interleaved, so that load changes hit both alike
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sweep", action="store_true", help="also time a sweep-sized batch")
    args = parser.parse_args()

    schedules = spectral.table_schedules()
    batched, looped = (
        spectral.decay_table(schedules),
        [spectral.decay_table({n: s}) for n, s in schedules.items()],
    )
    same = np.allclose(
        batched[0].to_numpy(), np.vstack([k.to_numpy() for k, _ in looped]), rtol=0, atol=1e-12
    )
    print(
        f"paper table: {len(schedules)} schedules x N = {spectral.SpectralSetup().N}, "
        f"{spectral.SpectralSetup().steps} steps; batched == looped: {same}"
    )
    med = _median_times(
        {
            "batched": lambda: spectral.decay_table(schedules),
            "loop": lambda: [spectral.decay_table({n: s}) for n, s in schedules.items()],
        },
        args.repeats,
    )
    print(
        f"  batched {med['batched'] * 1e3:8.1f} ms   per-schedule loop {med['loop'] * 1e3:8.1f} ms"
        f"   loop / batched = {med['loop'] / med['batched']:.2f}x  (median of {args.repeats})"
    )

    if args.sweep:
        variants = {}
        for period in (0.1, 0.25, 0.5, 1.0):
            for phase in (0.0, np.pi / 2):
                for n, s in spectral.table_schedules(period=period, phase=phase).items():
                    variants.setdefault(s, f"{n} T={period} phi={phase:.2f}")
        unique = {name: s for s, name in variants.items()}
        med = _median_times(
            {
                "batched": lambda: spectral.decay_table(unique),
                "loop": lambda: [spectral.decay_table({n: s}) for n, s in unique.items()],
            },
            max(1, args.repeats // 2),
        )
        print(f"sweep batch: {len(unique)} schedules")
        print(
            f"  batched {med['batched'] * 1e3:8.1f} ms   per-schedule loop "
            f"{med['loop'] * 1e3:8.1f} ms   loop / batched = {med['loop'] / med['batched']:.2f}x"
        )


if __name__ == "__main__":
    main()
