"""Block Kit for report figures, from plain data: the `/consult stats` reply and the leads'
App Home "week at a glance". A service's figures come as the report's JSON shape
(`bot.reports.model.Figures.as_dict()` with its breakdowns); nothing here queries.

Also the one home of how reports show numbers: elapsed seconds as '2h 05m'
(`format_elapsed`, not `bot.domain.durations.format_duration`, which writes config
durations) and shares as '83%'."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot.domain.text import escape
from bot.slack.render.primitives import URGENCY_LABELS, context, link, section

Figures = Mapping[str, Any]  # one group's figures, as in the report's JSON
Blocks = list[dict[str, Any]]
Refs = Sequence[tuple[str, str | None]]  # (consult reference, permalink or None)

MAX_SLACK_BLOCKS = 50
MAX_REFS = 10
TOP_CONSULTANTS = 10


def format_elapsed(seconds: float | None) -> str:
    """'45s', '12m', '2h 05m', '3d 4h'; '—' for no value."""
    if seconds is None:
        return "—"
    sign = "-" if seconds < 0 else ""
    total = int(round(abs(seconds)))
    if total < 60:
        return f"{sign}{total}s"
    minutes = total // 60
    if minutes < 60:
        return f"{sign}{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{sign}{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{sign}{days}d {hours}h"


def format_share(share: float | None) -> str:
    """'83%'; '—' for no value."""
    return "—" if share is None else f"{share * 100:.0f}%"


def ref_list(refs: Refs, *, links: bool) -> str:
    """At most MAX_REFS references (linked when `links`), then how many more."""
    shown = [link(url, ref) if links else escape(ref) for ref, url in refs[:MAX_REFS]]
    text = ", ".join(shown)
    if len(refs) > MAX_REFS:
        text += f" …and {len(refs) - MAX_REFS} more"
    return text


# --------------------------------------------------------------------------- /consult stats
def _summary_lines(f: Figures) -> list[str]:
    w, fb = f["waiting_on_requester"], f["feedback"]
    helpful = (
        f" · feedback {fb['count']} ({format_share(fb['helpful_share'])} helpful)"
        if fb["count"]
        else ""
    )
    tta, ttfr, ttans = f["time_to_acknowledge"], f["time_to_first_response"], f["time_to_answer"]
    return [
        f"*{f['consults']}* consults · *{f['answered']}* answered · *{f['closed']}* closed · "
        f"{f['cancelled']} cancelled",
        f"Open now: *{f['open_now']}* ({f['open_overdue']} overdue)",
        f"Time to acknowledge: median *{format_elapsed(tta['median'])}*"
        f" · p90 {format_elapsed(tta['p90'])}",
        f"First response: median *{format_elapsed(ttfr['median'])}*"
        f" · p90 {format_elapsed(ttfr['p90'])}",
        f"Time to answer: median *{format_elapsed(ttans['median'])}*"
        f" · p90 {format_elapsed(ttans['p90'])}",
        f"Within SLA: *{format_share(f['within_sla'])}* answered · "
        f"{format_share(f['ack_within_sla'])} acknowledged",
        f"Waiting on requesters: {w['consults']} consult(s), "
        f"{format_elapsed(w['total']) if w['total'] else '—'} in total (not counted above)",
        f"Escalated {f['escalated']} · handed off {f['handed_off']} · "
        f"reopened {f['reopened']}{helpful}",
    ]


def _breakdown_line(label: str, f: Figures) -> str:
    return (
        f"• {label}: {f['consults']} consults, {f['answered']} answered, "
        f"answer median {format_elapsed(f['time_to_answer']['median'])}, "
        f"in SLA {format_share(f['within_sla'])}, {f['open_overdue']} overdue now"
    )


def critical_line(c: dict[str, Any] | None) -> str | None:
    """A service's critical results in one line (counts and times only), or None when it
    sent none: `c` is `bot.reports.critical.CriticalFigures.as_dict()`."""
    if not c or not c.get("sent"):
        return None
    tta = c.get("time_to_acknowledge") or {}
    return (
        f":rotating_light: Critical results: *{c['sent']}* sent, {c['acknowledged']} "
        f"acknowledged ({c['within_target']} within target), {c['forwarded']} forwarded, "
        f"{c['escalated']} escalated; time to acknowledge median "
        f"{format_elapsed(tta.get('median'))}, p90 {format_elapsed(tta.get('p90'))}"
    )


def service_stats_blocks(entry: Figures, name: str, days: int) -> Blocks:
    """One service's figures over the last `days` days, then by urgency and by consultant
    (the TOP_CONSULTANTS with the most consults)."""
    blocks = [
        section(
            f":bar_chart: *{escape(name)}* — consults created in the last {days} days\n"
            + "\n".join(_summary_lines(entry))
        )
    ]
    urgency_lines = [
        _breakdown_line(URGENCY_LABELS.get(u, escape(u)), f)
        for u, f in entry["by_urgency"].items()
        if f["consults"] or f["open_now"]
    ]
    if urgency_lines:
        blocks.append(section("*By urgency*\n" + "\n".join(urgency_lines)))
    people = sorted(
        entry["by_consultant"].items(), key=lambda item: (-item[1]["consults"], item[0])
    )
    if people:
        lines = [_breakdown_line(f"<@{escape(u)}>", f) for u, f in people[:TOP_CONSULTANTS]]
        if len(people) > TOP_CONSULTANTS:
            lines.append(f"…and {len(people) - TOP_CONSULTANTS} more (`python -m bot report`).")
        blocks.append(section("*By consultant*\n" + "\n".join(lines)))
    held = held_lines(entry)
    if held:
        blocks.append(section("*Time held* (hops that ended in the period)\n" + "\n".join(held)))
    line = critical_line(entry.get("critical"))
    if line:
        blocks.append(section(line))
    return blocks


def held_lines(entry: Figures) -> list[str]:
    """Per consultant, the time they held the service's consults (the TOP_CONSULTANTS who
    held them longest), then the queue's: `entry["holders"]` and `entry["queue_seconds"]`
    as in the report's JSON (`bot.reports.holders`). Counts and times only."""
    holders = sorted(
        entry.get("holders") or [], key=lambda h: (-h["held_seconds"]["total"], h["user"])
    )
    lines = [
        f"• <@{escape(h['user'])}>: *{format_elapsed(h['held_seconds']['total'])}* over "
        f"{h['hops']} hop(s), median {format_elapsed(h['held_seconds']['median'])}"
        for h in holders[:TOP_CONSULTANTS]
    ]
    if len(holders) > TOP_CONSULTANTS:
        lines.append(f"…and {len(holders) - TOP_CONSULTANTS} more (`python -m bot report`).")
    queue = entry.get("queue_seconds")
    if queue:
        lines.append(
            f"• In the queue (nobody owned it): median {format_elapsed(queue['median'])}"
            f" · p90 {format_elapsed(queue['p90'])}"
        )
    return lines


