"""Transfers in the reports: per service, how many consults it sent on to another service
(`transferred_out`) and received from one (`transferred_in`) in the period, and how long a
consult had been at the service before it was sent on (`time_to_transfer`: from its
creation, or from its arrival there after an earlier transfer, to the transfer; median and
90th percentile, in seconds of clock time like the other times of the report).

The period is of the transfer's time: ``[since, until)``. Aggregated in Python from the
`consult_transfers` rows on both databases (transfers are few), with the report's own
percentile and seconds arithmetic, so SQLite and PostgreSQL give identical figures. Only
service keys, counts and times: no reference, reason or patient detail."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from bot.reports.percentiles import epoch_seconds, median_and_p90
from storage import transfers


@dataclass(frozen=True)
class TransferFigures:
    """One service's transfers in the period; times in seconds (None: none sent on)."""

    service: str
    transferred_out: int
    transferred_in: int
    median: float | None
    p90: float | None

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape: counts, then ``time_to_transfer: {median, p90}``."""
        return {
            "service": self.service,
            "transferred_out": self.transferred_out,
            "transferred_in": self.transferred_in,
            "time_to_transfer": {"median": self.median, "p90": self.p90},
        }


def transfer_figures(
    session: Session, keys: Sequence[str], since: datetime, until: datetime
) -> list[TransferFigures]:
    """Per service (in `keys` order, zeros included), transfers made in ``[since, until)``."""
    rows = transfers.made_between(session=session, since=since, until=until, services=keys)
    out = []
    for key in keys:
        sent = [r for r in rows if r.from_service == key]
        median, p90 = median_and_p90([epoch_seconds(r.at, r.arrived_at) for r in sent])
        received = sum(1 for r in rows if r.to_service == key)
        out.append(TransferFigures(key, len(sent), received, median, p90))
    return out
