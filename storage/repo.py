"""Small keyword-only query functions over the CareLoop tables: the only place with SQL
outside migrations and reports. Each takes the session of the caller's unit of work."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Engine,
    String,
    case,
    cast,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, make_transient_to_detached

from storage.models import (
    AuditEvent,
    Consult,
    OnCall,
    OutboxMessage,
    ProcessedKey,
    Reply,
    ServiceCounter,
)

# `bot.domain.lifecycle.OPEN_STATES`, spelled out: storage imports nothing from `bot`.
OPEN_STATUSES = ("open", "acknowledged", "waiting")


def next_seq(*, session: Session, service: str) -> int:
    """Hand out the next reference number for a service, atomically across processes.

    PostgreSQL: `nextval` of the service's own sequence, which locks nothing until the
    caller commits (a rolled-back create leaves a gap, never a duplicate). SQLite, which
    serialises writers anyway: the `service_counters` row, updated in the caller's
    transaction.
    """
    if session.get_bind().dialect.name == "postgresql":
        return _next_from_sequence(session, service)
    stmt = (
        update(ServiceCounter)
        .where(ServiceCounter.service == service)
        .values(last=ServiceCounter.last + 1)
        .returning(ServiceCounter.last)
    )
    value = session.execute(stmt).scalar_one_or_none()
    if value is not None:
        return int(value)
    try:
        with session.begin_nested():
            session.execute(insert(ServiceCounter).values(service=service, last=1))
        return 1
    except IntegrityError:
        # Another process created the counter between our UPDATE and INSERT.
        return int(session.execute(stmt).scalar_one())


_SERVICE_KEY = re.compile(r"[a-z][a-z0-9_-]*")
# Engines whose database is known to have a service's sequence (checked once per process).
_sequences: weakref.WeakKeyDictionary[Engine, set[str]] = weakref.WeakKeyDictionary()
_sequences_lock = threading.Lock()
# Serialises creating a sequence across processes (any constant shared by CareLoop processes).
_SEQUENCE_LOCK_ID = 0x0CA2E101


def sequence_name(service: str) -> str:
    """The PostgreSQL sequence of a service's reference numbers, as a quoted identifier.

    Named after the table it stands in for. Service keys are `[a-z][a-z0-9_-]*` (quoted, so
    "a-b" and "a_b" stay apart); a key too long for a 63-byte name gets a digest suffix.
    """
    if not _SERVICE_KEY.fullmatch(service):
        raise ValueError(f"not a service key: {service!r}")
    name = f"service_counters_{service}"
    if len(name) > 63:
        digest = hashlib.sha256(service.encode()).hexdigest()[:12]
        name = f"service_counters_{service[:32]}_{digest}"
    return f'"{name}"'


def _next_from_sequence(session: Session, service: str) -> int:
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    with _service_sequence(engine, service) as name:
        return int(session.execute(text(f"SELECT nextval('{name}')")).scalar_one())


@contextmanager
def _service_sequence(engine: Engine, service: str) -> Iterator[str]:
    """The name of the service's sequence for a statement that uses it: created first if
    this process has not seen it yet, and forgotten again if the statement finds it missing
    (dropped behind our back), so the next create looks again."""
    name = sequence_name(service)
    if service not in _sequences.get(engine, ()):
        _ensure_sequence(engine, service, name)
        with _sequences_lock:
            _sequences.setdefault(engine, set()).add(service)
    try:
        yield name
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == _UNDEFINED_TABLE:
            with _sequences_lock:
                _sequences.get(engine, set()).discard(service)
        raise


_UNDEFINED_TABLE = "42P01"  # PostgreSQL's error for a missing relation (sequence, table)


def _ensure_sequence(engine: Engine, service: str, name: str) -> None:
    """Create a service's sequence if missing, continuing after its highest number so far.

    Its own short transaction (the sequence is visible to every process once committed),
    under an advisory lock so two processes do not both create it. Databases that numbered
    consults with `service_counters` continue after the higher of that counter and the
    highest stored number. OWNED BY ties it to `consults.seq`: dropping the table drops it,
    and `TRUNCATE consults RESTART IDENTITY` restarts it at 1.
    """
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _SEQUENCE_LOCK_ID})
        if conn.execute(text("SELECT to_regclass(:name)"), {"name": name}).scalar() is not None:
            return
        conn.execute(text(f"CREATE SEQUENCE IF NOT EXISTS {name} OWNED BY consults.seq"))
        highest = conn.execute(
            select(
                func.greatest(
                    select(func.coalesce(func.max(Consult.seq), 0))
                    .where(Consult.service == service)
                    .scalar_subquery(),
                    select(func.coalesce(func.max(ServiceCounter.last), 0))
                    .where(ServiceCounter.service == service)
                    .scalar_subquery(),
                )
            )
        ).scalar_one()
        if highest:
            conn.execute(text(f"SELECT setval('{name}', :n, true)"), {"n": int(highest)})


_INSERT_CONSULT = insert(Consult.__table__).returning(Consult.__table__.c.id)


def add_consult(*, session: Session, consult: Consult) -> Consult:
    """Insert a consult with one statement; the object comes back with its id, detached
    (as a committed consult is), without a flush of the session's unit of work."""
    # Every column is given (unset ones as their Python default or NULL: the table has no
    # server defaults), so the returned object has every attribute loaded, like a consult
    # read back after commit.
    values = _consult_values(consult)
    # Values as parameters, not in the statement: the statement stays one cached constant.
    new_id = session.execute(_INSERT_CONSULT, values).scalar_one()
    for key, value in values.items():
        setattr(consult, key, value)
    consult.id = new_id
    make_transient_to_detached(consult)
    return consult


