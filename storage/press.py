"""A button press's round trips to PostgreSQL (the press is the hot path at a peak): two.
The locked read that also claims the exactly-once key (`lock_and_claim`) goes out with the
transaction's BEGIN, and all the press's writes go out as one statement with its COMMIT:
the consult row's UPDATE, its audit events, its outbox messages and its finished hop as
one data-modifying CTE instead of the ORM's flush of one statement per table (`hold`,
`write`). Both are sent straight to psycopg, pipelined with the BEGIN or COMMIT, in a
`unit` whose connection is in autocommit so that psycopg sends no BEGIN of its own; driver
errors are raised as SQLAlchemy raises them (`DBAPIError`, the connection invalidated when
it was lost). `hold` starts collecting a unit's writes (its audit events are held by
`repo.add_audit`; its outbox messages and hops are pending ORM objects anyway). A unit whose
writes this statement cannot express (a flush already happened, an object of another
table, a message with a dedupe key) falls back to the ORM: its held audit events are
inserted in order and the commit flushes the rest, exactly as before. On SQLite `unit` is
a plain `unit_of_work` and nothing is held."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, bindparam, event, exists, inspect, literal_column, select
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlalchemy.orm import Session, make_transient_to_detached, sessionmaker

from storage import repo
from storage.db import autocommit, raise_driver_error, read_once, unit_of_work
from storage.followups import NONE_WAITING, WAITING
from storage.models import Consult, OutboxMessage, UTCDateTime
from storage.models_followups import FollowUp
from storage.models_hops import ConsultHop
from storage.repo import HELD_AUDITS, insert_audits

_FLUSHED = "careloop.press.flushed"
_OWN_BEGIN = "careloop.press.own_begin"  # `Session.info`: a `unit`, BEGIN sent by the press
_DRIVER = "careloop.press.driver"  # `Session.info`: a `unit`'s connection and psycopg's

_OUTBOX_COLUMNS = [c.key for c in OutboxMessage.__table__.columns if c.key != "id"]
_OUTBOX_DEFAULTS = {
    c.key: getattr(c.default, "arg", None) if c.default is not None else None
    for c in OutboxMessage.__table__.columns
}
_HOP_COLUMNS = [c.key for c in ConsultHop.__table__.columns if c.key != "id"]
_AUDIT_COLUMNS = ("consult_id", "actor", "action", "at", "details")
_CONSULT_COLUMNS = frozenset(c.key for c in Consult.__table__.columns) - {"id"}


@contextmanager
def unit(factory: sessionmaker[Session]) -> Iterator[Session]:
    """`db.unit_of_work` for a press: commits on success, rolls back on any error. On
    PostgreSQL its connection is in autocommit and the press sends BEGIN with its first
    statement (`lock_and_claim`, which must come first) and COMMIT with its write; the
    session's own commit at the end sends COMMIT only if that did not (a repeat, the ORM
    fallback). Elsewhere a plain `unit_of_work`."""
    bind = factory.kw.get("bind")
    if not isinstance(bind, Engine) or bind.dialect.name != "postgresql":
        with unit_of_work(factory) as session:
            yield session
        return
    with autocommit(bind) as conn:  # psycopg's autocommit, off again before it is pooled
        session = factory(bind=conn)
        session.info[_OWN_BEGIN] = True
        try:
            with session.begin():
                session.info[_DRIVER] = (session.connection(), conn.connection.driver_connection)
                yield session
        finally:
            session.close()


def lock_and_claim(
    *, session: Session, ref: str, key: str | None, at: datetime, followups: bool = False
) -> tuple[Consult | None, bool]:
    """The consult `ref` names (`repo.get_by_ref`), its row locked, and whether `key` was
    claimed now (`repo.claim_key`; True without a key). On PostgreSQL one round trip: the
    claim is a data-modifying CTE of the locking read, sent straight to the driver and the
    row made a persistent object of `session` without the ORM's loading. The caller rolls
    back when the consult is missing or the action refused, which undoes the claim. With
    `followups` (an action that settles the follow-ups waiting on the consult's answer),
    on PostgreSQL a second statement in the same round trip, run once the row is locked,
    asks whether any waits: if none, `followups.waiting_on_answer` needs no query."""
    if session.get_bind().dialect.name != "postgresql":
        consult = repo.get_by_ref(session=session, ref=ref, lock=True)
        if consult is None or not key:
            return consult, consult is not None
        return consult, repo.claim_key(session=session, key=key, at=at)
    params = {"ref": ref.upper(), "key": key, "at": at}
    then = _WAITING if followups and session.info.get(_OWN_BEGIN) else None
    sql = _LOCK_CLAIM if key else _LOCK
    if then is None:
        row, waiting = _send(session, sql, params, begin=True), None
    else:
        row, waiting = _send(session, sql, params, begin=True, then=then)
    if row is None:
        return None, False
    consult = _detached(row)
    session.add(consult)  # persistent, as if the session had loaded it
    if waiting is not None and not waiting[0]:
        session.info.setdefault(NONE_WAITING, set()).add(consult.id)
    return consult, bool(row[-1])


def read(factory: sessionmaker[Session], ref: str) -> Consult | None:
    """The consult `ref` names (`repo.get_by_ref`), read once (a modal's button): detached,
    every column loaded. On PostgreSQL one statement in autocommit (`db.read_once`) sent
    straight to the driver, without the ORM's loading."""
    with read_once(factory) as session:
        if session.get_bind().dialect.name != "postgresql":
            return repo.get_by_ref(session=session, ref=ref)
        row = _send(session, _READ, {"ref": ref.upper()})
    return None if row is None else _detached(row)


def _detached(row: Any) -> Consult:
    """The consult of a row of `_READ_COLUMNS`, as the ORM loads it (every column, aware
    UTC datetimes, nothing changed), detached."""
    values = dict(zip(_READ_COLUMNS, row, strict=False))
    for name in _DATETIME_COLUMNS:
        if values[name] is not None:
            values[name] = values[name].astimezone(UTC)
    consult = Consult()
    consult.__dict__.update(values)
    make_transient_to_detached(consult)
    return consult


_READ_COLUMNS = [c.key for c in Consult.__table__.columns]
_DATETIME_COLUMNS = [c.key for c in Consult.__table__.columns if isinstance(c.type, UTCDateTime)]


def _sql(stmt: Any) -> str:
    """`stmt` as psycopg's SQL, named parameters as `%(name)s`: compiled once, at import."""
    return str(stmt.compile(dialect=psycopg_dialect()))


# The consult a reference names now or named before a transfer (`repo.named`).
_BY_REF = select(*Consult.__table__.columns).where(repo.named(bindparam("ref")))
_READ = _sql(_BY_REF)


def _locked(claimed: str) -> str:
    return _sql(
        _BY_REF.add_columns(literal_column(claimed)).with_for_update(key_share=True, of=Consult)
    )


_LOCK = _locked("1")
_LOCK_CLAIM = (
    "WITH claim AS (INSERT INTO processed_keys (key, at, result) VALUES (%(key)s, %(at)s, "
    "'{}') ON CONFLICT (key) DO NOTHING RETURNING key) " + _locked("(SELECT count(*) FROM claim)")
)
# Run after the locked read, with a snapshot of its own: whether a follow-up waits
# (`followups.waiting_on_answer`).
_WAITING = _sql(
    select(
        exists(
            select(literal_column("1"))
            .select_from(FollowUp)
            .where(
                WAITING,
                FollowUp.consult_id.in_(select(Consult.id).where(repo.named(bindparam("ref")))),
            )
        )
    )
)


def hold(session: Session) -> None:
    """From now on, `session`'s audit events wait for `write` (PostgreSQL only)."""
    if session.get_bind().dialect.name == "postgresql":
        session.info[HELD_AUDITS] = []
        session.info.pop(_FLUSHED, None)


@event.listens_for(Session, "after_flush")
def _flushed(session: Session, _context: Any) -> None:
    # Writes of a held unit reached the database through the ORM: `write` must not send
    # the rest as its own statement.
    if HELD_AUDITS in session.info:
        session.info[_FLUSHED] = True


def write(session: Session, consult: Consult) -> bool:
    """Send what the unit holds: True when it went out as one statement (in a `unit`, with
    its COMMIT: nothing may follow; the consult and the new objects are expunged, the
    session has nothing left to flush); False when nothing was held or it fell back to the
    ORM (held audit events inserted now, the rest flushed at commit)."""
    audits = session.info.pop(HELD_AUDITS, None)
    if audits is None:
        return False
    flushed = session.info.pop(_FLUSHED, False)
    new = sorted(session.new, key=lambda o: inspect(o).insert_order)
    changes = _changes(consult)
    if flushed or changes is None or not _expressible(session, consult, new):
        insert_audits(session=session, rows=audits)
        return False
    outbox = [_outbox_row(o) for o in new if isinstance(o, OutboxMessage)]
    hops = [{k: o.__dict__.get(k) for k in _HOP_COLUMNS} for o in new if isinstance(o, ConsultHop)]
    sql = _statement(tuple(sorted(changes)), bool(audits), bool(outbox), bool(hops))
    params = {
        "id": consult.id,
        "consult": _json(changes),
        "audits": _json([{k: a.get(k) for k in _AUDIT_COLUMNS} for a in audits]),
        "outbox": _json(outbox),
        "hops": _json(hops),
    }
    _send(session, sql, params, commit=True)
    # Committed: nothing is left to flush. Detached all at once (`expunge` cascades per
    # object); what the caller holds keeps its loaded values.
    session.expunge_all()
    return True


def _changes(consult: Consult) -> dict[str, Any] | None:
    """The consult's changed columns and their new values; None when it is not a loaded,
    persistent row of this session."""
    state = inspect(consult)
    if not state.persistent:
        return None
    values = consult.__dict__
    return {
        key: values[key]
        for key, before in state.committed_state.items()
        if key in _CONSULT_COLUMNS and values.get(key) != before
    }


def _expressible(session: Session, consult: Consult, new: list[Any]) -> bool:
    if session.deleted or any(obj is not consult for obj in session.dirty):
        return False
    return all(
        isinstance(o, ConsultHop) or (isinstance(o, OutboxMessage) and o.dedupe_key is None)
        for o in new
    )


def _outbox_row(message: OutboxMessage) -> dict[str, Any]:
    given = message.__dict__
    row = {}
    for key in _OUTBOX_COLUMNS:
        value = given.get(key)
        if value is None:
            default = _OUTBOX_DEFAULTS[key]
            value = default(None) if callable(default) else default
        row[key] = value
    return row


_sql: dict[tuple[Any, ...], str] = {}


def _statement(changed: tuple[str, ...], audits: bool, outbox: bool, hops: bool) -> str:
    """The CTE for one shape of press, built once: each table's rows travel as one JSON
    parameter (few parameters: psycopg caches the parsing of the query, and PostgreSQL
    prepares it once per connection)."""
    key = (changed, audits, outbox, hops)
    sql = _sql.get(key)
    if sql is not None:
        return sql
    parts = []
    if changed:
        sets = ", ".join(f"{c} = r.{c}" for c in changed)
        parts.append(
            f"upd AS (UPDATE consults SET {sets} "
            "FROM json_populate_record(NULL::consults, %(consult)s::json) AS r "
            "WHERE consults.id = %(id)s RETURNING consults.id)"
        )
    else:  # nothing changed on the row (not reached by a transition: the version moves)
        parts.append("upd AS (SELECT id FROM consults WHERE id = %(id)s)")
    for name, table, columns, param in (
        ("audit", "audit_events", _AUDIT_COLUMNS, "audits"),
        ("box", "outbox", _OUTBOX_COLUMNS, "outbox"),
        ("hop", "consult_hops", _HOP_COLUMNS, "hops"),
    ):
        if not {"audits": audits, "outbox": outbox, "hops": hops}[param]:
            continue
        cols = ", ".join(f'"{c}"' for c in columns)
        picked = ", ".join(f'r."{c}"' for c in columns)
        # In the order given: ids are handed out in the order the rows were queued.
        parts.append(
            f"{name} AS (INSERT INTO {table} ({cols}) SELECT {picked} FROM "
            f"json_populate_recordset(NULL::{table}, %({param})s::json) "
            "WITH ORDINALITY AS r ORDER BY r.ordinality)"
        )
    # Fails (and writes nothing) unless the row was updated: it is locked by this
    # transaction, so it cannot have gone, but a COMMIT must not follow a write that missed.
    sql = "WITH " + ", ".join(parts) + " SELECT 1 / count(*) FROM upd"
    _sql[key] = sql
    return sql


def _send(
    session: Session, sql: str, params: dict[str, Any], *, begin: bool = False,
    commit: bool = False, then: str | None = None,
) -> Any:  # fmt: skip
    """Run `sql` on the session's connection straight through psycopg and return its first
    row (None: no row); with `then`, (that row, the first row of `then`, run after it with
    the same parameters). In a `unit`, BEGIN (`begin`, if no transaction is open yet),
    `then` and COMMIT (`commit`) go in the same round trip (pipeline mode). Driver errors
    come out as SQLAlchemy's, parameters hidden (they may hold free text)."""
    driver = session.info.get(_DRIVER)
    if driver is None:
        conn = session.connection()
        raw: Any = conn.connection.dbapi_connection
    else:
        conn, raw = driver
    try:
        with raw.cursor() as cursor:
            if not session.info.get(_OWN_BEGIN):
                cursor.execute(sql, params)
                return cursor.fetchone()
            with raw.cursor() as other:
                with raw.pipeline():
                    if begin and raw.pgconn.transaction_status == _IDLE:
                        other.execute("BEGIN", prepare=False)
                    cursor.execute(sql, params)
                    if then is not None:
                        other.execute(then, params)
                    if commit:
                        raw.execute("COMMIT", prepare=False)
                row = cursor.fetchone()
                return row if then is None else (row, other.fetchone())
    except Exception as exc:
        raise_driver_error(conn.engine, exc, raw, sql, conn.invalidate)


_IDLE = 0  # psycopg.pq.TransactionStatus.IDLE: no transaction open on the connection


def _json(value: Any) -> str:
    return json.dumps(value, default=_json_value)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        # As `models.UTCDateTime` binds it: aware, in UTC.
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
