"""on-call overrides that end (schedules resume after them)

Revision ID: 0003_oncall_schedules
Revises: 0002_critical_results
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_oncall_schedules"
down_revision = "0002_critical_results"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("on_call") as batch:
        batch.add_column(sa.Column("until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("on_call") as batch:
        batch.drop_column("until")