def stats_reply(services: Sequence[tuple[str, Figures]], *, days: int) -> dict[str, Any]:
    """The `/consult stats` reply for (service name, figures) pairs: as many services as
    fit in one message, a note on what the figures mean, and a fallback without figures."""
    blocks: Blocks = []
    shown: list[str] = []
    for name, entry in services:
        more = service_stats_blocks(entry, name, days)
        if len(blocks) + len(more) > MAX_SLACK_BLOCKS - 1:
            break
        blocks += more
        shown.append(name)
    note = (
        "Times are from when the consult was opened; time to answer leaves out time spent "
        "waiting on the requester. Overdue counts are as of now."
    )
    if len(shown) < len(services):
        note += (
            f" Showing {len(shown)} of {len(services)} services: use `/consult stats "
            "<service>` for the others."
        )
    blocks.append(context(note))
    text = f"CareLoop figures for the last {days} days: " + ", ".join(escape(n) for n in shown)
    return {"text": text, "blocks": blocks}


# --------------------------------------------------------------------------- App Home
def glance_blocks(services: Sequence[tuple[str, Figures, Refs]]) -> Blocks:
    """App Home blocks for leads from (service name, last 7 days' figures, overdue now)."""
    blocks: Blocks = [section("*Your services — last 7 days*")]
    for name, entry, refs in services:
        late = f"*{len(refs)}*: {ref_list(refs, links=True)}" if refs else "none"
        blocks.append(
            section(
                f"*{escape(name)}* · {entry['consults']} consults · {entry['answered']} "
                f"answered · median time to answer "
                f"{format_elapsed(entry['time_to_answer']['median'])} · within SLA "
                f"{format_share(entry['within_sla'])}\nOverdue now: {late}"
            )
        )
    blocks.append(context("`/consult stats` for the full figures."))
    return blocks
