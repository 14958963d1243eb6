"""Queries over the outbox table: queueing messages, the fair due-message query, leasing
and counts. The dispatcher's delivery state lives in these rows."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Integer,
    String,
    bindparam,
    case,
    cast,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from storage.db import add_once
from storage.models import (
    Consult,
    OutboxMessage,
)

# The mark of a message taken back after its lease ran out: its last attempt may have
# landed (delivery looks in Slack before sending it again).
LEASE_RAN_OUT = "unclear: the lease ran out; an earlier attempt may have landed"

# `bot.domain.lifecycle.OPEN_STATES`, spelled out: storage imports nothing from `bot`.


def add_outbox(*, session: Session, message: OutboxMessage) -> bool:
    """Queue a Slack call; False when its dedupe key was already queued."""
    if message.dedupe_key is None:
        session.add(message)
        return True
    return add_once(session, message)


def latest_dm_payload(*, session: Session, consult_id: int, template: str) -> dict[str, Any] | None:
    """The payload of the newest direct message queued for a consult with `template`
    (None if there is none, e.g. retention deleted it)."""
    rows = session.execute(
        select(OutboxMessage.payload)
        .where(OutboxMessage.consult_id == consult_id, OutboxMessage.kind == "dm")
        .order_by(OutboxMessage.id.desc())
    ).scalars()
    for payload in rows:
        if (payload or {}).get("template") == template:
            return dict(payload)
    return None


_INSERT_OUTBOX = insert(OutboxMessage.__table__)


def insert_outbox(*, session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Queue several Slack calls without dedupe keys in one statement (no flush)."""
    assert all(row.get("dedupe_key") is None for row in rows)
    if rows:
        session.execute(_INSERT_OUTBOX, list(rows))


def _destination() -> Any:
    """Where a message goes, as SQL: the channel (or, for a DM, the user) a post will be
    paced on. Messages that are not posts each count as their own destination."""
    user = OutboxMessage.payload["user"].as_string()
    channel = OutboxMessage.payload["channel"].as_string()
    return case(
        (OutboxMessage.kind == "dm", user),
        (OutboxMessage.kind == "channel", func.coalesce(channel, Consult.channel)),
        (OutboxMessage.kind.in_(("post", "thread")), Consult.channel),
        else_="#" + cast(OutboxMessage.id, String),
    )


def due_outbox(
    *,
    session: Session,
    now: datetime,
    limit: int,
    skip: Sequence[str] = (),
    per_destination: int = 4,
    informational: Collection[str] = (),
    first: Collection[str] = (),
) -> list[tuple[int, str, dict[str, Any], str | None]]:
    """(id, kind, payload, consult channel) of due messages, fairly across destinations.

    Each destination contributes at most `per_destination` messages, and every destination's
    first message comes before anyone's second, older before newer (and of messages queued
    together, the channels' before the people's, so a storm summary waits for no
    requester's "overdue" message; an older direct message never waits behind newer channel
    posts, however many channels have some), so a backlog for one channel never fills the
    batch; destinations in `skip` (held back by pacing) are left out altogether. Within
    a destination, messages whose template is in `informational` come after the others,
    and those in `first` (overdue notices) before the others.
    Within a consult, a message waits for the older ones it must follow (see `_due_conditions`).
    """
    stmt = _due_statement(frozenset(informational), frozenset(first), bool(skip))
    params: dict[str, Any] = {"now": now, "limit": limit, "per_destination": per_destination}
    if skip:
        params["skip"] = list(skip)
    return [(int(i), str(k), dict(p or {}), c) for i, k, p, c in session.execute(stmt, params)]


# The due query of each shape (the dispatcher asks with the same templates every round):
# built once, its values bound at execution. Building it (a few hundred expression objects)
# cost more Python time than the rest of a delivery round, every 50 ms under a paced backlog.
_due_statements: dict[tuple[frozenset[str], frozenset[str], bool], Any] = {}


def _due_statement(informational: frozenset[str], first: frozenset[str], skipping: bool) -> Any:
    key = (informational, first, skipping)
    stmt = _due_statements.get(key)
    if stmt is not None:
        return stmt
    now = bindparam("now", type_=OutboxMessage.__table__.c.next_attempt_at.type)
    dest = _destination()
    later = _template_in(OutboxMessage.payload, informational)
    sooner = _template_in(OutboxMessage.payload, first)
    candidates = (
        select(
            OutboxMessage.id.label("id"),
            func.row_number()
            .over(partition_by=dest, order_by=(later, sooner.desc(), OutboxMessage.id))
            .label("rn"),
        )
        .outerjoin(Consult, Consult.id == OutboxMessage.consult_id)
        .where(*_due_conditions(now, informational))
    )
    if skipping:
        candidates = candidates.where(dest.not_in(bindparam("skip", expanding=True)))
    ranked = candidates.subquery()
    stmt = (
        select(OutboxMessage.id, OutboxMessage.kind, OutboxMessage.payload, Consult.channel)
        .join(ranked, ranked.c.id == OutboxMessage.id)
        .outerjoin(Consult, Consult.id == OutboxMessage.consult_id)
        .where(ranked.c.rn <= bindparam("per_destination", type_=Integer))
        .order_by(
            ranked.c.rn, OutboxMessage.created_at, OutboxMessage.kind == "dm", OutboxMessage.id
        )
        .limit(bindparam("limit", type_=Integer))
    )
    _due_statements[key] = stmt
    return stmt


def _template_in(payload: Any, templates: Collection[str]) -> Any:
    """1 when the message's template is one of `templates`, else 0 (as SQL)."""
    if not templates:
        return literal(0)
    return case((payload["template"].as_string().in_(sorted(templates)), 1), else_=0)


