"""The `nextstep` command: serve, migrate, keys, overdue, report, calendars, policies,
messages, owners, worker."""

import asyncio
import contextlib
import faulthandler
import json
import os
import re
import signal
import sys
import uuid
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal, TypeVar

import typer
from pydantic import BaseModel, ValidationError

from app import auth, serving, tracing
from app import migrate as migrations
from app.calendar_feeds import service as calendar_feeds
from app.commitments import overdue as overdue_reads
from app.commitments.schemas import OverdueItem, OverdueQuery
from app.config import SettingsError, get_settings
from app.csvstream import CSV_PAGE, csv_columns, write_rows
from app.db import new_session
from app.deadlines import policy_admin
from app.deadlines import service as deadlines
from app.deadlines.schemas import OwnerFromRole, PolicyOut, RuleIn
from app.errors import AppError
from app.events import deliveries as events
from app.main import openapi_document
from app.models import DeliveryResult, OwedBy, Scope, utcnow
from app.models.outbound import MessageChannel, MessageStatus, MessageType
from app.observability import shared_metrics_dir
from app.outbound import admin as outbound
from app.outbound import outbox
from app.outbound.schemas import MessageOut, MessageQuery
from app.owners import service as owners
from app.owners.schemas import (
    OWNER_ID_DESCRIPTION,
    OWNER_ID_PATTERN,
    DirectoryOwner,
    OwnerPatch,
    OwnerQuery,
)
from app.reports import service as reports
from app.reports.formats import report_csv
from app.reports.schemas import GroupBy, ReportRow

# Every change of a step the commands make writes its messages (app/commitments/changes.py).
outbox.install()

cli = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="nextstep: agreed next steps.",
)
keys_cli = typer.Typer(no_args_is_help=True, help="Create, list and revoke API keys.")
cli.add_typer(keys_cli, name="keys")
deliveries_cli = typer.Typer(no_args_is_help=True, help="Inspect and replay stored deliveries.")
cli.add_typer(deliveries_cli, name="deliveries")
calendars_cli = typer.Typer(no_args_is_help=True, help="Try deadline rules on calendars.")
cli.add_typer(calendars_cli, name="calendars")
policies_cli = typer.Typer(no_args_is_help=True, help="Show the deadline policies.")
cli.add_typer(policies_cli, name="policies")
messages_cli = typer.Typer(no_args_is_help=True, help="Inspect and resend outbound messages.")
cli.add_typer(messages_cli, name="messages")
owners_cli = typer.Typer(no_args_is_help=True, help="List and set owners of the directory.")
cli.add_typer(owners_cli, name="owners")


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Default: NEXTSTEP_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="Default: NEXTSTEP_PORT")] = None,
    workers: Annotated[int | None, typer.Option(help="Default: NEXTSTEP_WORKERS")] = None,
) -> None:
    """Serve the HTTP API."""
    settings = get_settings()
    host, port = host or settings.host, port or settings.port
    # The app in each server process (and the worker inside it) reads the address it
    # serves on from here: links made outside a request point at it (app/links.py).
    os.environ["NEXTSTEP_HOST"], os.environ["NEXTSTEP_PORT"] = host, str(port)
    get_settings.cache_clear()
    serving.serve(host, port, workers or settings.workers)


@cli.command()
def openapi() -> None:
    """Print the OpenAPI document (`make openapi` writes it to openapi/openapi.json)."""
    typer.echo(openapi_document(), nl=False)


@cli.command()
def migrate() -> None:
    """Upgrade the database to the newest schema. Safe to run from several replicas at once."""
    migrations.upgrade(get_settings().database_url)
    typer.echo("database is at the newest schema")


@keys_cli.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="Who or what uses the key.")],
    scope: Annotated[list[Scope], typer.Option(help="read, write or admin; repeatable.")],
) -> None:
    """Create a key. The key is printed once, alone on the last line."""
    with new_session() as session:
        key, token = auth.create_key(session, name, scope, utcnow())
    typer.echo(f"created key {key.id} ({key.name}, scopes: {', '.join(key.scopes)})")
    typer.echo("store it now; it cannot be shown again:")
    typer.echo(token)