# Marks the place in a queued message's params where `create_consult` puts the ids of the
# patient's other open consults.
OTHERS = "__patient_others__"


@dataclass
class Created:
    """What `create_consult` stored: the consult (detached, every column loaded) and the
    patient's other open consults as they were just before it (id, ref, service, status,
    permalink and created_at loaded)."""

    consult: Consult
    others: list[Consult]


def create_consult(
    *,
    session: Session,
    consult: Consult,
    prefix: str,
    audit: dict[str, Any],
    messages: Sequence[dict[str, Any]],
) -> Created | None:
    """Store a new consult with its reference number, its audit event and its outbox
    messages, atomically; None when a consult with the same `origin_key` exists already.

    `consult` has every column but id, seq and ref; the reference is `<prefix>-<seq>`.
    `audit` holds the audit event's actor, action, at and details. `messages` are outbox
    rows; a message whose params hold `"others": OTHERS` gets the ids of the patient's other
    open consults there. `session` must be fresh: on PostgreSQL the whole create is one
    autocommitted statement (one round trip), on SQLite one transaction of a few statements.
    A concurrent create with the same `origin_key` raises IntegrityError.
    """
    if session.get_bind().dialect.name == "postgresql":
        return _create_consult_pg(session, consult, prefix, audit, messages)
    with session.begin():
        if consult.origin_key and origin_taken(session=session, origin_key=consult.origin_key):
            return None
        consult.seq = next_seq(session=session, service=consult.service)
        consult.ref = f"{prefix}-{consult.seq}"
        others = list(open_for_patient(session=session, patient_key=consult.patient_key or ""))
        add_consult(session=session, consult=consult)
        add_audit(session=session, consult_id=consult.id, **audit)
        ids = [o.id for o in others]
        insert_outbox(
            session=session,
            rows=[_fill_others(dict(m), ids) | {"consult_id": consult.id} for m in messages],
        )
    for other in others:
        session.expunge(other)
    return Created(consult, others)


def _fill_others(row: dict[str, Any], ids: list[int]) -> dict[str, Any]:
    params = (row.get("payload") or {}).get("params") or {}
    if params.get("others") == OTHERS:
        row["payload"] = row["payload"] | {"params": params | {"others": ids}}
    return row


