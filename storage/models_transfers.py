"""The transfer table: one row per consult moved from one service to another (the wrong
service was asked). It keeps the reference the consult had there, so an old reference
still finds the consult (`storage.repo.get_by_ref`), and what the reports count:
who moved it when, from and to which service, and since when it had been at the first."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, BigId


class ConsultTransfer(Base):
    """Consult `consult_id` moved from `from_service` (as `from_ref`) to `to_service` (as
    `to_ref`) by `actor` at `at`; it had arrived at `from_service` at `arrived_at` (its
    creation, or the transfer before). No free text: the reason lives on the consult."""

    __tablename__ = "consult_transfers"
    __table_args__ = (
        Index("ix_transfers_consult", "consult_id", "id"),
        Index("ix_transfers_from_at", "from_service", "at"),
        Index("ix_transfers_to_at", "to_service", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    consult_id: Mapped[int] = mapped_column(ForeignKey("consults.id"))
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(32))
    from_service: Mapped[str] = mapped_column(String(64))
    to_service: Mapped[str] = mapped_column(String(64))
    # References are never handed out twice, so a former reference names one consult.
    from_ref: Mapped[str] = mapped_column(String(16), unique=True)
    to_ref: Mapped[str] = mapped_column(String(16))
    arrived_at: Mapped[datetime]
