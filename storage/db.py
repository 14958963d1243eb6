"""Engines and sessions: SQLite (WAL, busy timeout) by default, PostgreSQL in production,
and `migrate()` which brings any database to the current schema, safely from two processes."""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger("careloop.storage")

MIGRATIONS = Path(__file__).with_name("migrations")
# Any constant works: it only has to be the same in every CareLoop process.
_MIGRATION_LOCK_ID = 0x0CA2E100


def normalize_url(url: str) -> str:
    """Use psycopg 3 for plain postgresql:// URLs (SQLAlchemy would pick psycopg2)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def create_db_engine(url: str, *, pool_size: int = 10) -> Engine:
    """Create an engine; SQLite gets WAL, full sync and a busy timeout on every connection."""
    url = normalize_url(url)
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"future": True}
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own BEGIN handling defers locks; take the write lock up front instead
        # so two writers queue on busy_timeout rather than failing on lock upgrade.
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    kwargs.update(pool_size=pool_size, max_overflow=pool_size)
    engine = create_engine(url, **kwargs)
    event.listen(engine, "checkout", _ping_if_idle(engine))
    event.listen(engine, "connect", _note_checkin)  # a new connection counts as just used
    event.listen(engine, "checkin", _note_checkin)
    return engine


# A pooled connection idle for longer than this is pinged before it is handed out (a
# restarted or failed-over database, a firewall that dropped the idle socket). One busy
# enough to be reused sooner is not: a ping per request would cost a round trip each.
PING_AFTER_IDLE_SECONDS = 10.0


def _note_checkin(_dbapi_conn: Any, record: Any) -> None:
    record.info["idle_since"] = time.monotonic()


# When each engine last lost a connection (time.monotonic()). A pooled connection last
# returned before that is pinged at checkout however recently it was used: a lost
# connection usually means a restarted database, and then its siblings are gone too.
# SQLAlchemy does this itself for the statements it runs (its pool's invalidation time);
# the statements sent straight to psycopg (`send_autocommitted`, `storage.press`) use this.
_LOST_AT: weakref.WeakKeyDictionary[Engine, float] = weakref.WeakKeyDictionary()


def note_lost(engine: Engine) -> None:
    """Have `engine`'s pool ping every connection returned before now at its next checkout."""
    _LOST_AT[engine] = time.monotonic()


def _ping_if_idle(engine: Engine) -> Any:
    def checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if (
            since is not None
            and time.monotonic() - since < PING_AFTER_IDLE_SECONDS
            and since > _LOST_AT.get(engine, -1.0)
        ):
            return
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:  # noqa: BLE001 - any failure means: not this connection
            raise DisconnectionError(f"idle connection did not answer: {exc}") from exc
        if not alive:
            raise DisconnectionError("idle connection did not answer")

    return checkout


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # SQLAlchemy's "begin" listener issues BEGIN itself
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit (callers render after committing)."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error."""
    session = factory()
    try:
        with session.begin():
            yield session
    finally:
        session.close()


@contextmanager
def read_once(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session for one read statement. On PostgreSQL its connection is in autocommit: the
    statement is its own transaction and snapshot, one round trip instead of three (BEGIN,
    the read, COMMIT). Elsewhere a `unit_of_work`. Nothing is written through it."""
    bind = factory.kw.get("bind")
    if not isinstance(bind, Engine) or bind.dialect.name != "postgresql":
        with unit_of_work(factory) as session:
            yield session
        return
    with autocommit(bind) as conn:
        session = factory(bind=conn)
        try:
            yield session
        finally:
            session.close()


@contextmanager
def autocommit(engine: Engine) -> Iterator[Connection]:
    """A pooled PostgreSQL connection on which each statement commits on its own, for the
    block: psycopg's autocommit switched on the driver connection and off again before it
    goes back to the pool. Same effect as SQLAlchemy's `isolation_level="AUTOCOMMIT"`
    execution option, without its per-checkout machinery (it showed in the create's
    profile). A connection whose autocommit cannot be switched back (it broke) is
    invalidated, never pooled in autocommit."""
    with engine.connect() as conn:
        driver = conn.connection.driver_connection
        driver.autocommit = True
        try:
            yield conn
        finally:
            try:
                driver.autocommit = False
            except Exception:  # noqa: BLE001 - broken or mid-transaction: drop it
                conn.invalidate()


def send_autocommitted(engine: Engine, sql: str, params: dict[str, Any]) -> Any:
    """Send one statement straight through psycopg on a pooled PostgreSQL connection in
    autocommit (its own transaction: one round trip) and return its first row (None: no
    row). `sql` is psycopg's (`%(name)s` parameters), built once by the caller. Without
    SQLAlchemy's `Connection` and execution machinery (a create's profile showed them), but
    through its pool (its checkout and checkin events run) and with its errors
    (`driver_error`); the connection goes back to the pool out of autocommit, or is
    invalidated."""
    try:
        fairy = engine.raw_connection()
    except Exception as exc:
        # The pool's own connect (a refused or restarted database): unlike
        # `engine.connect()`, `raw_connection()` lets the driver's error through as it is.
        raise_driver_error(engine, exc, None, sql, lambda _exc: None)
    raw = fairy.driver_connection
    try:
        try:
            raw.autocommit = True
            with raw.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchone()
        except Exception as exc:
            raise_driver_error(engine, exc, raw, sql, fairy.invalidate)
        finally:
            if fairy.is_valid:
                try:
                    raw.autocommit = False
                except Exception:  # noqa: BLE001 - broken or mid-transaction: drop it
                    fairy.invalidate()
    finally:
        fairy.close()


def driver_error(
    engine: Engine, exc: Exception, raw: Any, sql: str, invalidate: Callable[[Any], None]
) -> DBAPIError | None:
    """The error SQLAlchemy would raise for psycopg's `exc` from `sql` sent straight to the
    driver connection `raw` of `engine` (parameters hidden: they may hold free text), the
    connection invalidated (`invalidate(exc)`) if it was lost, and the pool's other
    connections pinged before their next use (`note_lost`); None when `exc` is not the
    driver's."""
    dialect = engine.dialect
    dbapi = dialect.loaded_dbapi
    if not isinstance(exc, dbapi.Error):
        return None
    lost = dialect.is_disconnect(exc, raw, None)
    if lost:
        invalidate(exc)
        note_lost(engine)
    return DBAPIError.instance(
        sql, None, exc, dbapi.Error, hide_parameters=True, connection_invalidated=lost,
        dialect=dialect,
    )  # fmt: skip