_CONSULT_VALUE_COLUMNS = [
    c.key for c in Consult.__table__.columns if c.key not in ("id", "seq", "ref")
]
_OTHER_COLUMNS = ("id", "ref", "service", "status", "permalink", "created_at")
_create_sql: dict[tuple[str, int, tuple[bool, ...]], str] = {}


def _create_statement(sequence: str, messages: int, with_others: tuple[bool, ...]) -> str:
    """The PostgreSQL statement of `create_consult`, built once per shape.

    The consult's columns travel as one JSON parameter (`json_populate_record`): psycopg
    caches its parsing of a query only up to 50 parameters, and re-parsing this one per
    request cost more than the rest of the create.
    """
    key = (sequence, messages, with_others)
    sql = _create_sql.get(key)
    if sql is not None:
        return sql
    rows = []
    for i, others in enumerate(with_others):
        payload = f"%(m{i}_payload)s::jsonb"
        if others:
            payload = (
                f"{payload} || jsonb_build_object('params', ({payload} -> 'params') || "
                "jsonb_build_object('others', (SELECT coalesce(jsonb_agg(id ORDER BY "
                "created_at, id), '[]'::jsonb) FROM others)))"
            )
        rows.append(
            f"(%(m{i}_kind)s, ({payload})::json, %(m{i}_created_at)s, %(m{i}_next_attempt_at)s)"
        )
    open_statuses = ", ".join(f"'{s}'" for s in OPEN_STATUSES)
    columns = ", ".join(_CONSULT_VALUE_COLUMNS)
    sql = f"""
WITH earlier AS (
    SELECT 1 FROM consults WHERE origin_key = %(origin_key)s
), others AS (
    SELECT {", ".join(_OTHER_COLUMNS)} FROM consults
    WHERE patient_key = %(patient_key)s AND status IN ({open_statuses})
), number AS (
    SELECT nextval('{sequence}') AS seq WHERE NOT EXISTS (SELECT 1 FROM earlier)
), new AS (
    INSERT INTO consults (seq, ref, {columns})
    SELECT number.seq, %(prefix)s || '-' || number.seq, {", ".join(f"r.{c}" for c in _CONSULT_VALUE_COLUMNS)}
    FROM number, json_populate_record(NULL::consults, %(consult)s::json) AS r
    RETURNING id, seq, ref
), audit AS (
    INSERT INTO audit_events (consult_id, actor, action, at, details)
    SELECT new.id, %(a_actor)s, %(a_action)s, %(a_at)s, %(a_details)s::json FROM new
), box AS (
    INSERT INTO outbox (consult_id, kind, payload, status, attempts, created_at, next_attempt_at)
    SELECT new.id, m.kind, m.payload, 'pending', 0, m.created_at, m.next_attempt_at
    FROM new, (VALUES {", ".join(rows)}) AS m (kind, payload, created_at, next_attempt_at)
)
SELECT new.id, new.seq, new.ref,
    (SELECT coalesce(json_agg(json_build_array({", ".join(_OTHER_COLUMNS)})
        ORDER BY created_at, id), '[]') FROM others)
FROM new"""
    _create_sql[key] = sql
    return sql


