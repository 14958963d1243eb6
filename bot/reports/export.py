"""A `Report` written out for `python -m bot report`: JSON (the report's own shape), CSV
(one row per service and per service and urgency; seconds, shares 0..1; then, when critical
results were sent, a blank line and a second table of them per service; likewise for
transfers) and an aligned plain-text table (durations as '2h 05m', shares as percentages)."""

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
    one row per service (`CRITICAL_CSV_COLUMNS`); otherwise nothing more."""
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
    _transfers_csv(report, out)
    return out.getvalue()


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
    out += _transfers_table(report)
    return "\n".join(out) + "\n"


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
