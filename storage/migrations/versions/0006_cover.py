"""requester cover: who covers for whom (`/consult cover`)

Revision ID: 0006_cover
Revises: 0005_followups
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_cover"
down_revision = "0005_followups"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_IN_FORCE = sa.text("ended_at IS NULL")


def upgrade() -> None:
    op.create_table(
        "requester_covers",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("user", sa.String(length=32), nullable=False),
        sa.Column("cover", sa.String(length=32), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ux_requester_covers_user_in_force",
        "requester_covers",
        ["user"],
        unique=True,
        postgresql_where=_IN_FORCE,
        sqlite_where=_IN_FORCE,
    )
    op.create_index("ix_requester_covers_cover", "requester_covers", ["cover", "ended_at"])


def downgrade() -> None:
    op.drop_index("ix_requester_covers_cover", table_name="requester_covers")
    op.drop_index("ux_requester_covers_user_in_force", table_name="requester_covers")
    op.drop_table("requester_covers")
