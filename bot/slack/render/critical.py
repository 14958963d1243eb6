"""Critical results in Slack: the direct message a recipient gets (with **Acknowledge
receipt** and **Not my patient**), what the sender is told, and the three forms (send,
acknowledge with a read-back, forward). Fallback texts and modal titles carry no patient
details; those appear only in blocks."""

from __future__ import annotations

from typing import Any

from bot.domain.catalogue import Catalogue, Service
from bot.slack.ids import ActionId, BlockId, CallbackId
from bot.slack.render import primitives as ui
from bot.slack.render.context import RenderContext
from bot.slack.render.modals import _option, _text_input, modal
from bot.slack.render.primitives import Blocks, mention, section, slack_date, user_text
from storage.models_critical import CriticalResult

Params = dict[str, Any]
Rendered = tuple[str, Blocks]


def critical_result(r: CriticalResult, p: Params, ctx: RenderContext) -> Rendered:
    """To a recipient: who sends it, the patient, the finding, the reference, when sent;
    the buttons while it is not acknowledged."""
    reminder = int(p.get("reminder") or 0)
    head = ":rotating_light: *Critical result*" + (f" — reminder {reminder}" if reminder else "")
    fallback = f"Critical result {r.ref} from {mention(r.sender)}: please acknowledge receipt"
    lines = [
        f"{head} *{r.ref}* from {mention(r.sender)} ({user_text(ctx.service_name(r.service))})",
        f"*Patient:* {user_text(r.patient)}",
        f"*Finding:*\n{ui.quote(r.finding)}",
    ]
    if r.callback:
        lines.append(f"*Call back:* {user_text(r.callback)}")
    blocks: Blocks = [section("\n".join(lines)), ui.context(f"Sent {slack_date(r.sent_at)}")]
    if p.get("forwarded_by"):
        note = f"Forwarded to you by {mention(p['forwarded_by'])}"
        blocks.append(
            ui.context(note + (f": {user_text(p.get('reason'))}" if p.get("reason") else ""))
        )
    if p.get("escalated"):
        blocks.append(
            ui.context(f"Escalated to you: {_names(p.get('waiting'))} has not acknowledged.")
        )
    if r.acknowledged_at is not None:
        blocks.append(
            ui.context(
                f"Acknowledged by {mention(r.acknowledged_by)} {slack_date(r.acknowledged_at)}"
            )
        )
        return fallback, blocks
    blocks.append(
        ui.actions(
            f"critical:{r.ref}",
            ui.button("Acknowledge receipt", ActionId.CRITICAL_ACK, str(r.ref), "primary"),
            ui.button("Not my patient", ActionId.CRITICAL_NOT_MINE, str(r.ref)),
        )
    )
    return fallback, blocks


def critical_acknowledged(r: CriticalResult, p: Params, ctx: RenderContext) -> Rendered:
    """To the sender: "CRIT-12 acknowledged by @… at …: <read back>"."""
    head = f":white_check_mark: {r.ref} acknowledged by {mention(r.acknowledged_by)}"
    body = f"{head} at {slack_date(r.acknowledged_at)}:\n{ui.quote(r.read_back)}"
    return f"{r.ref} acknowledged by {mention(r.acknowledged_by)}", [section(body)]


def critical_forwarded(r: CriticalResult, p: Params, ctx: RenderContext) -> Rendered:
    """To the sender: a recipient said "not my patient" and forwarded it."""
    text = (
        f":arrow_right: {mention(p.get('by'))} says {r.ref} is not their patient and forwarded "
        f"it to {mention(p.get('to'))}. The clock still runs from {slack_date(r.sent_at)}."
    )
    blocks = [section(text)]
    if p.get("reason"):
        blocks.append(ui.context(f"Reason: {user_text(p.get('reason'))}"))
    return f"{r.ref} forwarded to {mention(p.get('to'))}", blocks


