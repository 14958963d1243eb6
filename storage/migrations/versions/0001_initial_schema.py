"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-24 03:48:32.408589
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "consults",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("ref", sa.String(length=16), nullable=False),
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("urgency", sa.String(length=16), nullable=False),
        sa.Column("patient", sa.String(length=200), nullable=True),
        sa.Column("patient_key", sa.String(length=200), nullable=True),
        sa.Column("question", sa.Text(), nullable=True),
        sa.Column("intake", sa.JSON(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("requester", sa.String(length=32), nullable=False),
        sa.Column("assignee", sa.String(length=32), nullable=True),
        sa.Column("on_call", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("origin_key", sa.String(length=255), nullable=True),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("channel_ts", sa.String(length=32), nullable=True),
        sa.Column("permalink", sa.String(length=512), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_reply_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledge_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answer_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("waiting_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("waiting_seconds", sa.Integer(), nullable=False),
        sa.Column("next_nudge_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("nudge_phase", sa.String(length=16), nullable=True),
        sa.Column("nudge_level", sa.Integer(), nullable=False),
        sa.Column("nudges_at_level", sa.Integer(), nullable=False),
        sa.Column("nudge_count", sa.Integer(), nullable=False),
        sa.Column("last_nudge_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalation_count", sa.Integer(), nullable=False),
        sa.Column("snoozed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reopened_count", sa.Integer(), nullable=False),
        sa.Column("handoff_count", sa.Integer(), nullable=False),
        sa.Column("feedback_helpful", sa.Boolean(), nullable=True),
        sa.Column("feedback_comment", sa.Text(), nullable=True),
        sa.Column("feedback_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("origin_key"),
        sa.UniqueConstraint("ref"),
        sa.UniqueConstraint("service", "seq", name="uq_consults_service_seq"),
    )
    with op.batch_alter_table("consults", schema=None) as batch_op:
        batch_op.create_index("ix_consults_assignee_status", ["assignee", "status"], unique=False)
        batch_op.create_index("ix_consults_channel_ts", ["channel", "channel_ts"], unique=False)
        batch_op.create_index("ix_consults_patient_key", ["patient_key"], unique=False)
        batch_op.create_index("ix_consults_requester_status", ["requester", "status"], unique=False)
        batch_op.create_index(
            "ix_consults_service_created", ["service", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_consults_status_next_nudge", ["status", "next_nudge_at"], unique=False
        )

    op.create_table(
        "on_call",
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("user", sa.String(length=32), nullable=False),
        sa.Column("set_by", sa.String(length=32), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("service"),
    )
    op.create_table(
        "processed_keys",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "service_counters",
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("last", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("service"),
    )
    op.create_table(
        "audit_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "consult_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("actor", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["consult_id"],
            ["consults.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index("ix_audit_consult", ["consult_id", "id"], unique=False)

    op.create_table(
        "outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "consult_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result_ts", sa.String(length=32), nullable=True),
        sa.Column("last_error", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["consult_id"],
            ["consults.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe_key"),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_consult", ["consult_id", "id"], unique=False)
        batch_op.create_index("ix_outbox_status_due", ["status", "next_attempt_at"], unique=False)

    op.create_table(
        "replies",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "consult_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("user", sa.String(length=32), nullable=False),
        sa.Column("ts", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("by_requester", sa.Boolean(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["consult_id"],
            ["consults.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("consult_id", "ts", name="uq_replies_consult_ts"),
    )
    with op.batch_alter_table("replies", schema=None) as batch_op:
        batch_op.create_index("ix_replies_consult", ["consult_id", "at"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("replies", schema=None) as batch_op:
        batch_op.drop_index("ix_replies_consult")

    op.drop_table("replies")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_status_due")
        batch_op.drop_index("ix_outbox_consult")

    op.drop_table("outbox")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_consult")

    op.drop_table("audit_events")
    op.drop_table("service_counters")
    op.drop_table("processed_keys")
    op.drop_table("on_call")
    with op.batch_alter_table("consults", schema=None) as batch_op:
        batch_op.drop_index("ix_consults_status_next_nudge")
        batch_op.drop_index("ix_consults_service_created")
        batch_op.drop_index("ix_consults_requester_status")
        batch_op.drop_index("ix_consults_patient_key")
        batch_op.drop_index("ix_consults_channel_ts")
        batch_op.drop_index("ix_consults_assignee_status")

    op.drop_table("consults")
