"""HTTP for the responsiveness report: JSON, CSV or an SVG chart of the same figures."""

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from sqlmodel import Session

from app.auth import ReadKey, read
from app.csvstream import CSV_MEDIA_TYPE, wants_csv
from app.models import utcnow
from app.reports import service
from app.reports.chart import render_chart
from app.reports.formats import report_csv
from app.reports.schemas import ReportQuery, ResponsivenessReport
from app.routing import JsonRoute
from app.schemas import problems

router = APIRouter(prefix="/v1", tags=["reports"], route_class=JsonRoute)

SVG_MEDIA_TYPE = "image/svg+xml"
AcceptHeader = Annotated[str | None, Header(include_in_schema=False)]

RULES = """\
The steps owed by `owed_by` whose due time lies in `[from, to)`, grouped by `group_by`,
each judged as it stood at the judging instant `judged_at` = min(`to`, now):

- **Which steps**: those agreed by the judging instant whose due time, as it stood then,
  is in the window.
- **Whose**: the owner (and role) who held the step when it fell due, from the step's
  history: a step reassigned after its due time counts against the earlier owner; one
  agreed after its due time against its first owner. `owed_by` is read from the same state.
  `job`, `stage` and `source` are the interview's.
- **kept**: done at or before the due time; **late**: done after it; **open_late**: still
  open and past due when judged (a step completed after the judging instant counts as
  open then); **cancelled**: cancelled by the judging instant, not counted in the rate.
  A step not yet due when judged (a window that reaches past now) counts in `due` only.
- **on_time_rate** = kept / (kept + late + open_late), null when that is 0.
- **Lateness** (late and open_late steps): completion, or the judging instant, minus the
  due time. **Wait** (kept, late and open_late steps): completion, or the judging instant,
  minus the agreement. p50 and p90 interpolate linearly between the closest ranks, as
  PostgreSQL's `percentile_cont`, in whole seconds (nearest, halves up); null without
  steps.

Groups are sorted by name (a group without a job or stage, null, comes last); `total`
adds them all up. `Accept: text/csv` answers the rows and a total row whose `group` is
empty; `Accept: image/svg+xml` a standalone bar chart of the on-time rates. A window that
is empty, reversed or longer than five years (1,827 days) is a 422.
"""

_STRING = {"schema": {"type": "string"}}
REPORT_CONTENT: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The report; as CSV with `Accept: text/csv` (one row per group, then "
        "the total), as an SVG bar chart with `Accept: image/svg+xml`.",
        "content": {CSV_MEDIA_TYPE: _STRING, SVG_MEDIA_TYPE: _STRING},
    }
}


def wants_svg(accept: str | None) -> bool:
    return accept is not None and SVG_MEDIA_TYPE in accept.lower()


def _answer(report: ResponsivenessReport, accept: str | None) -> Response:
    if wants_csv(accept):
        disposition = 'attachment; filename="responsiveness.csv"'
        return Response(
            report_csv(report),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": disposition},
        )
    if wants_svg(accept):
        return Response(render_chart(report), media_type=SVG_MEDIA_TYPE)
    return Response(report.model_dump_json(), media_type="application/json")


@router.get(
    "/reports/responsiveness",
    operation_id="getResponsivenessReport",
    response_model=ResponsivenessReport,
    responses={**REPORT_CONTENT, **problems(401, 403, 422)},
    description=RULES,
)
async def responsiveness_report(
    access: ReadKey,
    query: Annotated[ReportQuery, Query()],
    accept: AcceptHeader = None,
) -> Response:
    """How the promises due in a window were kept, per owner, role, job, stage or source."""
    now = utcnow()

    def answer(session: Session) -> Response:
        report = service.responsiveness(
            session, query.from_, query.to, now, query.group_by, query.owed_by
        )
        return _answer(report, accept)

    return await read(access, answer)
