"""Typed SQLAlchemy 2 models: consults, their audit trail, replies, the outbox, and keys
that make Slack's retries and double-clicks have one effect."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite has no BIGINT autoincrement; PostgreSQL ids can outgrow 32 bits over years of outbox.
BigId = BigInteger().with_variant(Integer(), "sqlite")

# A consult the sweep still watches (`storage.repo.OPEN_STATUSES`), as SQL.
OPEN_CONSULT_SQL = "status IN ('open', 'acknowledged', 'waiting')"


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both databases (SQLite stores naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base for every CareLoop table."""

    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


class Consult(Base):
    """One consult request about one patient, from a requester to a service."""

    __tablename__ = "consults"
    __table_args__ = (
        UniqueConstraint("service", "seq", name="uq_consults_service_seq"),
        Index("ix_consults_status_next_nudge", "status", "next_nudge_at"),
        # The sweep's claim, oldest due first (migration 0004_sweep_index).
        Index(
            "ix_consults_open_next_nudge",
            "next_nudge_at",
            postgresql_where=text(OPEN_CONSULT_SQL),
            sqlite_where=text(OPEN_CONSULT_SQL),
        ),
        Index("ix_consults_channel_ts", "channel", "channel_ts"),
        Index("ix_consults_service_created", "service", "created_at"),
        Index("ix_consults_requester_status", "requester", "status"),
        Index("ix_consults_assignee_status", "assignee", "status"),
        Index("ix_consults_patient_key", "patient_key"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    ref: Mapped[str] = mapped_column(String(16), unique=True)
    service: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(Integer)
    urgency: Mapped[str] = mapped_column(String(16))
    # PHI: patient and free text live only here and in Slack message bodies; purge clears them.
    patient: Mapped[str | None] = mapped_column(String(200))
    patient_key: Mapped[str | None] = mapped_column(String(200))
    question: Mapped[str | None] = mapped_column(Text)
    intake: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    answer: Mapped[str | None] = mapped_column(Text)
    requester: Mapped[str] = mapped_column(String(32))
    assignee: Mapped[str | None] = mapped_column(String(32))
    on_call: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    origin_key: Mapped[str | None] = mapped_column(String(255), unique=True)

    channel: Mapped[str] = mapped_column(String(32))
    channel_ts: Mapped[str | None] = mapped_column(String(32))
    permalink: Mapped[str | None] = mapped_column(String(512))

    created_at: Mapped[datetime]
    acknowledged_at: Mapped[datetime | None]
    first_reply_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    acknowledge_due_at: Mapped[datetime | None]
    answer_due_at: Mapped[datetime | None]

    # Need-info: the consultant's answer clock pauses while waiting on the requester.
    waiting_since: Mapped[datetime | None]
    waiting_seconds: Mapped[int] = mapped_column(Integer, default=0)

    # Escalation state lives in the row so a restart resumes exactly where it was.
    next_nudge_at: Mapped[datetime | None]
    nudge_phase: Mapped[str | None] = mapped_column(String(16))
    nudge_level: Mapped[int] = mapped_column(Integer, default=0)
    nudges_at_level: Mapped[int] = mapped_column(Integer, default=0)
    nudge_count: Mapped[int] = mapped_column(Integer, default=0)
    last_nudge_at: Mapped[datetime | None]
    escalated_at: Mapped[datetime | None]
    escalation_count: Mapped[int] = mapped_column(Integer, default=0)
    snoozed_until: Mapped[datetime | None]

    reopened_count: Mapped[int] = mapped_column(Integer, default=0)
    handoff_count: Mapped[int] = mapped_column(Integer, default=0)
    feedback_helpful: Mapped[bool | None] = mapped_column(Boolean)
    feedback_comment: Mapped[str | None] = mapped_column(Text)
    feedback_at: Mapped[datetime | None]
    purged_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(Integer, default=1)

    # Who holds it now and since when (`bot.flows.hops.settle`, migration 0007_hops): all
    # NULL means its service's queue since `created_at`; `hop_role` "none": nobody.
    hop_role: Mapped[str | None] = mapped_column(String(16))
    hop_user: Mapped[str | None] = mapped_column(String(32))
    hop_service: Mapped[str | None] = mapped_column(String(64))
    hop_since: Mapped[datetime | None]
    # The latest transfer into this consult's service (NULL: never transferred); the reason
    # is free text (PHI rules: purged with the rest). History: `consult_transfers`.
    transferred_from: Mapped[str | None] = mapped_column(String(64))
    former_ref: Mapped[str | None] = mapped_column(String(16))
    transferred_by: Mapped[str | None] = mapped_column(String(32))
    transferred_at: Mapped[datetime | None]
    transfer_reason: Mapped[str | None] = mapped_column(Text)


class AuditEvent(Base):
    """Append-only record of every transition: who did what to which consult, when."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_consult", "consult_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    consult_id: Mapped[int | None] = mapped_column(ForeignKey("consults.id"))
    actor: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime]
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Reply(Base):
    """A message in a consult's thread, by the requester or anyone else."""

    __tablename__ = "replies"
    __table_args__ = (
        UniqueConstraint("consult_id", "ts", name="uq_replies_consult_ts"),
        Index("ix_replies_consult", "consult_id", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    consult_id: Mapped[int] = mapped_column(ForeignKey("consults.id"))
    user: Mapped[str] = mapped_column(String(32))
    ts: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime]
    by_requester: Mapped[bool] = mapped_column(Boolean, default=False)
    text: Mapped[str | None] = mapped_column(Text)


class OutboxMessage(Base):
    """A Slack call the bot intends to make; stored first, delivered with retries."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_status_due", "status", "next_attempt_at"),
        Index("ix_outbox_consult", "consult_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    consult_id: Mapped[int | None] = mapped_column(ForeignKey("consults.id"))
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    dedupe_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    sent_at: Mapped[datetime | None]
    result_ts: Mapped[str | None] = mapped_column(String(32))
    last_error: Mapped[str | None] = mapped_column(String(255))


class ProcessedKey(Base):
    """One row per logical Slack action already handled (event id, view id, trigger id…)."""

    __tablename__ = "processed_keys"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    at: Mapped[datetime]
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class OnCall(Base):
    """Who is on call for a service, when changed in Slack (overrides the catalogue); with
    `until`, only until then (a scheduled service's schedule resumes after)."""

    __tablename__ = "on_call"

    service: Mapped[str] = mapped_column(String(64), primary_key=True)
    user: Mapped[str] = mapped_column(String(32))
    set_by: Mapped[str] = mapped_column(String(32))
    set_at: Mapped[datetime]
    until: Mapped[datetime | None]


class ServiceCounter(Base):
    """Last reference number handed out per service (RAD-41 → next is RAD-42)."""

    __tablename__ = "service_counters"

    service: Mapped[str] = mapped_column(String(64), primary_key=True)
    last: Mapped[int] = mapped_column(Integer, default=0)
