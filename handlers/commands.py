"""`/consult`: the form, the quick form and every sub-command. Answers are ephemeral.

The sub-commands come from `bot.domain.commands`; `HANDLERS` answers each of its verbs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, App

import handlers.cover as cover
import handlers.critical as critical
import handlers.followups as followups
import handlers.moves as moves
from bot.domain.commands import QUICK_EXAMPLE, QUICK_USAGE, RELOAD, Verb
from bot.domain.durations import parse_duration
from bot.domain.lifecycle import Refused
from bot.domain.parsing import Parsed, parse
from bot.domain.text import escape
from bot.domain.vocabulary import URGENCIES, Urgency
from bot.flows.consults.drafts import Draft, DraftInvalid
from bot.reports.stats import stats_for_slack
from bot.slack.render.context import RenderContext
from bot.slack.render.modals import new_consult_modal
from bot.slack.render.primitives import slack_date
from bot.slack.render.texts import consult_list, help_text, on_call_text, opened_ack, patient_list
from bot.slack.render.timeline import timeline_reply
from handlers.common import Services, open_modal, services
from handlers.middleware import audited, refusal_notice, request_key_of


def register(app: App) -> None:
    """Listen for /consult."""
    app.command("/consult")(handle_consult)


@dataclass(frozen=True)
class Slash:
    """One /consult as its sub-command needs it; `key` is the exactly-once key."""

    svc: Services
    parsed: Parsed
    user: str
    channel: str
    trigger_id: str | None
    key: str | None


def handle_consult(ack: Ack, command: dict[str, Any], context: dict[str, Any]) -> None:
    """Dispatch /consult to the sub-command; every path acks with something to read."""
    svc = services(context)
    parsed = parse(command.get("text", ""))
    if parsed.error:
        ack(text=f":warning: {parsed.error}")
        return
    slash = Slash(
        svc=svc,
        parsed=parsed,
        user=command.get("user_id", ""),
        channel=command.get("channel_id", ""),
        trigger_id=command.get("trigger_id"),
        key=request_key_of(context),
    )
    result = audited(
        svc,
        lambda: HANDLERS[parsed.verb](slash),
        user=slash.user,
        action=parsed.verb.value,
        ref=parsed.ref,
    )
    reply = refusal_notice(result) if isinstance(result, Refused) else result
    if isinstance(reply, dict):
        ack(text=reply.get("text", ""), blocks=reply.get("blocks"))
    else:
        ack(text=reply)


def _ctx(svc: Services) -> RenderContext:
    return RenderContext(catalogue=svc.catalogue, now=svc.clock.now(), load=svc.consults.by_ids)


def open_form(cmd: Slash) -> str:
    """`/consult` alone: the consult form."""
    view = new_consult_modal(cmd.svc.catalogue, channel=cmd.channel)
    if open_modal(cmd.svc, cmd.trigger_id, view):
        return "Opening the consult form…"
    return (
        ":warning: Slack did not open the form just now. Try again, or use the quick form: "
        f"`{QUICK_USAGE}`"
    )


def quick_form(cmd: Slash) -> str:
    """Create the consult at once; open the form pre-filled when something is missing."""
    svc, parsed = cmd.svc, cmd.parsed
    draft = Draft(
        service=parsed.service or "",
        urgency=parsed.urgency,
        patient=parsed.patient,
        question=parsed.question,
    )
    try:
        opened = svc.consults.open(draft, requester=cmd.user, origin_key=cmd.key)
    except DraftInvalid as invalid:
        if invalid.service is None:
            return f":warning: {invalid.errors['service']}\nExample: " + (
                f"`{QUICK_EXAMPLE}` — see `/consult help`."
            )
        view = new_consult_modal(
            svc.catalogue,
            service=invalid.service,
            urgency=draft.urgency if draft.urgency in URGENCIES else None,
            patient=draft.patient,
            question=draft.question,
            channel=cmd.channel,
        )
        problems = " ".join(invalid.errors.values())
        if open_modal(svc, cmd.trigger_id, view):
            return f"Some details are missing ({problems}) — I opened the form with what you typed."
        example = f"/consult {parsed.service} {Urgency.STAT} MRN 12345: question"
        return f":warning: {problems} Example: `{example}`"
    return opened_ack(opened.consult, opened.duplicate, opened.others, _ctx(svc))


def show_help(cmd: Slash) -> str:
    """`/consult help`."""
    return help_text(cmd.svc.catalogue)


def show_list(cmd: Slash) -> str:
    """`/consult list`: the person's open consults."""
    return consult_list(cmd.svc.consults.for_user(cmd.user), cmd.user, _ctx(cmd.svc))


