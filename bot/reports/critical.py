"""Critical results in the reports: per-service figures for `python -m bot report` (no
patient data: counts and times only) and the per-result log for the quality office
(`python -m bot critical-log`, which does carry patient references and read-backs)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from bot.reports.model import iso_z
from bot.reports.percentiles import epoch_seconds, median_and_p90
from storage import critical
from storage.models_critical import CriticalResult


@dataclass(frozen=True)
class CriticalFigures:
    """One service's critical results sent in the period; times in seconds."""

    service: str
    sent: int
    acknowledged: int
    within_target: int
    forwarded: int
    escalated: int
    median: float | None
    p90: float | None

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape: counts, then ``time_to_acknowledge: {median, p90}``."""
        return {
            "service": self.service,
            "sent": self.sent,
            "acknowledged": self.acknowledged,
            "within_target": self.within_target,
            "forwarded": self.forwarded,
            "escalated": self.escalated,
            "time_to_acknowledge": {"median": self.median, "p90": self.p90},
        }


def seconds_to_acknowledge(r: CriticalResult) -> float | None:
    """From the first send to the acknowledgement (forwarding does not restart it)."""
    if r.acknowledged_at is None:
        return None
    return epoch_seconds(r.acknowledged_at, r.sent_at)


def within_target(r: CriticalResult) -> bool:
    """Acknowledged within the `acknowledge_within` in force when it was sent."""
    taken = seconds_to_acknowledge(r)
    return taken is not None and taken <= r.acknowledge_within


def critical_figures(
    session: Session, keys: Sequence[str], since: datetime, until: datetime
) -> list[CriticalFigures]:
    """Per service (in `keys` order, zeros included), results sent in ``[since, until)``."""
    rows = critical.sent_between(
        session=session, since=since, until=until, services=keys, counts_only=True
    )
    out = []
    for key in keys:
        mine = [r for r in rows if r.service == key]
        times = [t for r in mine if (t := seconds_to_acknowledge(r)) is not None]
        median, p90 = median_and_p90(times)
        out.append(
            CriticalFigures(
                service=key,
                sent=len(mine),
                acknowledged=len(times),
                within_target=sum(within_target(r) for r in mine),
                forwarded=sum(1 for r in mine if r.forwarded_count),
                escalated=sum(1 for r in mine if r.escalated_at is not None),
                median=median,
                p90=p90,
            )  # fmt: skip
        )
    return out


LOG_COLUMNS = (
    "reference", "service", "sender", "recipients", "sent", "delivered", "acknowledged",
    "acknowledged_by", "minutes_to_acknowledge", "within_target", "forwarded_to",
    "escalated_to", "read_back",
)  # fmt: skip


def log_row(r: CriticalResult) -> dict[str, Any]:
    """One result as the quality office's log shows it (times ISO UTC; `delivered` per
    recipient as ``user=time``)."""
    taken = seconds_to_acknowledge(r)
    return {
        "reference": r.ref,
        "service": r.service,
        "sender": r.sender,
        "recipients": r.reached(),
        "sent": iso_z(r.sent_at),
        "delivered": dict(r.delivered or {}),
        "acknowledged": iso_z(r.acknowledged_at) if r.acknowledged_at else None,
        "acknowledged_by": r.acknowledged_by,
        "minutes_to_acknowledge": None if taken is None else round(taken / 60, 2),
        "within_target": within_target(r),
        "forwarded_to": r.reached_via("forwarded"),
        "escalated_to": r.reached_via("escalated"),
        "read_back": r.read_back,
    }


def critical_log(
    session: Session, *, since: datetime, until: datetime, services: Sequence[str] | None
) -> list[dict[str, Any]]:
    """The log's rows: every result sent in ``[since, until)``, oldest first."""
    rows = critical.sent_between(session=session, since=since, until=until, services=services)
    return [log_row(r) for r in rows]