def _due_conditions(now: Any, informational: Collection[str] = ()) -> tuple[Any, ...]:
    """Pending (or leased past its lease), due, and not behind an older undelivered message
    of its consult that it must follow: the consult's card (everything follows it); in the
    channel (thread notes, card updates), every older channel message except an
    informational one overtaken by one that is not; a direct message, the older direct
    messages to the same person. A person's direct messages never wait behind a paced
    channel, and a nudge never waits behind a note the card already shows."""
    older = OutboxMessage.__table__.alias("older")
    in_channel_lane = older.c.kind != "dm"
    if informational:
        overtakes = _template_in(OutboxMessage.payload, informational) == 0
        passable = _template_in(older.c.payload, informational) == 1
        in_channel_lane = in_channel_lane & ~(overtakes & passable)
    same_lane = case(
        (
            OutboxMessage.kind == "dm",
            (older.c.kind == "dm")
            & (older.c.payload["user"].as_string() == OutboxMessage.payload["user"].as_string()),
        ),
        else_=in_channel_lane,
    )
    blocked = (
        select(older.c.id)
        .where(
            older.c.consult_id == OutboxMessage.consult_id,
            older.c.id < OutboxMessage.id,
            older.c.status.in_(("pending", "sending")),
            or_(older.c.kind == "post", same_lane),
        )
        .exists()
    )
    return (
        or_(
            OutboxMessage.status == "pending",
            (OutboxMessage.status == "sending") & (OutboxMessage.lease_until < now),
        ),
        OutboxMessage.next_attempt_at <= now,
        or_(OutboxMessage.consult_id.is_(None), ~blocked),
    )


def due_outbox_ids(
    *, session: Session, now: datetime, limit: int, informational: Collection[str] = ()
) -> list[int]:
    """Ids of pending messages that are due and not waiting behind an older message of
    their consult (see `_due_conditions`), so each consult's messages reach each place in
    order.
    """
    stmt = (
        select(OutboxMessage.id)
        .where(*_due_conditions(now, informational))
        .order_by(OutboxMessage.id)
        .limit(limit)
    )
    return list(session.execute(stmt).scalars())


def supersede_pending(
    *, session: Session, consult_id: int, kind: str, template: str, newest: OutboxMessage
) -> int:
    """Of the consult's still-queued messages of `kind` and `template` (`newest`, flushed,
    among them), one is sent: the oldest keeps its place in line (a nudge replaced every
    interval under a backlog must not go to the back each time and never be sent) and
    takes `newest`'s payload; the others, `newest` included, are marked `superseded`.
    Returns how many were. A message already leased for sending is left alone."""
    queued = list(
        session.execute(
            select(OutboxMessage.id)
            .where(
                OutboxMessage.consult_id == consult_id,
                OutboxMessage.kind == kind,
                OutboxMessage.status == "pending",
                OutboxMessage.payload["template"].as_string() == template,
            )
            .order_by(OutboxMessage.id)
        ).scalars()
    )
    if len(queued) < 2:
        return 0
    oldest, rest = queued[0], queued[1:]
    took = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == oldest, OutboxMessage.status == "pending")
        .values(payload=newest.payload)
        .execution_options(synchronize_session=False)
    ).rowcount
    if took != 1:  # leased meanwhile: the newest goes out after it
        rest = [i for i in rest if i != newest.id]
    if not rest:
        return 0
    done = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(rest), OutboxMessage.status == "pending")
        .values(status="superseded")
        .execution_options(synchronize_session=False)
    )
    session.expire(newest, ["status"])
    return int(done.rowcount or 0)


def lease_outbox(
    *, session: Session, message_id: int, owner: str, now: datetime, until: datetime
) -> OutboxMessage | None:
    """Take one message for delivery, counting the attempt, in one statement; None if
    another process got it first. A message taken back from a lease that ran out (its
    process died mid-send) is marked `LEASE_RAN_OUT`: the attempt may have landed."""
    ran_out = OutboxMessage.status == "sending"
    stmt = (
        update(OutboxMessage)
        .where(
            OutboxMessage.id == message_id,
            or_(
                OutboxMessage.status == "pending",
                ran_out & (OutboxMessage.lease_until < now),
            ),
        )
        .values(
            status="sending",
            lease_owner=owner,
            lease_until=until,
            attempts=OutboxMessage.attempts + 1,
            last_error=case((ran_out, LEASE_RAN_OUT), else_=OutboxMessage.last_error),
        )
        .returning(OutboxMessage)
        .execution_options(synchronize_session=False)
    )
    return session.execute(stmt).scalar_one_or_none()


def expire_own_leases(*, session: Session, owner: str, now: datetime) -> int:
    """End at once every lease `owner` still holds on a message being sent (its process
    lost the database mid-round and holds nothing in flight now): the next round takes
    them again as it would after a crash, looking in Slack first. How many."""
    stmt = (
        update(OutboxMessage)
        .where(OutboxMessage.lease_owner == owner, OutboxMessage.status == "sending")
        .values(lease_until=now - timedelta(seconds=1))
    )
    return int(session.execute(stmt).rowcount or 0)


def get_outbox(*, session: Session, message_id: int) -> OutboxMessage | None:
    """One outbox message."""
    return session.get(OutboxMessage, message_id)


def outbox_counts(*, session: Session) -> dict[str, int]:
    """How many outbox messages are in each status."""
    rows = session.execute(
        select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
    )
    return {status: int(n) for status, n in rows}
