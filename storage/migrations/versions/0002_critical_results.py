"""critical results

Revision ID: 0002_critical_results
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_critical_results"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "critical_results",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("ref", sa.String(length=16), nullable=True),
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("sender", sa.String(length=32), nullable=False),
        sa.Column("recipient", sa.String(length=32), nullable=False),
        sa.Column("recipients", sa.JSON(), nullable=False),
        sa.Column("patient", sa.String(length=200), nullable=True),
        sa.Column("finding", sa.Text(), nullable=True),
        sa.Column("callback", sa.String(length=200), nullable=True),
        sa.Column("consult_id", _ID, nullable=True),
        sa.Column("origin_key", sa.String(length=255), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledge_within", sa.Integer(), nullable=False),
        sa.Column("delivered", sa.JSON(), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=32), nullable=True),
        sa.Column("read_back", sa.Text(), nullable=True),
        sa.Column("forwarded_count", sa.Integer(), nullable=False),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_renotify_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("renotify_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["consult_id"], ["consults.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ref"),
        sa.UniqueConstraint("origin_key"),
    )
    with op.batch_alter_table("critical_results", schema=None) as batch_op:
        batch_op.create_index("ix_critical_due", ["acknowledged_at", "next_renotify_at"])
        batch_op.create_index("ix_critical_service_sent", ["service", "sent_at"])
        batch_op.create_index("ix_critical_sender", ["sender", "acknowledged_at"])


def downgrade() -> None:
    op.drop_table("critical_results")
