"""The report's per-day partial results of settled consults (`report_days`), kept on
PostgreSQL only: one row per UTC day of creation, service, urgency and assignee ('' for
none) with the counts the report's SQL computes and the consults' raw times as binary
values back to back (`bot.reports.days` fills and reads them; triggers on `consults`, from
migration 0009, delete a day's rows whenever a write could change them). SQLite has the
tables too, empty: its reports always compute live.

`report_days_gate` is one row the fill updates and a REPEATABLE READ writer's trigger
locks, so such a writer cannot miss a fill that committed after its snapshot (see
migration 0009)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base

# The counts the report's SQL aggregates (`bot.reports.queries.count_columns(...,
# from_arrays=True)`), in `Counts` order: the others come from the times.
SQL_COUNT_COLUMNS = (
    "closed", "cancelled", "escalated", "handed_off", "reopened",
    "sla_n", "sla_ok", "ack_n", "ack_ok", "fb_n", "fb_helpful",
)  # fmt: skip
# The time columns: created, acknowledged, first reply and answered times (8-byte
# elements, a missing time as '-infinity'), then the seconds waited (4-byte elements).
TIME_COLUMNS = ("t_created", "t_acknowledged", "t_first_reply", "t_answered", "t_waiting")


class ReportDay(Base):
    """One finest group's settled consults of one UTC day: counts and times."""

    __tablename__ = "report_days"

    service: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    urgency: Mapped[str] = mapped_column(String(16), primary_key=True)
    assignee: Mapped[str] = mapped_column(String(32), primary_key=True)
    # The latest due time the counts compare with the report's `now`: the row is used
    # only by a report whose `now` is after it.
    valid_after: Mapped[datetime]
    filled_at: Mapped[datetime]
    closed: Mapped[int] = mapped_column(BigInteger)
    cancelled: Mapped[int] = mapped_column(BigInteger)
    escalated: Mapped[int] = mapped_column(BigInteger)
    handed_off: Mapped[int] = mapped_column(BigInteger)
    reopened: Mapped[int] = mapped_column(BigInteger)
    sla_n: Mapped[int] = mapped_column(BigInteger)
    sla_ok: Mapped[int] = mapped_column(BigInteger)
    ack_n: Mapped[int] = mapped_column(BigInteger)
    ack_ok: Mapped[int] = mapped_column(BigInteger)
    fb_n: Mapped[int] = mapped_column(BigInteger)
    fb_helpful: Mapped[int] = mapped_column(BigInteger)
    t_created: Mapped[bytes] = mapped_column(LargeBinary)
    t_acknowledged: Mapped[bytes] = mapped_column(LargeBinary)
    t_first_reply: Mapped[bytes] = mapped_column(LargeBinary)
    t_answered: Mapped[bytes] = mapped_column(LargeBinary)
    t_waiting: Mapped[bytes] = mapped_column(LargeBinary)


class ReportDaysGate(Base):
    """The one row each fill updates (`bot.reports.days`)."""

    __tablename__ = "report_days_gate"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    filled_at: Mapped[datetime | None]


class ReportHopDay(Base):
    """The finished hops of one service that ended on one UTC day, per role and holder
    ('' for none): how many, and their seconds (`bot.reports.holders`) as float8 values
    back to back, computed with the working hours `fingerprint` names
    (`bot.reports.hop_days`; rows of other hours are not used). Migration 0010's triggers
    delete a day's rows when one of its hops is deleted or updated, or a consult whose
    hops ended that day changes urgency."""

    __tablename__ = "report_hop_days"

    service: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    role: Mapped[str] = mapped_column(String(16), primary_key=True)
    user: Mapped[str] = mapped_column(String(32), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(Text)
    hops: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[bytes] = mapped_column(LargeBinary)
    filled_at: Mapped[datetime]
