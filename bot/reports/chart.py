"""The weekly digest's chart: a PNG of the daily median time to answer over 8 weeks, drawn
with matplotlib (imported only when a chart is drawn). No patient data."""

from __future__ import annotations

import io
import math
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.reports.model import as_utc
from bot.reports.percentiles import epoch_seconds, percentile
from bot.reports.queries import C

CHART_DAYS = 56


def _daily_medians(session: Session, service: str, start: datetime) -> list[float]:
    """Hours to answer (need-info waiting excluded), median per creation day from `start`;
    NaN for a day without answered consults."""
    stmt = select(C.created_at, C.answered_at, C.waiting_seconds).where(
        C.service == service,
        C.created_at >= start,
        C.created_at < start + timedelta(days=CHART_DAYS),
        C.answered_at.is_not(None),
    )
    per_day: list[list[float]] = [[] for _ in range(CHART_DAYS)]
    for created, answered, waiting_s in session.execute(stmt):
        day = int((created - start) // timedelta(days=1))
        if 0 <= day < CHART_DAYS:
            per_day[day].append(epoch_seconds(answered, created, waiting_s or 0) / 3600)
    medians = [percentile(v, 0.5) for v in per_day]
    return [m if m is not None else math.nan for m in medians]


def digest_chart_png(session: Session, *, service: str, until: datetime) -> bytes:
    """PNG line chart: daily median time to answer (hours, need-info waiting excluded) of
    consults created on each of the 56 days before `until`. No patient data."""
    import matplotlib  # noqa: PLC0415 - heavy, and only the digest needs it

    matplotlib.use("Agg")
    from matplotlib.figure import Figure  # noqa: PLC0415 - thread-safe, no pyplot state

    until = as_utc(until)
    start = until - timedelta(days=CHART_DAYS)
    ys = _daily_medians(session, service, start)
    days = [start + timedelta(days=i) for i in range(CHART_DAYS)]

    fig = Figure(figsize=(8, 3.5), dpi=100)
    ax = fig.add_subplot()
    ax.plot(days, ys, marker="o", markersize=3, linewidth=1.5, color="#1f77b4")
    ax.set_title(f"{service}: daily median time to answer (hours), last {CHART_DAYS} days")
    ax.set_ylabel("hours")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    if all(math.isnan(y) for y in ys):
        ax.text(0.5, 0.5, "no answered consults", ha="center", va="center",
                transform=ax.transAxes)  # fmt: skip
    fig.autofmt_xdate()
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()
