"""hops: who held a consult, interval by interval

`consult_hops` stores each finished hop (the service queue, a consultant, the requester
while the consult waits on them), and the consult row keeps the running hop: its holder's
role, user and service and since when (all NULL: the queue of its service since
`created_at`, so the one-statement create need not fill them).

Revision ID: 0005_hops
Revises: 0004_sweep_index
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_hops"
down_revision = "0004_sweep_index"
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


def downgrade() -> None:
    with op.batch_alter_table("consults", schema=None) as batch_op:
        batch_op.drop_column("hop_since")
        batch_op.drop_column("hop_service")
        batch_op.drop_column("hop_user")
        batch_op.drop_column("hop_role")
    op.drop_table("consult_hops")
