"""Request and response models of the owner directory."""

import uuid
from typing import Annotated

from fastapi import Path
from pydantic import BaseModel, Field, StrictBool, StringConstraints, model_validator

from app.fields import EmailAddress, Instant, NotBlank, NulFreeText
from app.schemas import ListQuery, Strict, not_nullable

# Every character an owner id may hold is allowed as it is in a URL path segment (RFC 3986's
# unreserved characters, ":", "@" and "+"), so that /v1/owners/greenhouse:4080 needs no
# escaping; it starts with a letter, a digit or "_", so that it is never "." or "..".
OWNER_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._~:@+-]{0,199}$"
OWNER_ID_DESCRIPTION = (
    "The owner id steps carry, e.g. `greenhouse:4080` or `hr-team`: letters, digits and "
    "`. _ ~ : @ + -`, up to 200 characters, starting with a letter, a digit or `_`."
)
OwnerIdPath = Annotated[
    str,
    Path(
        pattern=OWNER_ID_PATTERN,
        max_length=200,
        description=OWNER_ID_DESCRIPTION,
        examples=["greenhouse:4080"],
    ),
]
HH_MM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
DigestTime = Annotated[
    str, Field(pattern=HH_MM, examples=["07:00"], description="Local time, the owner's calendar's.")
]
Name = Annotated[str, StringConstraints(min_length=1, max_length=300), *NotBlank]


class DigestIn(Strict):
    enabled: StrictBool = False
    at: DigestTime = "07:00"


class DigestPatch(Strict):
    enabled: StrictBool | None = Field(default=None, json_schema_extra=not_nullable)
    at: DigestTime | None = Field(default=None, json_schema_extra=not_nullable)

    @model_validator(mode="after")
    def _no_nulls(self) -> "DigestPatch":
        for name in ("enabled", "at"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class OwnerIn(Strict):
    """The whole owner; a field left out takes its default."""

    name: Name | None = None
    email: EmailAddress | None = Field(
        default=None, description="An RFC 5322 addr-spec, without a display name."
    )
    calendar_id: uuid.UUID | None = Field(
        default=None, description="The calendar the owner works by; null: the policy's or default."
    )
    email_reminders: StrictBool = True
    digest: DigestIn = Field(default_factory=DigestIn)


class OwnerPatch(Strict):
    """The fields to change; `name`, `email` and `calendar_id` may be set to null."""

    name: Name | None = None
    email: EmailAddress | None = None
    calendar_id: uuid.UUID | None = None
    email_reminders: StrictBool | None = Field(default=None, json_schema_extra=not_nullable)
    digest: DigestPatch | None = Field(default=None, json_schema_extra=not_nullable)

    @model_validator(mode="after")
    def _no_nulls(self) -> "OwnerPatch":
        for name in ("email_reminders", "digest"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class DigestOut(BaseModel):
    enabled: bool
    at: str = Field(examples=["07:00"])


class DirectoryOwner(BaseModel):
    """An owner of the directory (the step's own `owner` is the `Owner` schema)."""

    id: str = Field(examples=["greenhouse:4080"])
    name: str | None
    email: str | None
    calendar_id: uuid.UUID | None
    email_reminders: bool
    digest: DigestOut
    learned_from: str = Field(
        examples=["api", "greenhouse"],
        description='"api" once written over the API; else the source it was learned from.',
    )
    version: int
    created_at: Instant
    updated_at: Instant


class OwnerQuery(ListQuery):
    learned_from: NulFreeText | None = Field(default=None, description='"api" or a source name.')
    calendar_id: uuid.UUID | None = None
    email: NulFreeText | None = Field(default=None, description="Case-insensitively equal.")


class OwnerCalendarIn(Strict):
    calendar_id: uuid.UUID


class OwnerCalendarOut(BaseModel):
    owner_id: str
    calendar_id: uuid.UUID