def _create_consult_pg(
    session: Session,
    consult: Consult,
    prefix: str,
    audit: dict[str, Any],
    messages: Sequence[dict[str, Any]],
) -> Created | None:
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    values = _consult_values(consult)
    params: dict[str, Any] = {
        "consult": json.dumps(values, default=_json_datetime),
        "origin_key": consult.origin_key,
        "patient_key": consult.patient_key or "",
        "prefix": prefix,
        "a_actor": audit["actor"],
        "a_action": audit["action"],
        "a_at": audit["at"],
        "a_details": json.dumps(audit.get("details") or {}),
    }
    with_others = []
    for i, m in enumerate(messages):
        params[f"m{i}_kind"] = m["kind"]
        params[f"m{i}_payload"] = json.dumps(m["payload"])
        params[f"m{i}_created_at"] = m["created_at"]
        params[f"m{i}_next_attempt_at"] = m["next_attempt_at"]
        with_others.append(((m["payload"].get("params") or {}).get("others")) == OTHERS)
    # One statement in autocommit: atomic, and no BEGIN/COMMIT round trips. Straight on a
    # pooled connection: the session has nothing to track here.
    with (
        _service_sequence(engine, consult.service) as name,
        engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn,
    ):
        sql = _create_statement(name, len(messages), tuple(with_others))
        row = conn.exec_driver_sql(sql, params).first()
    if row is None:
        return None
    new_id, seq, ref, others_json = row
    values.update(id=int(new_id), seq=int(seq), ref=str(ref))
    consult.__dict__.update(values)  # as loaded from the database: nothing to flush
    make_transient_to_detached(consult)
    others = []
    for item in others_json or []:
        other = Consult(**dict(zip(_OTHER_COLUMNS, item, strict=True)))
        if isinstance(other.created_at, str):
            other.created_at = datetime.fromisoformat(other.created_at)
        others.append(other)
    return Created(consult, others)


def _json_datetime(value: Any) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# Each column's value for a new consult when none is given: its scalar Python default
# (callables such as `dict` are called per consult), else NULL.
_CONSULT_DEFAULTS: dict[str, Any] = {}
for _column in Consult.__table__.columns:
    if _column.key != "id":
        _default = _column.default
        _CONSULT_DEFAULTS[_column.key] = (
            getattr(_default, "arg", None) if _default is not None else None
        )


def _consult_values(consult: Consult) -> dict[str, Any]:
    """Every column of a new consult but id: the given value, else the column's default."""
    given = consult.__dict__
    values: dict[str, Any] = {}
    for key, default in _CONSULT_DEFAULTS.items():
        value = given.get(key)
        if value is None and default is not None:
            value = default(None) if callable(default) else default
        values[key] = value
    return values


def get_consult(*, session: Session, consult_id: int, lock: bool = False) -> Consult | None:
    """A consult by id, optionally locked for update."""
    stmt = select(Consult).where(Consult.id == consult_id)
    if lock:
        stmt = stmt.with_for_update(key_share=True)
    return session.execute(stmt).scalar_one_or_none()


def get_by_ref(*, session: Session, ref: str, lock: bool = False) -> Consult | None:
    """A consult by its human reference (RAD-42)."""
    stmt = select(Consult).where(Consult.ref == ref.upper())
    if lock:
        stmt = stmt.with_for_update(key_share=True)
    return session.execute(stmt).scalar_one_or_none()


def get_by_origin(*, session: Session, origin_key: str) -> Consult | None:
    """The consult created by a given Slack trigger/view, if any."""
    return session.execute(
        select(Consult).where(Consult.origin_key == origin_key)
    ).scalar_one_or_none()


def origin_taken(*, session: Session, origin_key: str) -> bool:
    """Whether a consult was created by this Slack trigger/view (reads no consult)."""
    stmt = select(Consult.id).where(Consult.origin_key == origin_key)
    return session.execute(stmt).first() is not None


def get_by_message(*, session: Session, channel: str, ts: str) -> Consult | None:
    """The consult whose channel message is (channel, ts)."""
    return session.execute(
        select(Consult).where(Consult.channel == channel, Consult.channel_ts == ts)
    ).scalar_one_or_none()


def open_for_patient(
    *, session: Session, patient_key: str, exclude_id: int | None = None
) -> Sequence[Consult]:
    """Open consults about one patient, across services, oldest first."""
    stmt = select(Consult).where(
        Consult.patient_key == patient_key, Consult.status.in_(OPEN_STATUSES)
    )
    if exclude_id is not None:
        stmt = stmt.where(Consult.id != exclude_id)
    return session.execute(stmt.order_by(Consult.created_at)).scalars().all()


