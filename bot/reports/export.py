"""A `Report` written out for `python -m bot report`: JSON (the report's own shape), CSV
(one row per service and per service and urgency; seconds, shares 0..1; then, when critical
results were sent, a blank line and a second table of them per service; then, when
follow-ups were opened or are overdue, a blank line and a table of them per service) and an aligned
plain-text table (durations as '2h 05m', shares as percentages). When hops ended in the
period, the CSV's last table and the table's last lines are the time held per service queue
and per holder (`bot.reports.holders`); when consults were transferred, a table of the
transfers per service comes before it."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from bot.reports.model import Figures, Report, iso_z
from bot.slack.render.figures import format_elapsed, format_share

CSV_COLUMNS = (
    "service",
    "urgency",
    "consults",
    "acknowledged",
    "answered",
    "closed",
    "cancelled",
    "open_now",
    "open_overdue",
    "escalated",
    "handed_off",
    "reopened",
    "tta_median",
    "tta_p90",
    "ttfr_median",
    "ttfr_p90",
    "ttans_median",
    "ttans_p90",
    "waiting_total",
    "waiting_consults",
    "waiting_median",
    "waiting_p90",
    "within_sla",
    "ack_within_sla",
    "feedback_count",
    "feedback_helpful",
    "feedback_helpful_share",
)

# The CSV's second table (after a blank line), one row per service: critical results.
CRITICAL_CSV_COLUMNS = (
    "service",
    "critical_sent",
    "critical_acknowledged",
    "critical_within_target",
    "critical_forwarded",
    "critical_escalated",
    "critical_tta_median",
    "critical_tta_p90",
)

# Then (after another blank line), when follow-ups were opened: one row per service of the
# linked consult, and "none".
FOLLOWUP_CSV_COLUMNS = (
    "service",
    "followups_opened",
    "followups_done",
    "followups_overdue_now",
    "followups_ttd_median",
    "followups_ttd_p90",
)

# The CSV's last table (after a blank line), when hops ended in the period: time held, one
# row per service's queue (role "queue", no user) and per holder (`bot.reports.holders`).
HOLDERS_CSV_COLUMNS = (
    "service",
    "user",
    "role",
    "hops",
    "held_total",
    "held_median",
    "held_p90",
)

# The CSV's table of transfers (after a blank line), one row per service.
TRANSFER_CSV_COLUMNS = (
    "service",
    "transferred_out",
    "transferred_in",
    "time_to_transfer_median",
    "time_to_transfer_p90",
)

TABLE_COLUMNS = (
    ("service", "Service"),
    ("urgency", "Urgency"),
    ("consults", "Consults"),
    ("acknowledged", "Acked"),
    ("answered", "Answered"),
    ("open_now", "Open"),
    ("open_overdue", "Overdue"),
    ("escalated", "Escalated"),
    ("tta_median", "Ack med"),
    ("tta_p90", "Ack p90"),
    ("ttfr_median", "1st resp med"),
    ("ttans_median", "Answer med"),
    ("ttans_p90", "Answer p90"),
    ("waiting_total", "Waiting (req.)"),
    ("within_sla", "In SLA"),
    ("ack_within_sla", "Ack in SLA"),
    ("feedback_helpful_share", "Helpful"),
)
_DURATION_COLUMNS = {
    "tta_median", "tta_p90", "ttfr_median", "ttans_median", "ttans_p90", "waiting_total"
}  # fmt: skip
_SHARE_COLUMNS = {"within_sla", "ack_within_sla", "feedback_helpful_share"}


def report_json(report: Report) -> str:
    """The report as indented JSON, with a final newline."""
    return json.dumps(report.as_dict(), indent=2) + "\n"


def _flat(service: str, urgency: str, f: Figures) -> dict[str, Any]:
    w, fb = f.waiting_on_requester, f.feedback
    return {
        "service": service,
        "urgency": urgency,
        **{k: getattr(f, k) for k in CSV_COLUMNS[2:12]},
        "tta_median": f.time_to_acknowledge.median,
        "tta_p90": f.time_to_acknowledge.p90,
        "ttfr_median": f.time_to_first_response.median,
        "ttfr_p90": f.time_to_first_response.p90,
        "ttans_median": f.time_to_answer.median,
        "ttans_p90": f.time_to_answer.p90,
        "waiting_total": w.total,
        "waiting_consults": w.consults,
        "waiting_median": w.median,
        "waiting_p90": w.p90,
        "within_sla": f.within_sla,
        "ack_within_sla": f.ack_within_sla,
        "feedback_count": fb.count,
        "feedback_helpful": fb.helpful,
        "feedback_helpful_share": fb.helpful_share,
    }


def _flat_rows(report: Report) -> list[dict[str, Any]]:
    rows = []
    for entry in report.services:
        rows.append(_flat(entry.service, "all", entry.figures))
        for urgency, figures in entry.by_urgency.items():
            rows.append(_flat(entry.service, urgency, figures))
    return rows


def report_csv(report: Report) -> str:
    """One row per service (urgency "all") and per service and urgency; seconds, shares 0..1.
    When critical results were sent in the period: a blank line, then their own header and
    one row per service (`CRITICAL_CSV_COLUMNS`). When follow-ups were opened or are overdue:
    a blank line and their rows (`FOLLOWUP_CSV_COLUMNS`)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in _flat_rows(report):
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    if any(c.sent for c in report.critical):
        out.write("\n")
        critical = csv.writer(out, lineterminator="\n")
        critical.writerow(CRITICAL_CSV_COLUMNS)
        for c in report.critical:
            counts = (c.sent, c.acknowledged, c.within_target, c.forwarded, c.escalated)
            times = ("" if t is None else t for t in (c.median, c.p90))
            critical.writerow((c.service, *counts, *times))
    if any(f.opened or f.overdue_now for f in report.followups):
        out.write("\n")
        table = csv.writer(out, lineterminator="\n")
        table.writerow(FOLLOWUP_CSV_COLUMNS)
        for f in report.followups:
            times = ("" if t is None else t for t in (f.median, f.p90))
            table.writerow((f.service, f.opened, f.done, f.overdue_now, *times))
    _transfers_csv(report, out)
    _holders_csv(report, out)
    return out.getvalue()


