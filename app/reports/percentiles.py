"""Percentiles as PostgreSQL's ``percentile_cont`` computes them, in exact arithmetic.

The report computes them in Python over the figures its one query streams, so that
SQLite and PostgreSQL answer the same numbers to the second.
"""

import math
from collections.abc import Sequence
from fractions import Fraction

MICROS = 1_000_000


def percentile_cont(ordered: Sequence[int], fraction: Fraction) -> Fraction:
    """The value at ``fraction`` (0..1) of ``ordered`` (ascending, not empty), interpolated
    linearly between the two closest ranks: row ``fraction * (n - 1)``, counted from 0."""
    if not ordered:
        raise ValueError("no values")
    if not 0 <= fraction <= 1:
        raise ValueError("the fraction must lie between 0 and 1")
    position = fraction * (len(ordered) - 1)
    below = math.floor(position)
    low = ordered[below]
    if position == below:
        return Fraction(low)
    return low + (ordered[below + 1] - low) * (position - below)


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