def open_for_user(*, session: Session, user: str) -> Sequence[Consult]:
    """Open or answered consults a user requested or is assigned, oldest first."""
    stmt = (
        select(Consult)
        .where(
            or_(Consult.requester == user, Consult.assignee == user),
            Consult.status.in_((*OPEN_STATUSES, "answered")),
        )
        .order_by(Consult.created_at)
    )
    return session.execute(stmt).scalars().all()


def assigned_open(*, session: Session, user: str) -> Sequence[Consult]:
    """Open consults assigned to a user (their handoff set), locked for update."""
    stmt = (
        select(Consult)
        .where(Consult.assignee == user, Consult.status.in_(OPEN_STATUSES))
        .order_by(Consult.created_at)
        .with_for_update()
    )
    return session.execute(stmt).scalars().all()


def unassigned_open(*, session: Session, service: str) -> Sequence[Consult]:
    """Open, unacknowledged consults of a service."""
    stmt = (
        select(Consult)
        .where(Consult.service == service, Consult.status == "open")
        .order_by(Consult.created_at)
    )
    return session.execute(stmt).scalars().all()


def move_unowned_to(*, session: Session, service: str, user: str) -> list[int]:
    """Make `user` the on-call of the service's open consults nobody owns yet (one UPDATE,
    so a consult acknowledged meanwhile keeps its owner); returns their ids."""
    stmt = (
        update(Consult)
        .where(
            Consult.service == service,
            Consult.status == "open",
            Consult.assignee.is_(None),
            or_(Consult.on_call.is_(None), Consult.on_call != user),
        )
        .values(on_call=user, version=Consult.version + 1)
        .returning(Consult.id)
    )
    return sorted(int(i) for i in session.execute(stmt).scalars())


def open_consults(*, session: Session, services: Sequence[str] | None = None) -> Sequence[Consult]:
    """All open consults (optionally of some services), oldest first."""
    stmt = select(Consult).where(Consult.status.in_(OPEN_STATUSES))
    if services is not None:
        stmt = stmt.where(Consult.service.in_(list(services)))
    return session.execute(stmt.order_by(Consult.created_at)).scalars().all()


def claim_due_nudges(*, session: Session, now: datetime, limit: int) -> Sequence[Consult]:
    """Lock consults whose next nudge is due; other processes skip the locked rows."""
    stmt = (
        select(Consult)
        .where(Consult.status.in_(OPEN_STATUSES), Consult.next_nudge_at <= now)
        .order_by(Consult.next_nudge_at)
        .limit(limit)
        # NO KEY UPDATE: the sweep changes no key, so it need not wait for (or skip rows
        # behind) the key-share locks that inserting a consult's outbox rows takes.
        .with_for_update(skip_locked=True, key_share=True)
    )
    return session.execute(stmt).scalars().all()


_INSERT_AUDIT = insert(AuditEvent.__table__)