@keys_cli.command("list")
def keys_list() -> None:
    """List keys (never their secrets)."""
    with new_session() as session:
        keys = auth.list_keys(session)
    typer.echo(f"{'id':36}  {'prefix':12}  {'name':20}  {'scopes':18}  {'state':8}  last used")
    for key in keys:
        state = "revoked" if key.revoked_at else "active"
        last = key.last_used_at.isoformat() if key.last_used_at else "never"
        typer.echo(
            f"{key.id!s:36}  {key.prefix:12}  {key.name[:20]:20}  "
            f"{','.join(key.scopes):18}  {state:8}  {last}"
        )


@keys_cli.command("revoke")
def keys_revoke(key_id: uuid.UUID) -> None:
    """Revoke a key; requests with it get 401 from then on."""
    with new_session() as session:
        key = auth.revoke_key(session, key_id, utcnow())
    typer.echo(f"revoked key {key.id} ({key.name})")


@deliveries_cli.command("list")
def deliveries_list(
    source: Annotated[str | None, typer.Option()] = None,
    result: Annotated[DeliveryResult | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
) -> None:
    """Stored deliveries, oldest first (never their signatures)."""
    with new_session() as session:
        rows, _more = events.list_deliveries(session, source, result, None, limit, None)
    typer.echo(f"{'id':36}  {'source':12}  {'result':9}  {'received at':32}  type / error")
    for d in rows:
        detail = d.error if d.error else (d.event_type or "")
        typer.echo(
            f"{d.id!s:36}  {d.source[:12]:12}  {d.result:9}  {d.received_at.isoformat():32}  "
            f"{detail[:80]}"
        )


@deliveries_cli.command("replay")
def deliveries_replay(delivery_id: uuid.UUID) -> None:
    """Apply a stored delivery again (idempotent), e.g. after a mapping fix."""
    with new_session(write=True) as session:
        delivery = events.replay(session, delivery_id, utcnow())
    typer.echo(
        f"delivery {delivery.id}: {delivery.result}"
        + (f" ({delivery.error})" if delivery.error else "")
    )


Item = TypeVar("Item")


def _every_page(
    fetch: Callable[[list[str] | None], tuple[list[Item], list[str] | None]],
) -> list[Item]:
    """Every item of a list, page after page (``fetch(after)``: a page and where it ends)."""
    items: list[Item] = []
    after: list[str] | None = None
    while True:
        page, after = fetch(after)
        items.extend(page)
        if after is None:
            return items


def _printed_as(
    output: OutputFormat,
    model: type[BaseModel],
    items: Sequence[BaseModel],
    *,
    extrasaction: Literal["raise", "ignore"] = "raise",
) -> bool:
    """``items`` as JSON or CSV on stdout; False for a table, which each command lays out."""
    if output is OutputFormat.json:
        typer.echo(json.dumps([item.model_dump(mode="json") for item in items], indent=2))
        return True
    if output is OutputFormat.csv:
        import csv

        columns = csv_columns(model)
        writer = csv.DictWriter(sys.stdout, fieldnames=columns, extrasaction=extrasaction)
        writer.writeheader()
        write_rows(writer, model, items)
        return True
    return False


def _instant(value: str | None, option: str = "--as-of") -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise typer.BadParameter(
            "give an RFC 3339 instant with an offset, e.g. 2026-11-20T15:00:00Z",
            param_hint=option,
        )
    return parsed


@cli.command()
def overdue(
    owner: Annotated[str | None, typer.Option(help="Owner id.")] = None,
    owed_by: Annotated[OwedBy, typer.Option()] = OwedBy.company,
    as_of: Annotated[str | None, typer.Option(help="RFC 3339 instant; default now.")] = None,
    output: Annotated[OutputFormat, typer.Option("--format")] = OutputFormat.table,
) -> None:
    """List overdue commitments, most overdue first."""
    moment = _instant(as_of) or utcnow()
    query = OverdueQuery(owner_id=owner, owed_by=owed_by, as_of=moment, limit=CSV_PAGE)
    items: list[OverdueItem] = []
    after: list[str] | None = None
    with new_session() as session:
        while True:
            page, cursor = overdue_reads.list_overdue(session, query, after, moment)
            items.extend(page)
            if cursor is None:
                break
            after = [str(page[-1].due_at.isoformat()), str(page[-1].id)]
    if not _printed_as(output, OverdueItem, items, extrasaction="ignore"):
        typer.echo(f"{'overdue by':12}  {'owner':24}  {'candidate':24}  action")
        for item in items:
            typer.echo(
                f"{item.overdue_by or '':12}  {item.owner.id[:24]:24}  "
                f"{(item.candidate.name or item.candidate.external_id)[:24]:24}  {item.action}"
            )
        typer.echo(f"{len(items)} overdue as of {moment.isoformat()}")


@calendars_cli.command("compute")
def calendars_compute(
    calendar: Annotated[uuid.UUID, typer.Option("--calendar", help="Calendar id.")],
    start: Annotated[str, typer.Option(help="RFC 3339 instant with an offset.")],
    rule: Annotated[str, typer.Option(help="JSON, e.g. '{\"business_days\": 3}'.")],
) -> None:
    """Print the due time a rule gives from START on a calendar, and the days it skipped."""
    try:
        parsed = RuleIn.model_validate_json(rule)
    except ValueError as exc:
        raise typer.BadParameter(str(exc).splitlines()[-1].strip(), param_hint="--rule") from None
    moment = _instant(start, "--start")
    assert moment is not None
    with new_session() as session:
        answer = deadlines.compute_on_calendar(session, calendar, moment, parsed)
    local = answer.due_at.astimezone(deadlines.engine_zone(answer.calendar.time_zone))
    typer.echo(f"due at   {answer.due_at.isoformat().replace('+00:00', 'Z')}")
    typer.echo(f"local    {local.isoformat()} ({answer.calendar.time_zone})")
    typer.echo(f"rule     {json.dumps(answer.rule)}")
    typer.echo(f"calendar {answer.calendar.id} version {answer.calendar.version}")
    if not answer.skipped:
        typer.echo("skipped  nothing")
    for index, day in enumerate(answer.skipped):
        typer.echo(f"{'skipped' if index == 0 else '':8} {day.date}  {day.why}")


@policies_cli.command("list")
def policies_list(
    output: Annotated[OutputFormat, typer.Option("--format")] = OutputFormat.table,
) -> None:
    """The deadline policies in the order they apply."""
    with new_session() as session:
        items = _every_page(lambda after: policy_admin.list_policies(session, CSV_PAGE, after))
    if _printed_as(output, PolicyOut, items):
        return
    typer.echo(f"{'position':>8}  {'state':8}  {'id':36}  {'name':24}  rules")
    for policy in items:
        rules = []
        if policy.due_rule:
            rules.append(f"due {json.dumps(policy.due_rule)}")
        if policy.default_step:
            owner = policy.default_step.owner
            role = owner.from_ if isinstance(owner, OwnerFromRole) else owner.role.value
            rules.append(f"default step for {role}")
        state = "enabled" if policy.enabled else "disabled"
        typer.echo(
            f"{policy.position:>8}  {state:8}  {policy.id!s:36}  {policy.name[:24]:24}  "
            + "; ".join(rules)
        )
    typer.echo(f"{len(items)} policies")


@messages_cli.command("list")
def messages_list(
    status: Annotated[MessageStatus | None, typer.Option()] = None,
    endpoint_id: Annotated[uuid.UUID | None, typer.Option()] = None,
    type_: Annotated[MessageType | None, typer.Option("--type")] = None,
    channel: Annotated[MessageChannel | None, typer.Option()] = None,
    recipient: Annotated[str | None, typer.Option(help="An owner id: its e-mails.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    output: Annotated[OutputFormat, typer.Option("--format")] = OutputFormat.table,
) -> None:
    """Messages to endpoints and e-mails to owners, newest first (e.g. --status failed)."""
    query = MessageQuery(
        endpoint_id=endpoint_id,
        status=status,
        type=type_,
        channel=channel,
        recipient=recipient,
        limit=limit,
    )
    with new_session() as session:
        items, _more = outbound.list_messages(session, query, None)
    if _printed_as(output, MessageOut, items):
        return
    typer.echo(f"{'id':36}  {'type':20}  {'status':9}  {'attempts':>8}  {'to':36}  created at")
    for m in items:
        to = m.endpoint_id if m.endpoint_id is not None else f"e-mail {m.recipient}"
        typer.echo(
            f"{m.id!s:36}  {m.type.value:20}  {m.status.value:9}  {m.attempts:>8}  "
            f"{to!s:36}  {m.created_at.isoformat()}"
        )
    typer.echo(f"{len(items)} messages")


@messages_cli.command("resend")
def messages_resend(message_id: uuid.UUID) -> None:
    """Queue a message again, to be sent now: the same id and body."""
    with new_session(write=True) as session:
        message = outbound.resend(session, message_id, utcnow())
    typer.echo(f"message {message.id}: queued again ({message.attempts} attempts so far)")


@cli.command()
def worker() -> None:
    """Send the outbound messages and fire the reminders, alone (without serving HTTP)."""
    from prometheus_client import CollectorRegistry

    from app.outbound import worker as outbound_worker  # the sender loads only here
    from app.outbound.metrics import AttemptMetrics

    tracing.start()
    # Beside `nextstep serve` its attempts are counted in files the server reads
    # (app/serving.py); alone, nothing reads them.
    metrics = AttemptMetrics.on(CollectorRegistry()) if shared_metrics_dir() else None
    serving.say_sender_ready()
    poll = get_settings().worker_poll_seconds
    asyncio.run(_until_signalled(outbound_worker.run_forever(poll, metrics=metrics)))


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def _until_signalled(work: Coroutine[None, None, None]) -> None:
    """Run ``work`` until SIGTERM or SIGINT, then cancel it once and let it end: stopped
    like the server, the worker records what was answered and leaves what is in flight to
    its lease (its attempts say so). A second signal while it ends changes nothing, and
    the threads it used end with it, so that the process exits."""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()

    def stop() -> None:
        if not task.cancelling():
            task.cancel()

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        for signum in STOP_SIGNALS:
            # Not back to the default, which would end the process by the signal on the
            # way out (a second one, sent as the server stops, often arrives then).
            loop.remove_signal_handler(signum)
            signal.signal(signum, signal.SIG_IGN)


def _report_table(rows: list[ReportRow]) -> list[str]:
    def cell(value: object) -> str:
        return "-" if value is None else str(value)

    lines = [
        f"{'group':24}  {'due':>6}  {'kept':>6}  {'late':>6}  {'open late':>9}  "
        f"{'cancelled':>9}  {'on time':>7}  {'late p50 s':>10}  {'late p90 s':>10}  "
        f"{'wait p50 s':>10}  {'wait p90 s':>10}"
    ]
    for row in rows:
        rate = "-" if row.on_time_rate is None else f"{row.on_time_rate:.1%}"
        name = "TOTAL" if row is rows[-1] else cell(row.group)
        lines.append(
            f"{name[:24]:24}  {row.due:>6}  {row.kept:>6}  {row.late:>6}  {row.open_late:>9}  "
            f"{row.cancelled:>9}  {rate:>7}  {cell(row.lateness_p50_seconds):>10}  "
            f"{cell(row.lateness_p90_seconds):>10}  {cell(row.wait_p50_seconds):>10}  "
            f"{cell(row.wait_p90_seconds):>10}"
        )
    return lines


@cli.command()
def report(
    from_: Annotated[
        str | None, typer.Option("--from", help="RFC 3339 instant; default: --to - 30 days.")
    ] = None,
    to: Annotated[str | None, typer.Option(help="RFC 3339 instant; default now.")] = None,
    group_by: Annotated[GroupBy, typer.Option()] = GroupBy.owner,
    owed_by: Annotated[OwedBy, typer.Option()] = OwedBy.company,
    output: Annotated[OutputFormat, typer.Option("--format")] = OutputFormat.table,
) -> None:
    """The responsiveness report, as GET /v1/reports/responsiveness answers it."""
    start, end = _instant(from_, "--from"), _instant(to, "--to")
    with new_session() as session:
        answer = reports.responsiveness(session, start, end, utcnow(), group_by, owed_by)
    if output is OutputFormat.json:
        typer.echo(answer.model_dump_json(indent=2))
    elif output is OutputFormat.csv:
        typer.echo(report_csv(answer), nl=False)
    else:
        typer.echo(
            f"steps due {answer.from_.isoformat()} to {answer.to.isoformat()}, owed by the "
            f"{answer.owed_by}, judged at {answer.judged_at.isoformat()}, by {answer.group_by}"
        )
        for line in _report_table([*answer.items, answer.total]):
            typer.echo(line)


@owners_cli.command("list")
def owners_list(
    learned_from: Annotated[str | None, typer.Option(help='"api" or a source name')] = None,
    output: Annotated[OutputFormat, typer.Option("--format")] = OutputFormat.table,
) -> None:
    """The owners of the directory, by id."""
    query = OwnerQuery(learned_from=learned_from, limit=CSV_PAGE)
    with new_session() as session:
        items = _every_page(lambda after: owners.list_owners(session, query, after))
    if _printed_as(output, DirectoryOwner, items):
        return
    typer.echo(f"{'id':32}  {'name':24}  {'email':32}  {'learned from':12}  digest")
    for o in items:
        digest = f"at {o.digest.at}" if o.digest.enabled else "off"
        typer.echo(
            f"{o.id[:32]:32}  {(o.name or '-')[:24]:24}  {(o.email or '-')[:32]:32}  "
            f"{o.learned_from[:12]:12}  {digest}"
        )
    typer.echo(f"{len(items)} owners")


@owners_cli.command("set")
def owners_set(
    owner_id: Annotated[str, typer.Argument(metavar="ID", help="e.g. greenhouse:4080, hr-team")],
    name: Annotated[str | None, typer.Option()] = None,
    email: Annotated[str | None, typer.Option(help="an address alone: jane@example.com")] = None,
    calendar_id: Annotated[uuid.UUID | None, typer.Option()] = None,
    email_reminders: Annotated[
        bool | None, typer.Option("--email-reminders/--no-email-reminders")
    ] = None,
    digest: Annotated[bool | None, typer.Option("--digest/--no-digest")] = None,
    digest_at: Annotated[str | None, typer.Option(help="HH:MM, the owner's local time")] = None,
) -> None:
    """Create an owner, or change the fields given (the others stay as they are). From then
    on events from the ATS never change it."""
    if not re.fullmatch(OWNER_ID_PATTERN, owner_id):
        typer.echo(f"nextstep: ID: {OWNER_ID_DESCRIPTION}", err=True)
        raise SystemExit(2)
    fields: dict[str, object] = {
        "name": name,
        "email": email,
        "calendar_id": calendar_id,
        "email_reminders": email_reminders,
    }
    digest_fields = {"enabled": digest, "at": digest_at}
    body: dict[str, object] = {k: v for k, v in fields.items() if v is not None}
    if any(v is not None for v in digest_fields.values()):
        body["digest"] = {k: v for k, v in digest_fields.items() if v is not None}
    try:
        patch = OwnerPatch.model_validate(body)
    except ValidationError as exc:
        for error in exc.errors():
            where = "--" + "-".join(str(part) for part in error["loc"]).replace("_", "-")
            typer.echo(f"nextstep: {where}: {error['msg']}", err=True)
        raise SystemExit(2) from None
    with new_session(write=True) as session:
        row = owners.set_owner(session, owner_id, patch, utcnow())
    owner = owners.owner_out(row)
    typer.echo(json.dumps(owner.model_dump(mode="json"), indent=2))


@owners_cli.command("feed")
def owners_feed(
    owner_id: Annotated[str, typer.Argument(metavar="ID", help="e.g. greenhouse:4080, hr-team")],
) -> None:
    """A new private calendar feed of the owner's open steps: prints its URL, once (only a
    hash of its token is kept)."""
    with new_session(write=True) as session:
        feed, token = calendar_feeds.create_feed(session, owner_id, "cli", utcnow())
    typer.echo(f"created calendar feed {feed.id} for {feed.owner_id}")
    typer.echo("subscribe to it now; it cannot be shown again:")
    typer.echo(calendar_feeds.feed_url(token))


def main() -> None:
    # A process that dies in native code (a driver, a parser) says where on stderr, beside
    # the logs, instead of vanishing without a word.
    faulthandler.enable()
    try:
        cli()
    except SettingsError as exc:
        typer.echo(f"nextstep: bad setting: {exc}", err=True)
        raise SystemExit(2) from None
    except AppError as exc:
        typer.echo(f"nextstep: {exc.detail}", err=True)
        raise SystemExit(1) from None
