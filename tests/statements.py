"""The SQL statements a block sends, for tests that count them: on PostgreSQL as psycopg
sends them (SQLAlchemy's and those `storage.press` sends straight to the driver), one
entry per round trip (statements pipelined together joined by "; ", with psycopg's own
BEGIN, COMMIT and ROLLBACK), elsewhere as SQLAlchemy sends them; each on one line, lower
case."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """Every statement sent on any connection while the block runs (any thread)."""
    seen: list[str] = []
    if engine.dialect.name != "postgresql":

        def record(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
            seen.append(" ".join(statement.split()).lower())

        event.listen(engine, "before_cursor_execute", record)
        try:
            yield seen
        finally:
            event.remove(engine, "before_cursor_execute", record)
        return
    with _driver_statements(seen):
        yield seen


@contextmanager
def _driver_statements(seen: list[str]) -> Iterator[None]:
    import psycopg  # noqa: PLC0415 - only where PostgreSQL runs

    idle = psycopg.pq.TransactionStatus.IDLE
    local = threading.local()
    saved = {
        (psycopg.Cursor, "execute"): psycopg.Cursor.execute,
        (psycopg.Connection, "commit"): psycopg.Connection.commit,
        (psycopg.Connection, "rollback"): psycopg.Connection.rollback,
        (psycopg.Connection, "pipeline"): psycopg.Connection.pipeline,
    }

    def add(text: str) -> None:
        group = getattr(local, "group", None)
        (seen if group is None else group).append(" ".join(text.split()).lower())

    def execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        conn = self.connection
        if conn.info.transaction_status == idle and not conn.autocommit:
            add("begin")  # psycopg sends it first, as a round trip of its own
        add(str(query))
        return saved[psycopg.Cursor, "execute"](self, query, *args, **kwargs)

    def ending(name: str) -> Any:
        def end(self: Any) -> Any:
            if self.info.transaction_status != idle:
                add(name)
            return saved[psycopg.Connection, name](self)

        return end

    @contextmanager
    def pipeline(self: Any) -> Iterator[Any]:
        local.group = []
        try:
            with saved[psycopg.Connection, "pipeline"](self) as p:
                yield p
        finally:
            group, local.group = local.group, None
            if group:
                seen.append("; ".join(group))

    patched = {"execute": execute, "commit": ending("commit"), "rollback": ending("rollback")}
    patched["pipeline"] = pipeline
    for (owner, name), _ in saved.items():
        setattr(owner, name, patched[name])
    try:
        yield
    finally:
        for (owner, name), original in saved.items():
            setattr(owner, name, original)


@contextmanager
def refusing(
    engine: Engine, contains: str, error: Callable[[str, Any], OperationalError]
) -> Iterator[list[str]]:
    """While the block runs, every statement of `engine` whose SQL holds `contains` (lower
    case) fails before it reaches the database, with the error `error(sql, params)` makes.
    On PostgreSQL at psycopg's cursor (what `storage` sends straight to the driver fails
    too), as the driver's OperationalError of that message; elsewhere at SQLAlchemy's
    `before_cursor_execute`, as that error. Yields the statements refused: a test checks
    its fault was injected."""
    refused: list[str] = []
    if engine.dialect.name != "postgresql":

        def refuse(conn: Any, cursor: Any, sql: str, params: Any, *_: Any) -> None:
            if contains in sql.lower():
                refused.append(sql)
                raise error(sql, params)

        event.listen(engine, "before_cursor_execute", refuse)
        try:
            yield refused
        finally:
            event.remove(engine, "before_cursor_execute", refuse)
        return
    import psycopg  # noqa: PLC0415 - only where PostgreSQL runs

    original = psycopg.Cursor.execute
    database = engine.url.database

    def execute(self: Any, query: Any, params: Any = None, *args: Any, **kwargs: Any) -> Any:
        sql = str(query)
        if contains in sql.lower() and self.connection.info.dbname == database:
            refused.append(sql)
            raise psycopg.OperationalError(str(error(sql, params).orig))
        return original(self, query, params, *args, **kwargs)

    psycopg.Cursor.execute = execute  # type: ignore[method-assign]
    try:
        yield refused
    finally:
        psycopg.Cursor.execute = original  # type: ignore[method-assign]
