"""The ephemeral answers to `/consult` sub-commands, as mrkdwn text: help, my consults, a
patient's consults, who is on call, and the quick form's receipt; and the one-line summary
of a patient's other open consults (also in the requester's confirmation)."""

from __future__ import annotations

from collections.abc import Sequence

from bot.domain.catalogue import Catalogue
from bot.domain.commands import help_lines
from bot.domain.schedule import Standing
from bot.domain.text import escape
from bot.slack.render.context import RenderContext
from bot.slack.render.primitives import (
    age,
    mention,
    ref_link,
    slack_date,
    status_word,
    urgency_label,
    user_text,
)
from storage.models import Consult


def other_consult_lines(others: Sequence[Consult], ctx: RenderContext) -> str:
    """One bullet per other open consult of the same patient: reference, service, status."""
    return "\n".join(
        f"• {ref_link(o)} — {escape(ctx.service_name(o.service))}, {status_word(o.status)}"
        for o in others
    )


def _consult_lines(items: Sequence[Consult], ctx: RenderContext, for_whom: bool = False) -> str:
    """One line a consult (`for_whom`: ending with whose request it is), or "none"."""
    return (
        "\n".join(
            f"• {ref_link(c)} — {escape(ctx.service_name(c.service))}, "
            f"{urgency_label(c.urgency)}, "
            f"{status_word(c.status)}, {age(c.created_at, ctx.now)} old"
            + (f", for {mention(c.requester)}" if for_whom else "")
            for c in items
        )
        or "• none"
    )


def consult_list(consults: Sequence[Consult], user: str, ctx: RenderContext) -> str:
    """`/consult list`: my consults as requester and as assignee, with status and age, and
    those of the requesters I cover now (only when there are some)."""
    mine = [c for c in consults if c.requester == user]
    owned = [c for c in consults if c.assignee == user and c.requester != user]
    covering = [c for c in consults if user not in (c.requester, c.assignee)]
    text = (
        f"*Requested by you*\n{_consult_lines(mine, ctx)}\n"
        f"*Assigned to you*\n{_consult_lines(owned, ctx)}"
    )
    if covering:
        text += f"\n*Covering for colleagues*\n{_consult_lines(covering, ctx, for_whom=True)}"
    return text


def patient_list(patient: str, consults: Sequence[Consult], ctx: RenderContext) -> str:
    """`/consult patient`: a patient's open consults across services."""
    if not consults:
        return f"No open consults for patient {user_text(patient, 200)}."
    rows = "\n".join(
        f"• {ref_link(c)} — {escape(ctx.service_name(c.service))}, "
        f"{urgency_label(c.urgency)}, {status_word(c.status)}, "
        f"requested by {mention(c.requester)}, assigned to {mention(c.assignee)}"
        for c in consults
    )
    return f"*Open consults for patient {user_text(patient, 200)}*\n{rows}"


def on_call_text(rows: Sequence[Standing]) -> str:
    """`/consult oncall`: for every service who is on call now, until when, who next, and
    any override."""
    return "*On call now*\n" + "\n".join(_standing(row) for row in rows)


def _standing(row: Standing) -> str:
    svc = row.service
    line = f"• *{escape(svc.name)}* (`{svc.key}`): {', '.join(mention(u) for u in row.people)}"
    if row.until:
        line += f" until {slack_date(row.until)}"
    if row.overridden:
        line += (
            " (override"
            + (f" until {slack_date(row.override_until)}" if row.override_until else "")
            + ")"
        )
    if row.following:
        line += f"; next {', '.join(mention(u) for u in row.following)}"
    return line + (f"; backup {mention(svc.backup)}" if svc.backup else "")


def opened_ack(c: Consult, duplicate: bool, others: Sequence[Consult], ctx: RenderContext) -> str:
    """The immediate ephemeral answer to a quick-form `/consult`."""
    name = escape(ctx.service_name(c.service))
    if duplicate:
        return f"This request was already received as *{c.ref}* ({name}); nothing new was created."
    text = (
        f":inbox_tray: *{c.ref}* received for *{name}* "
        f"({urgency_label(c.urgency)}). I'm posting it to <#{c.channel}> and "
        "will send you a link when it is there."
    )
    if others:
        text += "\nThis patient has other open consults:\n" + other_consult_lines(others, ctx)
    return text


def help_text(catalogue: Catalogue) -> str:
    """`/consult help`: every form, with an example."""
    services = ", ".join(
        f"`{s.key}`" + (f" ({', '.join(s.aliases)})" if s.aliases else "")
        for s in catalogue.services
    )
    return "\n".join(
        [
            "*CareLoop — consult requests that always come back*",
            *help_lines(),
            f"Services: {services}",
        ]
    )
