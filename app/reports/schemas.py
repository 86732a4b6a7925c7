"""The responsiveness report's query and answer."""

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from app.fields import Instant, Timestamp
from app.models import OwedBy


class GroupBy(StrEnum):
    owner = "owner"
    owner_role = "owner_role"
    job = "job"
    stage = "stage"
    source = "source"


class ReportQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    # `from` is a Python keyword: the field is from_, the parameter `from`.
    from_: Timestamp | None = Field(
        default=None,
        alias="from",
        description="Start of the window (steps due at or after it); default: `to` - 30 days.",
    )
    to: Timestamp | None = Field(
        default=None, description="End of the window (steps due before it); default: now."
    )
    group_by: GroupBy = GroupBy.owner
    owed_by: OwedBy = OwedBy.company


class ReportRow(BaseModel):
    """One group's figures (the total's group is null)."""

    group: str | None = Field(
        description="Owner id, role, job external id, stage or source; null for the total, "
        "and for the steps whose interview has no job (or stage)."
    )
    due: int = Field(description="Steps due in the window, whatever became of them.")
    kept: int = Field(description="Done at or before their due time.")
    late: int = Field(description="Done after their due time.")
    open_late: int = Field(description="Still open and past due when judged.")
    cancelled: int = Field(description="Cancelled by the judging instant; not in the rate.")
    on_time_rate: float | None = Field(
        description="kept / (kept + late + open_late), rounded to 4 decimals; null when 0 / 0."
    )
    lateness_p50_seconds: int | None
    lateness_p90_seconds: int | None
    wait_p50_seconds: int | None
    wait_p90_seconds: int | None


class ResponsivenessReport(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    from_: Instant = Field(alias="from")
    to: Instant
    judged_at: Instant = Field(description="min(to, now): the instant every step is judged at.")
    group_by: GroupBy
    owed_by: OwedBy
    items: list[ReportRow] = Field(description="One row per group, sorted by group name.")
    total: ReportRow
