"""sweep index: open consults by next nudge time

The sweep claims the consults whose next nudge is due, oldest first, at most 500 at a time
(`storage.repo.due_nudges_statement`). The composite index on (status, next_nudge_at)
finds the due ones but, with three open statuses, returns them in three runs that must be
sorted before the limit applies: the claim reads every due consult. A partial index on
`next_nudge_at` over open consults returns them already in order, so the claim stops after
the first 500 (and stays small: closed consults are not in it).

Revision ID: 0004_sweep_index
Revises: 0003_oncall_schedules
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_sweep_index"
down_revision = "0003_oncall_schedules"
branch_labels = None
depends_on = None

_OPEN = sa.text("status IN ('open', 'acknowledged', 'waiting')")


def upgrade() -> None:
    op.create_index(
        "ix_consults_open_next_nudge",
        "consults",
        ["next_nudge_at"],
        unique=False,
        postgresql_where=_OPEN,
        sqlite_where=_OPEN,
    )


def downgrade() -> None:
    op.drop_index("ix_consults_open_next_nudge", table_name="consults")
