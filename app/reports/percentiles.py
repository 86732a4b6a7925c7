"""Percentiles as PostgreSQL's ``percentile_cont`` computes them, in exact arithmetic.

The report computes them in Python over the figures its one query streams, so that
SQLite and PostgreSQL answer the same numbers to the second.
"""

import math
from collections.abc import Sequence
from fractions import Fraction

MICROS = 1_000_000


def ranks(count: int, fraction: Fraction) -> tuple[int, Fraction]:
    """Where ``fraction`` (0..1) falls among ``count`` ordered values: the rank below it
    (counted from 0) and how far past it, as ``percentile_cont`` interpolates."""
    if not 0 <= fraction <= 1:
        raise ValueError("the fraction must lie between 0 and 1")
    position = fraction * (count - 1)
    below = math.floor(position)
    return below, position - below


def between(low: int, high: int | None, count: int, fraction: Fraction) -> Fraction:
    """``percentile_cont`` from the two values around its position (``high`` unused, and
    possibly None, when the position falls on ``low``)."""
    _, part = ranks(count, fraction)
    if not part:
        return Fraction(low)
    if high is None:
        raise ValueError("the value above the position is missing")
    return low + (high - low) * part


def percentile_cont(ordered: Sequence[int], fraction: Fraction) -> Fraction:
    """The value at ``fraction`` (0..1) of ``ordered`` (ascending, not empty), interpolated
    linearly between the two closest ranks: row ``fraction * (n - 1)``, counted from 0."""
    if not ordered:
        raise ValueError("no values")
    below, part = ranks(len(ordered), fraction)
    high = ordered[below + 1] if part else None
    return between(ordered[below], high, len(ordered), fraction)


def whole_seconds(micros: Fraction) -> int:
    """Microseconds to the nearest second, halves up."""
    return math.floor(micros / MICROS + Fraction(1, 2))


def percentile_seconds(
    micros: Sequence[int], fraction: Fraction, *, ordered: bool = False
) -> int | None:
    """``percentile_cont`` of durations in microseconds (in any order, or ascending if
    ``ordered``), in whole seconds; None when there are none."""
    if not micros:
        return None
    return whole_seconds(percentile_cont(micros if ordered else sorted(micros), fraction))