def add_audit(
    *,
    session: Session,
    consult_id: int | None,
    actor: str,
    action: str,
    at: datetime,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one audit event, as one INSERT (no ORM object, no flush)."""
    session.execute(
        _INSERT_AUDIT,
        {
            "consult_id": consult_id,
            "actor": actor,
            "action": action,
            "at": at,
            "details": details or {},
        },
    )


def audit_for(*, session: Session, consult_id: int) -> Sequence[AuditEvent]:
    """A consult's audit trail, oldest first."""
    stmt = select(AuditEvent).where(AuditEvent.consult_id == consult_id).order_by(AuditEvent.id)
    return session.execute(stmt).scalars().all()


def claim_key(
    *, session: Session, key: str, at: datetime, result: dict[str, Any] | None = None
) -> bool:
    """Record that a logical Slack action was handled; False if it already was."""
    try:
        with session.begin_nested():
            session.add(ProcessedKey(key=key, at=at, result=result or {}))
            session.flush()
        return True
    except IntegrityError:
        return False


def get_key(*, session: Session, key: str) -> ProcessedKey | None:
    """The stored outcome of an already-handled action."""
    return session.get(ProcessedKey, key)


def add_reply(*, session: Session, reply: Reply) -> bool:
    """Store a thread reply once; False if that message ts was already stored."""
    try:
        with session.begin_nested():
            session.add(reply)
            session.flush()
        return True
    except IntegrityError:
        return False


def latest_reply(*, session: Session, consult_id: int, user: str | None = None) -> Reply | None:
    """The newest reply in a consult's thread (by one user, if given)."""
    stmt = select(Reply).where(Reply.consult_id == consult_id)
    if user is not None:
        stmt = stmt.where(Reply.user == user)
    return session.execute(stmt.order_by(Reply.at.desc(), Reply.id.desc()).limit(1)).scalar()


def latest_consultant_reply(*, session: Session, consult_id: int) -> Reply | None:
    """The newest reply not written by the requester."""
    stmt = (
        select(Reply)
        .where(Reply.consult_id == consult_id, Reply.by_requester.is_(False))
        .order_by(Reply.at.desc(), Reply.id.desc())
        .limit(1)
    )
    return session.execute(stmt).scalar()


def on_call_overrides(*, session: Session) -> dict[str, str]:
    """Service key → user set in Slack with /consult oncall."""
    return {row.service: row.user for row in session.execute(select(OnCall)).scalars()}


def set_on_call(*, session: Session, service: str, user: str, set_by: str, at: datetime) -> None:
    """Record who is on call for a service now."""
    row = session.get(OnCall, service)
    if row is None:
        session.add(OnCall(service=service, user=user, set_by=set_by, set_at=at))
    else:
        row.user, row.set_by, row.set_at = user, set_by, at


def add_outbox(*, session: Session, message: OutboxMessage) -> bool:
    """Queue a Slack call; False when its dedupe key was already queued."""
    if message.dedupe_key is None:
        session.add(message)
        return True
    try:
        with session.begin_nested():
            session.add(message)
            session.flush()
        return True
    except IntegrityError:
        return False


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
) -> list[tuple[int, str, dict[str, Any], str | None]]:
    """(id, kind, payload, consult channel) of due messages, fairly across destinations.

    Each destination contributes at most `per_destination` messages, and every destination's
    first message comes before anyone's second, so a backlog for one channel never fills
    the batch; destinations in `skip` (held back by pacing) are left out altogether. Within
    a consult only the first undelivered message is due (see `due_outbox_ids`).
    """
    dest = _destination()
    candidates = (
        select(
            OutboxMessage.id.label("id"),
            func.row_number().over(partition_by=dest, order_by=OutboxMessage.id).label("rn"),
        )
        .outerjoin(Consult, Consult.id == OutboxMessage.consult_id)
        .where(*_due_conditions(now))
    )
    if skip:
        candidates = candidates.where(dest.not_in(list(skip)))
    ranked = candidates.subquery()
    stmt = (
        select(OutboxMessage.id, OutboxMessage.kind, OutboxMessage.payload, Consult.channel)
        .join(ranked, ranked.c.id == OutboxMessage.id)
        .outerjoin(Consult, Consult.id == OutboxMessage.consult_id)
        .where(ranked.c.rn <= per_destination)
        .order_by(ranked.c.rn, OutboxMessage.id)
        .limit(limit)
    )
    return [(int(i), str(k), dict(p or {}), c) for i, k, p, c in session.execute(stmt)]