def critical_not_received(r: CriticalResult, p: Params, ctx: RenderContext) -> Rendered:
    """To the sender at escalation: not received, phone the clinician."""
    text = (
        f":warning: *{r.ref} has not been received.* {_names(p.get('waiting'))} has not "
        f"acknowledged it since {slack_date(r.sent_at)}. *Phone the clinician now.* "
        f"It has also gone to {_names(p.get('escalated_to'))}."
    )
    return f"{r.ref} has not been received: phone the clinician", [section(text)]


def _names(users: object) -> str:
    found = [mention(str(u)) for u in users or []] if isinstance(users, list) else []
    return ", ".join(found) or "nobody"


def _user_input(block_id: str, label: str, initial: str | None = None) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "users_select", "action_id": "value"}
    if initial:
        element["initial_user"] = initial
    return {
        "type": "input",
        "block_id": block_id,
        "label": {"type": "plain_text", "text": label},
        "element": element,
    }


def critical_ack_modal(r: CriticalResult) -> dict[str, Any]:
    """Acknowledge receipt: the finding, and the required read-back."""
    shown = section(f"*{r.ref}* from {mention(r.sender)}\n*Patient:* {user_text(r.patient)}")
    read_back = _text_input(
        BlockId.READ_BACK,
        "Read back",
        multiline=True,
        hint="Restate the finding and your plan in your own words.",
    )
    return modal(
        CallbackId.CRITICAL_ACK, "Acknowledge receipt", "Acknowledge", str(r.ref),
        [shown, ui.context(ui.quote(r.finding)), read_back],
    )  # fmt: skip


def critical_forward_modal(ref: str) -> dict[str, Any]:
    """Not my patient: to whom it goes, and why."""
    return modal(
        CallbackId.CRITICAL_FORWARD, "Not my patient", "Forward", ref,
        [
            ui.context(f"Critical result *{ref}*"),
            _user_input(BlockId.FORWARD_TO, "Forward to"),
            _text_input(BlockId.REASON, "Reason", max_length=300),
        ],
    )  # fmt: skip


def critical_new_modal(
    catalogue: Catalogue, services: list[Service], *, to: str | None = None, meta: str = ""
) -> dict[str, Any]:
    """Send a critical result: Service (those the sender may send for), To, Patient,
    Finding, Callback (optional). `meta` carries the consult it comes from, if any."""
    select: dict[str, Any] = {
        "type": "static_select",
        "action_id": "value",
        "options": [_option(s.name, s.key) for s in services or catalogue.services][:100],
    }
    if len(services) == 1:
        select["initial_option"] = _option(services[0].name, services[0].key)
    service = {
        "type": "input",
        "block_id": BlockId.SERVICE,
        "label": {"type": "plain_text", "text": "Service"},
        "element": select,
    }
    return modal(
        CallbackId.CRITICAL_NEW, "Critical result", "Send", meta,
        [
            service,
            _user_input(BlockId.TO, "To", to),
            _text_input(BlockId.PATIENT, "Patient", max_length=200),
            _text_input(BlockId.FINDING, "Finding", multiline=True),
            _text_input(BlockId.CALLBACK, "Callback", optional=True, max_length=200,
                        hint="How to reach you, e.g. ext. 4321"),
        ],
    )  # fmt: skip


def critical_home(
    sent: list[CriticalResult], waiting: list[CriticalResult], ctx: RenderContext
) -> Blocks:
    """App Home's critical results, first on the tab: those `user` sent that nobody has
    acknowledged, and those waiting for `user`'s acknowledgement. References, service and
    age only: never patient details."""
    blocks: Blocks = []
    for title, rows in (
        ("Critical results I sent, not yet acknowledged", sent),
        ("Critical results waiting for my acknowledgement", waiting),
    ):
        if rows:
            lines = [
                f"• :rotating_light: *{r.ref}* — {user_text(ctx.service_name(r.service))}, "
                f"sent {slack_date(r.sent_at)}, to {', '.join(mention(u) for u in r.reached())}"
                for r in rows[:15]
            ]
            blocks += [section(f"*{title}*"), section("\n".join(lines))]
    return blocks
