"""HTTP for e-mail to owners: a test e-mail, and a digest sent now."""

from fastapi import APIRouter

from app.auth import AdminKey
from app.db import WriteSessionDep
from app.models import utcnow
from app.outbound import digest, mail
from app.outbound.schemas import DigestQueued, MessageQueued
from app.owners.schemas import OwnerIdPath
from app.routing import JsonRoute
from app.schemas import problems

router = APIRouter(prefix="/v1", tags=["email"], route_class=JsonRoute)


@router.post(
    "/owners/{owner_id}/test-email",
    operation_id="sendOwnerTestEmail",
    status_code=202,
    responses=problems(401, 403, 404, 422),
)
def send_test_email(
    session: WriteSessionDep, _caller: AdminKey, owner_id: OwnerIdPath
) -> MessageQueued:
    """Queue a test e-mail (type `email.test`) to the owner; it is listed in the messages
    (`channel=email`). 422 when the owner has no e-mail address, or NEXTSTEP_SMTP_URL is not
    set."""
    return MessageQueued(message_id=mail.send_test_email(session, owner_id, utcnow()).id)


@router.post(
    "/owners/{owner_id}/digest",
    operation_id="sendOwnerDigest",
    status_code=202,
    responses=problems(401, 403, 404, 422),
)
def send_digest(session: WriteSessionDep, _caller: AdminKey, owner_id: OwnerIdPath) -> DigestQueued:
    """Queue the owner's digest now (type `owner.digest`): their open company-owed steps
    overdue, due today and due in the next two open days. It does not count as the day's
    scheduled digest. Nothing to list: `message_id` null and no e-mail. 422 when the owner
    has no e-mail address, or NEXTSTEP_SMTP_URL is not set."""
    message = digest.send_digest_now(session, owner_id, utcnow())
    return DigestQueued(message_id=message.id if message is not None else None)
