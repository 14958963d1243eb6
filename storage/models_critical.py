"""The critical-result table: one unexpected critical finding pushed by a consultant to the
responsible clinician, with everything the closed loop needs (who was reached and when,
delivery and acknowledgement times, the read-back, the re-notification clock)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, BigId


class CriticalResult(Base):
    """A critical result: `CRIT-<id>`, from `sender` (for `service`) to `recipient`.

    `recipients` is the history of everyone reached, in order: ``{"user", "at", "via"}``
    with via ``sent``, ``forwarded`` or ``escalated``; `delivered` maps each user to when
    Slack first accepted their direct message (ISO time). `next_renotify_at` is the
    re-notification clock (None once acknowledged)."""

    __tablename__ = "critical_results"
    __table_args__ = (
        Index("ix_critical_due", "acknowledged_at", "next_renotify_at"),
        Index("ix_critical_service_sent", "service", "sent_at"),
        Index("ix_critical_sender", "sender", "acknowledged_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    ref: Mapped[str | None] = mapped_column(String(16), unique=True)
    service: Mapped[str] = mapped_column(String(64))
    sender: Mapped[str] = mapped_column(String(32))
    recipient: Mapped[str] = mapped_column(String(32))
    recipients: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # PHI: patient, finding, callback and read-back live only here and in message bodies.
    patient: Mapped[str | None] = mapped_column(String(200))
    finding: Mapped[str | None] = mapped_column(Text)
    callback: Mapped[str | None] = mapped_column(String(200))
    consult_id: Mapped[int | None] = mapped_column(ForeignKey("consults.id"))
    origin_key: Mapped[str | None] = mapped_column(String(255), unique=True)

    sent_at: Mapped[datetime]
    acknowledge_within: Mapped[int] = mapped_column(Integer)  # seconds, the target at sending
    delivered: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(32))
    read_back: Mapped[str | None] = mapped_column(Text)
    forwarded_count: Mapped[int] = mapped_column(Integer, default=0)
    escalated_at: Mapped[datetime | None]
    next_renotify_at: Mapped[datetime | None]
    renotify_count: Mapped[int] = mapped_column(Integer, default=0)

    def reached(self) -> list[str]:
        """Everyone reached so far, first reached first, each once."""
        return list(dict.fromkeys(str(r["user"]) for r in self.recipients or []))

    def reached_via(self, via: str) -> list[str]:
        """Those reached by `via` (``forwarded`` or ``escalated``)."""
        return list(dict.fromkeys(str(r["user"]) for r in self.recipients or [] if r["via"] == via))
