"""Follow-ups in the report: per service of the linked consult (`"none"` for follow-ups
opened from a patient alone), the follow-ups opened in the period, how many of them are
done, how many follow-ups are overdue now (whatever their opening date, like the consults'
`open_overdue`) and the time from opening to done (median and p90, seconds). Computed in
Python from the same rows on both databases (identical figures); no patient data is read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from bot.reports.percentiles import epoch_seconds, median_and_p90
from storage import followups

NONE = "none"


@dataclass(frozen=True)
class FollowupFigures:
    """One service's follow-ups; times in seconds."""

    service: str
    opened: int
    done: int
    overdue_now: int
    median: float | None
    p90: float | None

    def as_dict(self) -> dict[str, Any]:
        """``{service, opened, done, overdue_now, time_to_done: {median, p90}}``."""
        return {
            "service": self.service,
            "opened": self.opened,
            "done": self.done,
            "overdue_now": self.overdue_now,
            "time_to_done": {"median": self.median, "p90": self.p90},
        }


def followup_figures(
    session: Session,
    keys: Sequence[str],
    since: datetime,
    until: datetime,
    now: datetime,
    *,
    with_none: bool = True,
) -> list[FollowupFigures]:
    """Per service in `keys` order (zeros included), then `"none"` (unless `with_none` is
    False: a report narrowed to some services)."""
    rows = followups.report_rows(session=session, since=since, until=until, now=now)
    out = []
    for key in [*keys, *([NONE] if with_none else [])]:
        mine = [r for r in rows if (r.service or NONE) == key]
        opened = [r for r in mine if since <= r.created_at < until]
        times = [epoch_seconds(r.done_at, r.created_at) for r in opened if r.done_at is not None]
        overdue = sum(
            1 for r in mine if r.done_at is None and r.due_at is not None and r.due_at < now
        )
        median, p90 = median_and_p90(times)
        out.append(FollowupFigures(key, len(opened), len(times), overdue, median, p90))
    return out
