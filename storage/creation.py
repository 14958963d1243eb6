"""Creating a consult: its reference number from the service's own sequence (PostgreSQL) or
counter row (SQLite), and the create itself, which stores the consult, its audit event and
its outbox rows together — one statement on PostgreSQL."""

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
    Connection,
    Engine,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, make_transient_to_detached, sessionmaker

from storage.db import send_autocommitted
from storage.models import (
    Consult,
    ServiceCounter,
)

# `bot.domain.lifecycle.OPEN_STATES`, spelled out: storage imports nothing from `bot`.
from storage.outbox_store import insert_outbox
from storage.repo import OPEN_STATUSES, add_audit, open_for_patient, origin_taken


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
    bind = session.get_bind()  # a press's session is bound to its connection
    engine = bind.engine if isinstance(bind, Connection) else bind
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


def new_consult(**values: Any) -> Consult:
    """A consult not yet stored, holding these column values: put in its dict directly, as
    `create_consult` reads them from there (the ORM's per-attribute events cost 30 µs a
    create). Stored like one built with `Consult(**values)`."""
    consult = Consult()
    consult.__dict__.update(values)
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
    sessions: sessionmaker[Session],
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
    open consults there. On PostgreSQL the whole create is one autocommitted statement (one
    round trip, no session), on SQLite one transaction of a few statements in a session of
    `sessions`. A concurrent create with the same `origin_key` raises IntegrityError.
    """
    engine = sessions.kw.get("bind")
    if isinstance(engine, Engine) and engine.dialect.name == "postgresql":
        return _create_consult_pg(engine, _NewConsult(consult, prefix, audit, messages))
    with sessions() as session:
        return _create_consult_sqlite(session, _NewConsult(consult, prefix, audit, messages))


def _create_consult_sqlite(session: Session, new: _NewConsult) -> Created | None:
    consult, prefix, audit, messages = new.consult, new.prefix, new.audit, new.messages
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
    box = (
        f"""), box AS (
    INSERT INTO outbox (consult_id, kind, payload, status, attempts, created_at, next_attempt_at)
    SELECT new.id, m.kind, m.payload, 'pending', 0, m.created_at, m.next_attempt_at
    FROM new, (VALUES {", ".join(rows)}) AS m (kind, payload, created_at, next_attempt_at)
"""
        if rows  # a create that queues no message has no outbox rows to insert
        else ""
    )
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
{box})
SELECT new.id, new.seq, new.ref,
    (SELECT coalesce(json_agg(json_build_array({", ".join(_OTHER_COLUMNS)})
        ORDER BY created_at, id), '[]') FROM others)
FROM new"""
    _create_sql[key] = sql
    return sql


@dataclass
class _NewConsult:
    """What `create_consult` stores, handed to the PostgreSQL path in one piece."""

    consult: Consult
    prefix: str
    audit: dict[str, Any]
    messages: Sequence[dict[str, Any]]


def _create_consult_pg(engine: Engine, new: _NewConsult) -> Created | None:
    consult, prefix, audit, messages = new.consult, new.prefix, new.audit, new.messages
    values = _consult_values(consult)
    params: dict[str, Any] = {
        # Columns left NULL are left out: json_populate_record makes a missing key NULL,
        # and the shorter JSON is cheaper to encode here and to parse in the database.
        "consult": json.dumps(
            {k: v for k, v in values.items() if v is not None}, default=_json_datetime
        ),
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
    # One statement in autocommit: atomic, and no BEGIN/COMMIT round trips. Straight to
    # psycopg on a pooled connection: the session has nothing to track here.
    with _service_sequence(engine, consult.service) as name:
        sql = _create_statement(name, len(messages), tuple(with_others))
        row = send_autocommitted(engine, sql, params)
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
