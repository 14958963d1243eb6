"""The follow-up table: what is owed to a patient ("we'll call you when the biopsy result is
back"), who owes it, when it is due (a fixed time, or `due_within` after a linked consult's
answer arrives), how it ended, and the overdue sweep's nudge clock."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, BigId


class FollowUp(Base):
    """A follow-up: `FU-<id>`, opened by `creator`, owed by `owner`, optionally linked to a
    consult (`consult_id`; the report counts it under that consult's service).

    `due_at` None means "due `due_within` seconds after the linked consult's answer"
    (`answer_at` is when that answer arrived and the owner was told). `next_nudge_at` is
    the overdue sweep's clock (None once done, or while the due time is not known)."""

    __tablename__ = "followups"
    __table_args__ = (
        Index("ix_followups_due", "done_at", "next_nudge_at"),
        Index("ix_followups_owner", "owner", "done_at"),
        Index("ix_followups_consult", "consult_id", "answer_at"),
        Index("ix_followups_created", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    ref: Mapped[str | None] = mapped_column(String(16), unique=True)
    origin_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    creator: Mapped[str] = mapped_column(String(32))
    owner: Mapped[str] = mapped_column(String(32))
    # PHI: the patient, what is owed and the Done note live only here and in message bodies.
    patient: Mapped[str | None] = mapped_column(String(200))
    owed: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    consult_id: Mapped[int | None] = mapped_column(ForeignKey("consults.id"))

    created_at: Mapped[datetime]
    due_at: Mapped[datetime | None]
    due_within: Mapped[int | None] = mapped_column(Integer)  # seconds after the answer
    answer_at: Mapped[datetime | None]
    done_at: Mapped[datetime | None]
    done_by: Mapped[str | None] = mapped_column(String(32))
    outcome: Mapped[str | None] = mapped_column(String(32))
    handovers: Mapped[int] = mapped_column(Integer, default=0)
    next_nudge_at: Mapped[datetime | None]
    nudge_count: Mapped[int] = mapped_column(Integer, default=0)
    escalated_at: Mapped[datetime | None]
