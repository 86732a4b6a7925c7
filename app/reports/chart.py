"""The report as a standalone SVG bar chart: the on-time rate of each group.

Written by hand, so that it stays small and safe to open anywhere: no script, no link,
no external font (generic family names only), every text escaped.
"""

import re
from datetime import UTC, datetime
from xml.sax.saxutils import escape, quoteattr

from app.reports.schemas import ReportRow, ResponsivenessReport

WIDTH = 960
LABEL_X, BAR_X, BAR_WIDTH, COUNTS_X = 16, 250, 300, 610
TOP, ROW, BAR_HEIGHT = 78, 30, 18
LABEL_CHARS = 28
FONT = "system-ui, sans-serif"
BAR, TRACK, TOTAL_BAR, INK, MUTED = "#2a6f97", "#e3e8ec", "#1b4965", "#1a1a1a", "#4a4a4a"

# XML 1.0 cannot hold these characters at all, escaped or not; names come from outside.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def _text(value: str) -> str:
    return escape(_NOT_XML.sub("\ufffd", value))


def _attr(value: str) -> str:
    return quoteattr(_NOT_XML.sub("\ufffd", value))


def _short(name: str) -> str:
    return name if len(name) <= LABEL_CHARS else name[: LABEL_CHARS - 1] + "…"


def _when(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _percent(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate * 100:.0f}%"


def _counts(row: ReportRow) -> str:
    return (
        f"{row.kept} kept, {row.late} late, {row.open_late} open late, "
        f"{row.cancelled} cancelled ({row.due} due)"
    )


def _name(row: ReportRow, group_by: str) -> str:
    if row.group is None:
        return f"(no {group_by})"
    return row.group


def _bar(y: int, name: str, row: ReportRow, *, total: bool = False) -> list[str]:
    weight = ' font-weight="bold"' if total else ""
    middle = y + BAR_HEIGHT // 2 + 4
    width = 0.0 if row.on_time_rate is None else round(row.on_time_rate * BAR_WIDTH, 1)
    label_x = BAR_X + width + 6
    return [
        f'<g><text x="{LABEL_X}" y="{middle}" fill="{INK}"{weight}>{_text(_short(name))}</text>',
        f'<rect x="{BAR_X}" y="{y}" width="{BAR_WIDTH}" height="{BAR_HEIGHT}" fill="{TRACK}"/>',
        f'<rect x="{BAR_X}" y="{y}" width="{width}" height="{BAR_HEIGHT}" '
        f'fill="{TOTAL_BAR if total else BAR}"/>',
        f'<text x="{label_x}" y="{middle}" fill="{INK}"{weight}>'
        f"{_percent(row.on_time_rate)}</text>",
        f'<text x="{COUNTS_X}" y="{middle}" fill="{MUTED}" font-size="12">'
        f"{_text(_counts(row))}</text></g>",
    ]


def render_chart(report: ResponsivenessReport) -> str:
    """The chart of ``report``: one bar per group, then the total."""
    group_by = report.group_by.value
    title = (
        f"On-time rate by {group_by.replace('_', ' ')}, steps due "
        f"{_when(report.from_)} to {_when(report.to)}"
    )
    subtitle = f"Owed by the {report.owed_by.value}; judged at {_when(report.judged_at)}."
    rows = [(_name(row, group_by), row) for row in report.items]
    described = "; ".join(
        f"{name}: {_percent(row.on_time_rate)} on time, {_counts(row)}" for name, row in rows
    )
    description = (
        f"{subtitle} "
        + (f"{described}. " if rows else "No step fell due in this window. ")
        + f"Total: {_percent(report.total.on_time_rate)} on time, {_counts(report.total)}."
    )
    height = TOP + ROW * (len(rows) + 1) + 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-labelledby="report-title report-desc" font-family={_attr(FONT)} font-size="14">',
        f'<title id="report-title">{_text(title)}</title>',
        f'<desc id="report-desc">{_text(description)}</desc>',
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
        f'<text x="{LABEL_X}" y="28" font-size="17" font-weight="bold" fill="{INK}">'
        f"{_text(title)}</text>",
        f'<text x="{LABEL_X}" y="50" font-size="13" fill="{MUTED}">{_text(subtitle)} '
        "Bar: kept / (kept + late + open late).</text>",
    ]
    y = TOP
    if not rows:
        parts.append(
            f'<text x="{LABEL_X}" y="{y + 14}" fill="{MUTED}">'
            "No step fell due in this window.</text>"
        )
        y += ROW
    for name, row in rows:
        parts.extend(_bar(y, name, row))
        y += ROW
    parts.append(
        f'<line x1="{LABEL_X}" y1="{y - 6}" x2="{WIDTH - LABEL_X}" y2="{y - 6}" '
        f'stroke="{MUTED}" stroke-width="1"/>'
    )
    parts.extend(_bar(y + 4, "Total", report.total, total=True))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