@dataclass(frozen=True)
class RefVerb:
    """A sub-command on one consult: the consult flow it calls (a `ConsultService` method),
    the keyword the typed text goes under (None: it takes no text), and the reply."""

    flow: str
    text_as: str | None
    reply: Callable[[Any], str]


def _acknowledged(outcome: Any) -> str:
    if not outcome.changed:
        return f"You already own {outcome.consult.ref}."
    return f":eyes: You acknowledged {outcome.consult.ref}; the requester has been told."


REF_VERBS: dict[Verb, RefVerb] = {
    Verb.ACK: RefVerb("acknowledge", None, _acknowledged),
    Verb.ANSWER: RefVerb(
        "answer",
        "text",
        lambda o: f":white_check_mark: {o.consult.ref} answered; the requester has been sent it.",
    ),
    Verb.NEED_INFO: RefVerb(
        "need_info",
        "question",
        lambda o: (
            f":question: Asked the requester of {o.consult.ref}; your answer clock is paused "
            "until they reply (with the Reply button in their message, or in the thread)."
        ),
    ),
    Verb.CLOSE: RefVerb(
        "close",
        None,
        lambda o: f":lock: {o.consult.ref} is closed. Thank you for closing the loop.",
    ),
    Verb.REOPEN: RefVerb(
        "reopen",
        "text",
        lambda o: f":leftwards_arrow_with_hook: {o.consult.ref} is reopened with your follow-up.",
    ),
    Verb.CANCEL: RefVerb(
        "cancel",
        "reason",
        lambda o: f":no_entry_sign: {o.consult.ref} is cancelled; its nudges have stopped.",
    ),
    Verb.SNOOZE: RefVerb(
        "snooze",
        "duration",
        lambda o: (
            f":zzz: Reminders for {o.consult.ref} are snoozed until "
            f"{slack_date(o.consult.snoozed_until)}."
        ),
    ),
}


def on_consult(cmd: Slash) -> str:
    """A sub-command on one consult (`REF_VERBS`): call its flow, say what happened."""
    assert cmd.parsed.ref
    verb = REF_VERBS[cmd.parsed.verb]
    text = {verb.text_as: cmd.parsed.text} if verb.text_as else {}
    flow = getattr(cmd.svc.consults, verb.flow)
    return verb.reply(flow(cmd.parsed.ref, actor=cmd.user, key=cmd.key, **text))


def acknowledge(cmd: Slash) -> str:
    """`/consult ack <ref>`: a consult is acknowledged; a critical result (`CRIT-12`) opens
    the read-back form."""
    if critical.is_critical(cmd.parsed.ref):
        assert cmd.parsed.ref
        opened = critical.open_ack(cmd.svc, cmd.parsed.ref, cmd.user, cmd.trigger_id)
        return opened or "Opening the read-back form…"
    return on_consult(cmd)


def send_critical(cmd: Slash) -> str:
    """`/consult critical [service] @user <patient>: <finding>`, or the form."""
    return critical.command(cmd.svc, cmd.parsed, cmd.user, cmd.trigger_id, cmd.key)


def followup(cmd: Slash) -> str:
    """`/consult followup <patient or ref>: <what is owed>`, or the form."""
    return followups.command(cmd.svc, cmd.parsed, cmd.user, cmd.trigger_id, cmd.key)


