"""Alembic environment: runs migrations on the connection `storage.db.migrate` hands over,
or on `sqlalchemy.url` when Alembic is used from the command line."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from storage.models import Base

config = context.config
target_metadata = Base.metadata


def _migrate(connection: Connection) -> None:
    """Run the migrations on one connection (SQLite alters tables in batch mode)."""
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate the handed-over connection, or one to `sqlalchemy.url`."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as conn:
        _migrate(conn)


run_migrations_online()
