"""The per-hop clock's table: one row per finished interval of a consult's life with who
held it (the service queue, a consultant, or the requester while it waited on them),
written in the same transaction as the change that ended it (`bot.flows.hops.settle`).
The running hop is not here: it lives on the consult row (`Consult.hop_*`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, BigId


class ConsultHop(Base):
    """A finished hop: `consult_id` was held by `role` (``queue``, ``consultant`` or
    ``requester``; `user` None for the queue) of `service` from `started_at` to `ended_at`."""

    __tablename__ = "consult_hops"
    __table_args__ = (
        # The report: a period's hops per service, by when they ended.
        Index("ix_consult_hops_service_ended", "service", "ended_at"),
        # A consult's timeline (`/consult show`).
        Index("ix_consult_hops_consult", "consult_id", "started_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    consult_id: Mapped[int] = mapped_column(ForeignKey("consults.id"))
    service: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    user: Mapped[str | None] = mapped_column(String(32))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime]
