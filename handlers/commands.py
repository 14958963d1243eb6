"""`/consult`: the form, the quick form and every sub-command. Answers are ephemeral."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App

from bot.domain.lifecycle import Refused
from bot.domain.parsing import Parsed, parse
from bot.flows.consults.drafts import Draft, DraftInvalid
from bot.slack.render import blocks
from bot.slack.render.blocks import RenderContext
from handlers.common import Services, open_modal, services


def register(app: App) -> None:
    """Listen for /consult."""
    app.command("/consult")(handle_consult)


def handle_consult(ack: Ack, command: dict[str, Any], context: dict[str, Any]) -> None:
    """Dispatch /consult to the sub-command; every path acks with something to read."""
    svc = services(context)
    user = command.get("user_id", "")
    parsed = parse(command.get("text", ""))
    if parsed.error:
        ack(text=f":warning: {parsed.error}")
        return
    handler = VERBS.get(parsed.verb, quick_form)
    try:
        reply = handler(svc, parsed, command)
    except Refused as refusal:
        svc.consults.audit_refusal(
            user=user, action=parsed.verb, reason=str(refusal), ref=parsed.ref
        )
        reply = f":no_entry: {refusal}"
    if isinstance(reply, dict):
        ack(text=reply.get("text", ""), blocks=reply.get("blocks"))
    else:
        ack(text=reply)


def _key(command: dict[str, Any]) -> str | None:
    """Exactly-once key of a command: a replay carries the same trigger id."""
    trigger = command.get("trigger_id")
    return f"cmd:{trigger}" if trigger else None


def _ctx(svc: Services) -> RenderContext:
    return RenderContext(catalogue=svc.catalogue, now=svc.clock.now(), load=svc.consults.by_ids)


def open_form(svc: Services, parsed: Parsed, command: dict[str, Any]) -> str:
    view = blocks.new_consult_modal(svc.catalogue, channel=command.get("channel_id", ""))
    if open_modal(svc, command.get("trigger_id"), view):
        return "Opening the consult form…"
    return (
        ":warning: Slack did not open the form just now. Try again, or use the quick form: "
        "`/consult <service> [stat|urgent|routine] <patient>: <question>`"
    )


def quick_form(svc: Services, parsed: Parsed, command: dict[str, Any]) -> str:
    """Create the consult at once; open the form pre-filled when something is missing."""
    draft = Draft(
        service=parsed.service or "",
        urgency=parsed.urgency,
        patient=parsed.patient,
        question=parsed.question,
    )
    user = command.get("user_id", "")
    try:
        opened = svc.consults.open(
            draft,
            requester=user,
            origin_key=f"cmd:{command.get('trigger_id') or ''}"
            if command.get("trigger_id")
            else None,
        )
    except DraftInvalid as invalid:
        if invalid.service is None:
            return f":warning: {invalid.errors['service']}\nExample: " + (
                "`/consult rad stat MRN 12345: CT head, r/o bleed?` — see `/consult help`."
            )
        view = blocks.new_consult_modal(
            svc.catalogue,
            service=invalid.service,
            urgency=draft.urgency if draft.urgency in ("stat", "urgent", "routine") else None,
            patient=draft.patient,
            question=draft.question,
            channel=command.get("channel_id", ""),
        )
        problems = " ".join(invalid.errors.values())
        if open_modal(svc, command.get("trigger_id"), view):
            return f"Some details are missing ({problems}) — I opened the form with what you typed."
        return f":warning: {problems} Example: `/consult {parsed.service} stat MRN 12345: question`"
    return blocks.opened_ack(opened.consult, opened.duplicate, opened.others, _ctx(svc))


def show_help(svc: Services, parsed: Parsed, command: dict[str, Any]) -> str:
    return blocks.help_text(svc.catalogue)


def show_list(svc: Services, parsed: Parsed, command: dict[str, Any]) -> str:
    user = command.get("user_id", "")
    return blocks.consult_list(svc.consults.for_user(user), user, _ctx(svc))


def acknowledge(svc: Services, parsed: Parsed, command: dict[str, Any]) -> str:
    assert parsed.ref
    outcome = svc.consults.acknowledge(parsed.ref, actor=command["user_id"], key=_key(command))
    if not outcome.changed:
        return f"You already own {outcome.consult.ref}."
    return f":eyes: You acknowledged {outcome.consult.ref}; the requester has been told."


def answer(svc: Services, parsed: Parsed, command: dict[str, Any]) -> str:
    assert parsed.ref
    outcome = svc.consults.answer(
        parsed.ref,
        actor=command["user_id"],
        text=parsed.text,
        key=_key(command),
    )
    return f":white_check_mark: {outcome.consult.ref} answered; the requester has been sent it."


def need_info(svc: Services, parsed: Parsed, command: dict[str, Any]) -> str:
    assert parsed.ref
    outcome = svc.consults.need_info(
        parsed.ref,
        actor=command["user_id"],
        question=parsed.text,
        key=_key(command),
    )
    return (
        f":question: Asked the requester of {outcome.consult.ref}; your answer clock is paused "
        "until they reply (with the Reply button in their message, or in the thread)."
    )


def close(svc: Services, parsed: Parsed, command: dict[str, Any]) -> str:
    assert parsed.ref
    outcome = svc.consults.close(parsed.ref, actor=command["user_id"], key=_key(command))
    return f":lock: {outcome.consult.ref} is closed. Thank you for closing the loop."


def reopen(svc: Services, parsed: Parsed, command: dict[str, Any]) -> str:
    assert parsed.ref
    outcome = svc.consults.reopen(
        parsed.ref,
        actor=command["user_id"],
        text=parsed.text,
        key=_key(command),
    )
    return f":leftwards_arrow_with_hook: {outcome.consult.ref} is reopened with your follow-up."


def cancel(svc: Services, parsed: Parsed, command: dict[str, Any]) -> str:
    assert parsed.ref
    outcome = svc.consults.cancel(
        parsed.ref,
        actor=command["user_id"],
        reason=parsed.text,
        key=_key(command),
    )
    return f":no_entry_sign: {outcome.consult.ref} is cancelled; its nudges have stopped."


def snooze(svc: Services, parsed: Parsed, command: dict[str, Any]) -> str:
    assert parsed.ref
    outcome = svc.consults.snooze(
        parsed.ref, actor=command["user_id"], duration=parsed.text, key=_key(command)
    )
    until = blocks.slack_date(outcome.consult.snoozed_until)
    return f":zzz: Reminders for {outcome.consult.ref} are snoozed until {until}."


def patient(svc: Services, parsed: Parsed, command: dict[str, Any]) -> str:
    return blocks.patient_list(parsed.patient, svc.consults.for_patient(parsed.patient), _ctx(svc))


def handoff(svc: Services, parsed: Parsed, command: dict[str, Any]) -> str:
    assert parsed.user
    outcomes = svc.consults.handoff_all(actor=command["user_id"], to=parsed.user, note=parsed.text)
    if not outcomes:
        return "You have no open consults assigned to you, so there is nothing to hand off."
    refs = ", ".join(o.consult.ref for o in outcomes)
    return f":arrows_counterclockwise: Handed off to <@{parsed.user}>: {refs}. They have the list."


def on_call(svc: Services, parsed: Parsed, command: dict[str, Any]) -> str:
    if parsed.user is None:
        return blocks.on_call_text(svc.consults.on_call_table())
    service = svc.consults.set_on_call(
        service_key=parsed.service or "",
        actor=command["user_id"],
        user=parsed.user,
        key=_key(command),
    )
    return f":pager: <@{parsed.user}> is now on call for {blocks.escape(service.name)}."


def stats(svc: Services, parsed: Parsed, command: dict[str, Any]) -> str | dict[str, Any]:
    from bot.reports.core import stats_for_slack  # noqa: PLC0415 - reports load lazily

    return stats_for_slack(
        svc, user=command["user_id"], service=parsed.service, days=parsed.days or 30
    )


VERBS: dict[str, Callable[[Services, Parsed, dict[str, Any]], str | dict[str, Any]]] = {
    "form": open_form,
    "quick": quick_form,
    "help": show_help,
    "list": show_list,
    "ack": acknowledge,
    "answer": answer,
    "needinfo": need_info,
    "close": close,
    "reopen": reopen,
    "cancel": cancel,
    "patient": patient,
    "handoff": handoff,
    "oncall": on_call,
    "stats": stats,
    "snooze": snooze,
}
