"""Benchmark of the deadline engine's compute(), in process.

Calendar: America/New_York, Mon-Fri 09:00-17:00, US public holidays, and a closed date in
every month of the three years the starts fall in. Rules: `business_days 30` and
`business_hours 240`, from random starts (any instant of 2026-2028). Each rule is timed
call by call after a warm-up (the first calls fill the caches); the figures are p50, p99
and the maximum of one call, in wall-clock and in CPU time, and the cost of the very first
call of a fresh process, which builds the caches. The exit status is 1 when a wall-clock
p99 reaches 1 ms.

Usage: `make bench-deadlines`, or `.venv/bin/python bench/deadlines.py [--calls N] [--seed S]`.
"""

import argparse
import platform
import random
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta

from app.deadlines import (
    WEEKDAYS,
    BusinessDays,
    BusinessHours,
    Calendar,
    Rule,
    compute,
    describe_rule,
    parse_calendar,
)
from app.deadlines.calendar import holiday_names

FIRST = datetime(2026, 1, 1, tzinfo=UTC)
SPAN_SECONDS = int((datetime(2029, 1, 1, tzinfo=UTC) - FIRST).total_seconds())
TARGET_P99_MS = 1.0


def bench_calendar() -> Calendar:
    # The 15th of each month, or the Monday after when it falls on a weekend: a weekday.
    closed = []
    for year in range(2026, 2030):
        for month in range(1, 13):
            day = date(year, month, 15)
            while day.weekday() >= 5:
                day += timedelta(days=1)
            closed.append(day.isoformat())
    return parse_calendar(
        {
            "time_zone": "America/New_York",
            "hours": {day: [["09:00", "17:00"]] for day in WEEKDAYS[:5]},
            "holidays": {"country": "US", "subdivision": None},
            "closed_dates": closed,
        }
    )


def percentile(ordered: list[float], fraction: float) -> float:
    """Linear interpolation between closest ranks."""
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def time_calls(
    calendar: Calendar, rule: Rule, starts: list[datetime]
) -> tuple[list[float], list[float]]:
    """The wall-clock and CPU durations of each call, in milliseconds, each list sorted.

    On a shared machine a call can wait for a core; the CPU time leaves that wait out.
    """
    wall, cpu = [], []
    wall_clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    for start in starts:
        began_wall, began_cpu = wall_clock(), cpu_clock()
        compute(calendar, start, rule)
        cpu.append((cpu_clock() - began_cpu) / 1e6)
        wall.append((wall_clock() - began_wall) / 1e6)
    return sorted(wall), sorted(cpu)


def summary(durations: list[float]) -> str:
    p50, p99 = percentile(durations, 0.50), percentile(durations, 0.99)
    return f"p50 {p50:.3f} ms  p99 {p99:.3f} ms  max {durations[-1]:.3f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="timed calls per rule")
    parser.add_argument("--seed", type=int, default=2026)
    options = parser.parse_args()

    randomness = random.Random(options.seed)
    calendar = bench_calendar()
    rules: list[Rule] = [BusinessDays(30), BusinessHours(240)]
    print(
        f"Python {platform.python_version()} on {platform.machine()}, {options.calls} calls a rule"
    )

    # The first calls of a process build the year's holidays, then (business hours) the year's
    # open intervals; both are cached from then on.
    for rule in rules:
        began = time.perf_counter_ns()
        compute(calendar, FIRST, rule)
        first_ms = (time.perf_counter_ns() - began) / 1e6
        print(f"{describe_rule(rule):<30} first call of the process: {first_ms:.2f} ms")

    failed = False
    for rule in rules:
        starts = [
            FIRST + timedelta(seconds=randomness.randrange(SPAN_SECONDS))
            for _ in range(options.calls)
        ]
        time_calls(calendar, rule, starts[: min(1_000, len(starts))])  # warm-up
        wall, cpu = time_calls(calendar, rule, starts)
        print(
            f"{describe_rule(rule):<30} wall {summary(wall)}  mean {statistics.fmean(wall):.3f} ms"
        )
        print(f"{'':<30} CPU  {summary(cpu)}")
        failed = failed or percentile(wall, 0.99) >= TARGET_P99_MS
    built = holiday_names.cache_info().misses
    print(f"holidays built {built} times in all (once per country and year)")
    print(f"wall-clock p99 target < {TARGET_P99_MS} ms: {'missed' if failed else 'met'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
