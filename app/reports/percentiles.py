"""Percentiles as PostgreSQL's ``percentile_cont`` computes them, in exact arithmetic.

The report computes them from the figures (or, on PostgreSQL, from the values around
each percentile's position that its query picks), so that SQLite and PostgreSQL answer
the same numbers to the second. Integers throughout: a report has four percentiles per
group, and Fraction arithmetic cost more than the rest of a month's report on SQLite.
"""

import math
from collections.abc import Sequence
from fractions import Fraction

MICROS = 1_000_000


def ranks(count: int, fraction: Fraction) -> tuple[int, int]:
    """Where ``fraction`` (0..1) falls among ``count`` ordered values, as ``percentile_cont``
    interpolates: the rank below it (counted from 0), and how far past it, in parts of
    ``fraction.denominator``."""
    if not 0 <= fraction <= 1:
        raise ValueError("the fraction must lie between 0 and 1")
    return divmod(fraction.numerator * (count - 1), fraction.denominator)


def percentile_cont(ordered: Sequence[int], fraction: Fraction) -> Fraction:
    """The value at ``fraction`` (0..1) of ``ordered`` (ascending, not empty), interpolated
    linearly between the two closest ranks: row ``fraction * (n - 1)``, counted from 0."""
    if not ordered:
        raise ValueError("no values")
    below, part = ranks(len(ordered), fraction)
    low = ordered[below]
    if not part:
        return Fraction(low)
    return low + (ordered[below + 1] - low) * Fraction(part, fraction.denominator)


def whole_seconds(micros: Fraction) -> int:
    """Microseconds to the nearest second, halves up."""
    return math.floor(micros / MICROS + Fraction(1, 2))


def seconds_around(low: int, high: int | None, count: int, fraction: Fraction) -> int:
    """``percentile_cont`` of ``count`` durations in microseconds, in whole seconds (nearest,
    halves up), from the two values around its position (``high`` is not read, and may be
    None, when the position falls on ``low``)."""
    _, part = ranks(count, fraction)
    parts = fraction.denominator
    # The value is low + (high - low) * part / parts microseconds: counted in parts, it
    # is an integer, and so is its rounding.
    scaled = low * parts
    if part:
        if high is None:
            raise ValueError("the value above the position is missing")
        scaled += (high - low) * part
    return (2 * scaled + parts * MICROS) // (2 * parts * MICROS)


def percentile_seconds(
    micros: Sequence[int], fraction: Fraction, *, ordered: bool = False
) -> int | None:
    """``percentile_cont`` of durations in microseconds (in any order, or ascending if
    ``ordered``), in whole seconds; None when there are none."""
    if not micros:
        return None
    values = micros if ordered else sorted(micros)
    below, part = ranks(len(values), fraction)
    high = values[below + 1] if part else None
    return seconds_around(values[below], high, len(values), fraction)
