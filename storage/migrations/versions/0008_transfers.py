"""transfers: a consult moved to another service

The consult row keeps its latest transfer (from which service and reference, by whom,
when, and why: the card shows it); `consult_transfers` keeps every transfer, so a former
reference still finds its consult and the reports count transfers and the time until them.

Revision ID: 0008_transfers
Revises: 0007_hops
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_transfers"
down_revision = "0007_hops"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_CONSULT_COLUMNS = (
    ("transferred_from", sa.String(length=64)),
    ("former_ref", sa.String(length=16)),
    ("transferred_by", sa.String(length=32)),
    ("transferred_at", sa.DateTime(timezone=True)),
    ("transfer_reason", sa.Text()),
)


def upgrade() -> None:
    with op.batch_alter_table("consults", schema=None) as batch_op:
        for name, kind in _CONSULT_COLUMNS:
            batch_op.add_column(sa.Column(name, kind, nullable=True))
    op.create_table(
        "consult_transfers",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("consult_id", _ID, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=32), nullable=False),
        sa.Column("from_service", sa.String(length=64), nullable=False),
        sa.Column("to_service", sa.String(length=64), nullable=False),
        sa.Column("from_ref", sa.String(length=16), nullable=False),
        sa.Column("to_ref", sa.String(length=16), nullable=False),
        sa.Column("arrived_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["consult_id"], ["consults.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("from_ref"),
    )
    with op.batch_alter_table("consult_transfers", schema=None) as batch_op:
        batch_op.create_index("ix_transfers_consult", ["consult_id", "id"])
        batch_op.create_index("ix_transfers_from_at", ["from_service", "at"])
        batch_op.create_index("ix_transfers_to_at", ["to_service", "at"])


def downgrade() -> None:
    op.drop_table("consult_transfers")
    with op.batch_alter_table("consults", schema=None) as batch_op:
        for name, _ in reversed(_CONSULT_COLUMNS):
            batch_op.drop_column(name)
