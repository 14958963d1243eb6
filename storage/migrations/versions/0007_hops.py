"""hops: who held a consult, interval by interval

`consult_hops` stores each finished hop (the service queue, a consultant, the requester
while the consult waits on them), and the consult row keeps the running hop: its holder's
role, user and service and since when (all NULL: the queue of its service since
`created_at`, so the one-statement create need not fill them). Consults already stored get
their running hop from their status (the owner since acknowledgement, the requester since
the need-info question, nobody once answered); their past hops are not made up.

Revision ID: 0007_hops
Revises: 0006_cover
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_hops"
down_revision = "0006_cover"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "consult_hops",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("consult_id", _ID, nullable=False),
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("user", sa.String(length=32), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["consult_id"], ["consults.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("consult_hops", schema=None) as batch_op:
        batch_op.create_index("ix_consult_hops_service_ended", ["service", "ended_at"])
        batch_op.create_index("ix_consult_hops_consult", ["consult_id", "started_at"])
    # Nullable columns: a plain ADD COLUMN on both databases (no table rewrite).
    op.add_column("consults", sa.Column("hop_role", sa.String(length=16), nullable=True))
    op.add_column("consults", sa.Column("hop_user", sa.String(length=32), nullable=True))
    op.add_column("consults", sa.Column("hop_service", sa.String(length=64), nullable=True))
    op.add_column("consults", sa.Column("hop_since", sa.DateTime(timezone=True), nullable=True))
    # Consults stored before hops existed: their running hop as well as it can be told, so
    # their next change does not charge their whole past to the queue. (Open ones stay
    # NULL: the queue since they were created, which is right.)
    for statement in _BACKFILL:
        op.execute(sa.text(statement))


_BACKFILL = (
    "UPDATE consults SET hop_role = 'consultant', hop_user = assignee, hop_service = service,"
    " hop_since = COALESCE(acknowledged_at, created_at)"
    " WHERE status = 'acknowledged' AND assignee IS NOT NULL",
    "UPDATE consults SET hop_role = 'requester', hop_user = requester, hop_service = service,"
    " hop_since = COALESCE(waiting_since, created_at) WHERE status = 'waiting'",
    "UPDATE consults SET hop_role = 'none',"
    " hop_since = COALESCE(answered_at, cancelled_at, closed_at, created_at)"
    " WHERE status IN ('answered', 'closed', 'cancelled')",
)


def downgrade() -> None:
    with op.batch_alter_table("consults", schema=None) as batch_op:
        batch_op.drop_column("hop_since")
        batch_op.drop_column("hop_service")
        batch_op.drop_column("hop_user")
        batch_op.drop_column("hop_role")
    op.drop_table("consult_hops")
