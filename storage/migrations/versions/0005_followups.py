"""follow-ups: what is owed to patients

Revision ID: 0005_followups
Revises: 0004_sweep_index
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_followups"
down_revision = "0004_sweep_index"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "followups",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("ref", sa.String(length=16), nullable=True),
        sa.Column("origin_key", sa.String(length=255), nullable=True),
        sa.Column("creator", sa.String(length=32), nullable=False),
        sa.Column("owner", sa.String(length=32), nullable=False),
        sa.Column("patient", sa.String(length=200), nullable=True),
        sa.Column("owed", sa.Text(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("consult_id", _ID, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("due_within", sa.Integer(), nullable=True),
        sa.Column("answer_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("done_by", sa.String(length=32), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("handovers", sa.Integer(), nullable=False),
        sa.Column("next_nudge_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("nudge_count", sa.Integer(), nullable=False),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["consult_id"], ["consults.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ref"),
        sa.UniqueConstraint("origin_key"),
    )
    with op.batch_alter_table("followups", schema=None) as batch_op:
        batch_op.create_index("ix_followups_due", ["done_at", "next_nudge_at"])
        batch_op.create_index("ix_followups_owner", ["owner", "done_at"])
        batch_op.create_index("ix_followups_consult", ["consult_id", "answer_at"])
        batch_op.create_index("ix_followups_created", ["created_at"])


def downgrade() -> None:
    op.drop_table("followups")