def _due_conditions(now: datetime) -> tuple[Any, ...]:
    """Pending (or leased past its lease), due, and first in line for its consult."""
    older = OutboxMessage.__table__.alias("older")
    blocked = (
        select(older.c.id)
        .where(
            older.c.consult_id == OutboxMessage.consult_id,
            older.c.id < OutboxMessage.id,
            older.c.status.in_(("pending", "sending")),
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


def due_outbox_ids(*, session: Session, now: datetime, limit: int) -> list[int]:
    """Ids of pending messages that are due and first in line for their consult.

    A message waits while an older message of the same consult is still undelivered, so
    each consult's messages reach Slack in order.
    """
    stmt = (
        select(OutboxMessage.id)
        .where(*_due_conditions(now))
        .order_by(OutboxMessage.id)
        .limit(limit)
    )
    return list(session.execute(stmt).scalars())


def lease_outbox(
    *, session: Session, message_id: int, owner: str, now: datetime, until: datetime
) -> bool:
    """Take one message for delivery; False if another process got it first."""
    stmt = (
        update(OutboxMessage)
        .where(
            OutboxMessage.id == message_id,
            or_(
                OutboxMessage.status == "pending",
                (OutboxMessage.status == "sending") & (OutboxMessage.lease_until < now),
            ),
        )
        .values(status="sending", lease_owner=owner, lease_until=until)
    )
    return session.execute(stmt).rowcount == 1


def get_outbox(*, session: Session, message_id: int) -> OutboxMessage | None:
    """One outbox message."""
    return session.get(OutboxMessage, message_id)


def outbox_counts(*, session: Session) -> dict[str, int]:
    """How many outbox messages are in each status."""
    rows = session.execute(
        select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
    )
    return {status: int(n) for status, n in rows}


def answered_before(*, session: Session, before: datetime) -> Sequence[Consult]:
    """Answered consults that nobody closed, answered before `before`, locked."""
    stmt = select(Consult).where(
        Consult.status == "answered", Consult.answered_at < before, Consult.purged_at.is_(None)
    )
    return session.execute(stmt.with_for_update(key_share=True)).scalars().all()


def purge_closed(
    *, session: Session, before: datetime, at: datetime, also: Sequence[int] = ()
) -> list[str]:
    """Blank patient references and free text of consults closed before `before` (and of
    the consults with ids in `also`)."""
    old = (Consult.status.in_(("closed", "cancelled"))) & (
        func.coalesce(Consult.closed_at, Consult.cancelled_at) < before
    )
    rows = (
        session.execute(
            select(Consult).where(
                or_(old, Consult.id.in_(list(also))) if also else old,
                Consult.purged_at.is_(None),
            )
        )
        .scalars()
        .all()
    )
    ids = [c.id for c in rows]
    for consult in rows:
        consult.patient = consult.patient_key = consult.question = consult.answer = None
        consult.feedback_comment = None
        consult.intake = {}
        consult.purged_at = at
    if ids:
        session.execute(update(Reply).where(Reply.consult_id.in_(ids)).values(text=None))
        session.execute(
            delete(OutboxMessage).where(
                OutboxMessage.consult_id.in_(ids), OutboxMessage.status.in_(("sent", "failed"))
            )
        )
    return [c.ref for c in rows]


# Not closed or cancelled: the sweep still watches them, or the requester may still reopen.
UNFINISHED_STATUSES = (*OPEN_STATUSES, "answered")


def unfinished_outside(
    *, session: Session, services: Sequence[str], sample: int = 5
) -> dict[str, tuple[int, list[str]]]:
    """Unfinished consults whose service key is not in `services`, by that key: how many,
    and the references of the oldest `sample` of them (references only, never PHI)."""
    counts = session.execute(
        select(Consult.service, func.count())
        .where(Consult.status.in_(UNFINISHED_STATUSES), Consult.service.not_in(list(services)))
        .group_by(Consult.service)
        .order_by(Consult.service)
    ).all()
    found: dict[str, tuple[int, list[str]]] = {}
    for key, count in counts:
        refs = session.execute(
            select(Consult.ref)
            .where(Consult.service == key, Consult.status.in_(UNFINISHED_STATUSES))
            .order_by(Consult.created_at, Consult.id)
            .limit(sample)
        ).scalars()
        found[str(key)] = (int(count), list(refs))
    return found