def raise_driver_error(
    engine: Engine, exc: Exception, raw: Any, sql: str, invalidate: Callable[[Any], None]
) -> NoReturn:
    """Raise `driver_error`'s SQLAlchemy error for `exc` (from `exc`), or `exc` itself when
    it is not the driver's."""
    error = driver_error(engine, exc, raw, sql, invalidate)
    if error is None:
        raise exc
    raise error from exc


def alembic_config(url: str) -> Config:
    """Alembic configuration pointing at the shipped migrations and the given database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


def migrate(engine: Engine) -> None:
    """Upgrade the database to the newest schema.

    On PostgreSQL an advisory lock serialises concurrent start-ups, so two processes starting
    at once do not both try to create the tables. SQLite serialises through its write lock.
    """
    url = engine.url.render_as_string(hide_password=False)
    cfg = alembic_config(url)
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
            conn.commit()
        try:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()
        finally:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _MIGRATION_LOCK_ID})
                conn.commit()
    log.info("database schema is current")


def schema_revisions(engine: Engine) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the database's Alembic revisions, the shipped migrations' heads); equal when the
    schema is current. Raises OperationalError when the database cannot be reached."""
    script = ScriptDirectory.from_config(alembic_config(engine.url.render_as_string(False)))
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_heads()
    return tuple(sorted(current)), tuple(sorted(script.get_heads()))


def known_revisions(url: str) -> set[str]:
    """Every revision of the shipped migrations."""
    script = ScriptDirectory.from_config(alembic_config(url))
    return {rev.revision for rev in script.walk_revisions()}


def ping(engine: Engine) -> bool:
    """True when the database answers a trivial query."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - health check reports, never raises
        return False


class SessionLock:
    """A PostgreSQL session-level advisory lock, held on a connection of its own.

    `held()` takes the lock when it is free and says whether this process holds it. The
    lock lasts until `release()` or until its connection ends: a process that crashes or is
    killed frees it at once, and another process's next `held()` takes it over. A held lock
    is re-checked (its connection pinged) at most every `check_every` seconds; if the
    connection is gone, so is the lock, and `held()` says so. On SQLite, which serves one
    process, the lock is always held.
    """

    def __init__(self, engine: Engine, lock_id: int, *, check_every: float = 5.0) -> None:
        self.engine = engine
        self.lock_id = lock_id
        self.check_every = check_every
        self._conn: Any = None
        self._checked = 0.0

    def held(self) -> bool:
        """Whether this process holds the lock now (taking it if it is free)."""
        if self.engine.dialect.name != "postgresql":
            return True
        now = time.monotonic()
        if self._conn is not None:
            if now - self._checked < self.check_every:
                return True
            try:
                self._conn.execute(text("SELECT 1"))
                self._checked = now
                return True
            except Exception:  # noqa: BLE001 - a lost connection is a lost lock
                log.warning("lost the connection holding a lock", extra={"event": "lock_lost"})
                self._drop()
        try:
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except Exception:  # noqa: BLE001 - the database is away: not held, try again later
            return False
        try:
            got = conn.execute(
                text("SELECT pg_try_advisory_lock(:id)"), {"id": self.lock_id}
            ).scalar()
        except Exception:  # noqa: BLE001
            got = False
        if not got:
            conn.close()
            return False
        self._conn, self._checked = conn, now
        return True

    def release(self) -> None:
        """Give the lock up (closing its connection frees it)."""
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": self.lock_id})
            except Exception:  # noqa: BLE001 - closing the connection frees it anyway
                pass
            self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        try:
            conn.invalidate()  # never back into the pool: it may still hold the lock
        except Exception:  # noqa: BLE001
            pass


def add_once(session: Session, row: object) -> bool:
    """Add `row` in a savepoint; False (and nothing added) when a unique constraint says it
    is there already: how a retried or concurrent duplicate is absorbed."""
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
        return True
    except IntegrityError:
        return False
