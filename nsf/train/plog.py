"""The p log of a run: the p of every iteration, run-length encoded.

A schedule that holds p for hundreds of iterations (the pulse-tidal square wave of paper
Sec. 5.1) is a handful of ``[p, count]`` pairs, which is what ``p_log.json`` stores.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["rle_append", "rle_decode", "rle_encode"]


def rle_append(pairs: list[list], value: float) -> None:
    """Add one iteration's ``value`` to the run-length pairs, in place."""
    if pairs and pairs[-1][0] == value:
        pairs[-1][1] += 1
    else:
        pairs.append([value, 1])


def rle_encode(values: Iterable[float]) -> list[list]:
    """``[p0, p0, p0, p1] -> [[p0, 3], [p1, 1]]``."""
    pairs: list[list] = []
    for value in values:
        rle_append(pairs, float(value))
    return pairs


def rle_decode(pairs: Sequence[Sequence]) -> list[float]:
    """Inverse of :func:`rle_encode`."""
    out: list[float] = []
    for value, count in pairs:
        out.extend([float(value)] * int(count))
    return out
