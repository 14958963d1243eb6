"""Block Kit for the weekly digest DM ("digest" template), from the outbox message's params
as `bot.reports.digest` queues them: this week's figures beside last week's, and the
references of what is overdue now."""

from __future__ import annotations

from typing import Any

from bot.domain.text import escape
from bot.slack.render.context import RenderContext
from bot.slack.render.figures import critical_line, format_elapsed, format_share
from bot.slack.render.primitives import context, section

# (params key, label, how to show it)
_DIGEST_ROWS = (
    ("consults", "Consults", "count"),
    ("answered", "Answered", "count"),
    ("tta_median", "Median time to acknowledge", "duration"),
    ("ttans_median", "Median time to answer", "duration"),
    ("ttans_p90", "90th percentile time to answer", "duration"),
    ("within_sla", "Answered within SLA", "share"),
    ("ack_within_sla", "Acknowledged within SLA", "share"),
    ("escalated", "Escalated", "count"),
    ("waiting_total", "Waiting on requesters (not counted above)", "duration"),
    ("helpful_share", "Rated helpful", "share"),
)


def _digest_value(value: Any, kind: str) -> str:
    if kind == "count":
        return "—" if value is None else str(value)
    if kind == "share":
        return format_share(value)
    if kind == "duration" and not value:
        return "—" if value is None else "0m"
    return format_elapsed(value)


def _overdue_line(overdue: dict[str, Any]) -> str:
    count = int(overdue.get("count") or 0)
    refs = [escape(str(r)) for r in overdue.get("refs") or []]
    if not count:
        return ":white_check_mark: Nothing is overdue right now."
    more = f" …and {count - len(refs)} more" if count > len(refs) else ""
    return f":warning: *Overdue now: {count}* — {', '.join(refs)}{more}"


def render_digest(params: dict[str, Any], ctx: RenderContext) -> tuple[str, list[dict[str, Any]]]:
    """The "digest" DM: this week's figures beside last week's, and what is overdue now."""
    key = str(params.get("service", ""))
    name = escape(ctx.service_name(key))
    this = params.get("this_week") or {}
    prev = params.get("previous_week") or {}
    first_day = escape(str(params.get("first_day") or str(params.get("since", "?"))[:10]))
    last_day = escape(str(params.get("last_day") or "?"))
    lines = [
        f"{label}: *{_digest_value(this.get(k), kind)}* (week before: "
        f"{_digest_value(prev.get(k), kind)})"
        for k, label, kind in _DIGEST_ROWS
    ]
    blocks = [
        section(
            f":bar_chart: *Weekly digest — {name}*\n"
            f"Consults opened {first_day} to {last_day}, compared with the week before"
        ),
        section("\n".join(lines)),
        section(_overdue_line(params.get("overdue") or {})),
        *[section(line) for line in [critical_line(params.get("critical"))] if line],
        context(
            "Times run from when a consult was opened; time to answer leaves out waiting on "
            "the requester. A chart of the daily median time to answer follows. "
            "`/consult stats` for more."
        ),
    ]
    return f"Weekly CareLoop digest for {name}", blocks
