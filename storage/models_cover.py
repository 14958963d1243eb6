"""The requester-cover table: who covers for whom, from when until when (`ended_at` NULL:
in force now). At most one cover in force per covered requester (a partial unique index);
the history stays for the audit trail. No patient data: user ids and times only."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, BigId

# A cover still in force, as SQL (the partial indexes' condition).
COVER_IN_FORCE_SQL = "ended_at IS NULL"


class RequesterCover(Base):
    """`cover` receives what CareLoop sends `user` as requester, and may act for them,
    from `started_at` until `ended_at` (`/consult cover @cover` … `/consult cover off`)."""

    __tablename__ = "requester_covers"
    __table_args__ = (
        Index(
            "ux_requester_covers_user_in_force",
            "user",
            unique=True,
            postgresql_where=text(COVER_IN_FORCE_SQL),
            sqlite_where=text(COVER_IN_FORCE_SQL),
        ),
        Index("ix_requester_covers_cover", "cover", "ended_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user: Mapped[str] = mapped_column(String(32))
    cover: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