def _held_rows(report: Report) -> list[tuple[str, str, str, int, Any]]:
    """(service, user, role, hops, Held) of each queue with hops, then of each holder."""
    if report.held is None:
        return []
    rows = [(q.service, "", "queue", q.hops, q.held_seconds) for q in report.held.queues.values()]
    rows = [r for r in rows if r[3]]
    rows += [(h.service, h.user, h.role, h.hops, h.held_seconds) for h in report.held.holders]
    return rows


def _holders_csv(report: Report, out: io.StringIO) -> None:
    """The time-held table (`HOLDERS_CSV_COLUMNS`) after a blank line; nothing when no hop
    ended in the period."""
    rows = _held_rows(report)
    if not rows:
        return
    out.write("\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HOLDERS_CSV_COLUMNS)
    for service, user, role, hops, held in rows:
        times = ("" if t is None else t for t in (held.total, held.median, held.p90))
        writer.writerow((service, user, role, hops, *times))


def _transfers_csv(report: Report, out: io.StringIO) -> None:
    """When consults were transferred in the period: a blank line, then their own header
    and one row per service (`TRANSFER_CSV_COLUMNS`); otherwise nothing."""
    if not any(t.transferred_out or t.transferred_in for t in report.transfers):
        return
    out.write("\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(TRANSFER_CSV_COLUMNS)
    for t in report.transfers:
        times = ("" if v is None else v for v in (t.median, t.p90))
        writer.writerow((t.service, t.transferred_out, t.transferred_in, *times))


def _table_cell(key: str, value: Any) -> str:
    if key in _DURATION_COLUMNS:
        return format_elapsed(value) if value or key != "waiting_total" else "—"
    if key in _SHARE_COLUMNS:
        return format_share(value)
    return str(value)


def report_table(report: Report) -> str:
    """An aligned plain-text table: durations as '2h 05m', shares as percentages."""
    header = [title for _, title in TABLE_COLUMNS]
    lines = [[_table_cell(key, row[key]) for key, _ in TABLE_COLUMNS] for row in _flat_rows(report)]
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]

    def render(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    title = f"CareLoop consults created {iso_z(report.since)} to {iso_z(report.until)}"
    out = [title, render(header), render(["-" * w for w in widths])]
    out += [render(cells) for cells in lines]
    out.append(
        "Times from creation. Answer times exclude need-info waiting, shown apart as "
        "'Waiting (req.)'. Open/Overdue are as of now."
    )
    out += _critical_table(report)
    out += _followup_table(report)
    out += _transfers_table(report)
    out += _holders_table(report)
    return "\n".join(out) + "\n"


def _holders_table(report: Report) -> list[str]:
    """The time-held lines of the table (none when no hop ended in the period)."""
    rows = _held_rows(report)
    if not rows:
        return []
    lines = ["", "Time held, hops that ended in the period (total; one hop's median, p90):"]
    for service, user, role, hops, held in rows:
        who = "queue (nobody owned it)" if role == "queue" else f"{user} ({role})"
        lines.append(
            f"  {service}: {who}: {hops} hop(s), {format_elapsed(held.total)}; "
            f"median {format_elapsed(held.median)}, p90 {format_elapsed(held.p90)}"
        )
    return lines


def _critical_table(report: Report) -> list[str]:
    """The critical results' lines of the table (none when none were sent)."""
    if not any(c.sent for c in report.critical):
        return []
    lines = ["", "Critical results sent (acknowledged within target / acknowledged / sent):"]
    for c in report.critical:
        if c.sent:
            lines.append(
                f"  {c.service}: {c.within_target}/{c.acknowledged}/{c.sent}, forwarded "
                f"{c.forwarded}, escalated {c.escalated}, time to acknowledge median "
                f"{format_elapsed(c.median)}, p90 {format_elapsed(c.p90)}"
            )
    return lines


def _followup_table(report: Report) -> list[str]:
    """The follow-ups' lines of the table (none when none were opened or are overdue)."""
    if not any(f.opened or f.overdue_now for f in report.followups):
        return []
    lines = ["", "Follow-ups owed to patients (done / opened, overdue now):"]
    for f in report.followups:
        if f.opened or f.overdue_now:
            lines.append(
                f"  {f.service}: {f.done}/{f.opened}, overdue now {f.overdue_now}, time to done "
                f"median {format_elapsed(f.median)}, p90 {format_elapsed(f.p90)}"
            )
    return lines


def _transfers_table(report: Report) -> list[str]:
    """The transfers' lines of the table (none when nothing was transferred)."""
    moved = [t for t in report.transfers if t.transferred_out or t.transferred_in]
    if not moved:
        return []
    lines = ["", "Transfers to another service (out / in; time at the service until sent on):"]
    for t in moved:
        lines.append(
            f"  {t.service}: {t.transferred_out} out / {t.transferred_in} in, time until "
            f"transfer median {format_elapsed(t.median)}, p90 {format_elapsed(t.p90)}"
        )
    return lines