def my_followups(cmd: Slash) -> str:
    """`/consult followups`: the follow-ups I own."""
    return followups.mine(cmd.svc, cmd.user)


def patient(cmd: Slash) -> str:
    """`/consult patient <patient>`: a patient's open consults."""
    found = cmd.svc.consults.for_patient(cmd.parsed.patient)
    return patient_list(cmd.parsed.patient, found, _ctx(cmd.svc))


def handoff(cmd: Slash) -> str:
    """`/consult handoff @colleague [note]`: hand over every open consult assigned to me."""
    parsed = cmd.parsed
    assert parsed.user
    outcomes = cmd.svc.consults.handoff_all(actor=cmd.user, to=parsed.user, note=parsed.text)
    if not outcomes:
        return "You have no open consults assigned to you, so there is nothing to hand off."
    refs = ", ".join(o.consult.ref for o in outcomes)
    return f":arrows_counterclockwise: Handed off to <@{parsed.user}>: {refs}. They have the list."


def on_call(cmd: Slash) -> str:
    """`/consult oncall`: who is on call; `reload` re-reads the schedules; with a service
    and a person (and `for 4h` or `until 18:00`), change it."""
    svc, parsed = cmd.svc, cmd.parsed
    if parsed.extra.get(RELOAD):
        failed = svc.consults.reload_schedules(actor=cmd.user)
        if failed:
            return f":warning: {failed} schedule(s) could not be loaded; their leads were told why."
        return ":arrows_counterclockwise: Schedules reloaded."
    if parsed.user is None:
        return on_call_text(svc.consults.on_call_table())
    length = parsed.extra.get("for")
    service, until = svc.consults.set_on_call(
        service_key=parsed.service or "",
        actor=cmd.user,
        user=parsed.user,
        key=cmd.key,
        length=parse_duration(length) if length else None,
        until=parsed.extra.get("until"),
    )
    ends = f" until {slack_date(until)}" if until else ""
    return f":pager: <@{parsed.user}> is now on call for {escape(service.name)}{ends}."


def show(cmd: Slash) -> dict[str, Any]:
    """`/consult show <ref>`: the consult's card and timeline (requester, consultants, leads)."""
    assert cmd.parsed.ref
    shown = cmd.svc.consults.show(cmd.parsed.ref, user=cmd.user)
    return timeline_reply(shown.consult, shown.rows, shown.events, _ctx(cmd.svc))


def stats(cmd: Slash) -> str | dict[str, Any]:
    """`/consult stats [service] [period]`: response times (service leads)."""
    svc = cmd.svc
    return stats_for_slack(
        catalogue=svc.catalogue,
        sessions=svc.sessions,
        clock=svc.clock,
        audit_refusal=svc.consults.audit_refusal,
        user=cmd.user,
        service=cmd.parsed.service,
        days=cmd.parsed.days or 30,
    )


HANDLERS: dict[Verb, Callable[[Slash], str | dict[str, Any]]] = {
    Verb.FORM: open_form,
    Verb.QUICK: quick_form,
    Verb.HELP: show_help,
    Verb.LIST: show_list,
    **dict.fromkeys(REF_VERBS, on_consult),
    Verb.ACK: acknowledge,
    Verb.CRITICAL: send_critical,
    Verb.FOLLOWUP: followup,
    Verb.FOLLOWUPS: my_followups,
    Verb.PATIENT: patient,
    Verb.HANDOFF: handoff,
    Verb.ON_CALL: on_call,
    Verb.STATS: stats,
    Verb.COVER: lambda cmd: cover.command(cmd.svc, cmd.parsed, cmd.user, cmd.key),
    Verb.HANDOVER: lambda cmd: cover.handover_command(cmd.svc, cmd.parsed, cmd.user, cmd.key),
    Verb.SHOW: show,
    Verb.TRANSFER: lambda cmd: moves.transfer_command(cmd.svc, cmd.parsed, cmd.user, cmd.key),
    Verb.URGENCY: lambda cmd: moves.urgency_command(cmd.svc, cmd.parsed, cmd.user, cmd.key),
}
