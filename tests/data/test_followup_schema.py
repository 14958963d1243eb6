"""The follow-up table as migration `0005_followups` creates it is the table the model
describes (columns, types, nullability, indexes, constraints), on the test database."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from storage.db import create_db_engine
from storage.models import Base
from storage.models_followups import FollowUp


def test_the_migration_creates_the_model_table(db_url: str):
    engine = create_db_engine(db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert FollowUp.__tablename__ in Base.metadata.tables
    assert [d for d in diff if FollowUp.__tablename__ in str(d)] == []
