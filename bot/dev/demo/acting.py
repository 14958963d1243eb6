"""People acting in Slack: typing ``/consult``, pressing buttons, filling in forms and
replying in threads, sent to the bot as Slack sends them and logged for the transcript."""

from __future__ import annotations

import time
from typing import Any

from bot.dev.demo.cast import CHANNELS, Person
from bot.dev.demo.records import Action, StepFailed
from bot.dev.demo.screens import Screens
from bot.dev.fakeslack import FakeSlack, Response, SlackSender
from bot.dev.fakeslack.requests import plain_text, static_select, users_select
from bot.slack.ids import ActionId, BlockId

Json = dict[str, Any]


class Acting:
    """What the people in the demo do; `sender` is set once the bot listens."""

    def __init__(self, fake: FakeSlack, screens: Screens) -> None:
        self.fake = fake
        self.screens = screens
        self.sender: SlackSender | None = None
        self.actions: list[Action] = []
        self.triggers: dict[str, str] = {}  # trigger id -> user
        self.view_owners: dict[str, str] = {}  # view id -> user

    def _log(self, person: Person, where: str, text: str) -> None:
        self.actions.append(Action(time.time(), where, person.label, text))

    def _send(self) -> SlackSender:
        assert self.sender is not None
        return self.sender

    def _trigger(self, person: Person) -> str:
        trigger = self._send().new_trigger_id()
        self.triggers[trigger] = person.id
        return trigger

    def command(self, person: Person, text: str, channel: str) -> str:
        """`person` types `/consult text` in `channel`; returns what Slack shows them."""
        trigger = self._trigger(person)
        typed = self.screens.render(f"/consult {text}".rstrip(), None)
        self._log(person, f"#{CHANNELS[channel]}", typed)
        resp = self._send().command(text, user=person.id, channel=channel, trigger_id=trigger)
        _check(resp, f"/consult {text[:30]}")
        reply = _reply_text(resp)
        blocks = resp.json.get("blocks") if isinstance(resp.json, dict) else None
        if reply:
            shown = self.screens.render(reply, blocks)
            where = f"#{CHANNELS[channel]}, only {person.name} sees"
            self.actions.append(Action(time.time(), where, "CareLoop", shown, kind="ephemeral"))
            if blocks:
                return shown  # a reply with blocks (`show`): what they read, rendered
        return reply

    def click(self, person: Person, action_id: str, ref: str, message: Json, label: str) -> str:
        """`person` presses the button `action_id` for `ref` on `message`; returns trigger."""
        trigger = self._trigger(person)
        channel = message["channel"]
        self._log(person, self.screens.where(channel), f"presses [{label}] on {ref}")
        resp = self._send().block_action(
            action_id,
            user=person.id,
            value=ref,
            channel=channel,
            message=message,
            block_id=_block_id_of(message, action_id) or "b",
            trigger_id=trigger,
        )
        _check(resp, f"[{label}] on {ref}")
        return trigger

    def choose_service(
        self, person: Person, view: Json, service: str, label: str, typed: dict[str, str]
    ) -> Json:
        """`person` picks `service` in the form's Service menu (having typed `typed`)."""
        current = dict(view)
        current["state"] = {"values": form_state(view, typed | {BlockId.SERVICE: service})}
        title = (view.get("title") or {}).get("text", "form")
        self.view_owners[str(view.get("id"))] = person.id
        self._log(person, f"form “{title}”", f"chooses Service: {label}")
        resp = self._send().block_action(
            ActionId.SERVICE_SELECT,
            user=person.id,
            view=current,
            block_id=BlockId.SERVICE,
            selected_option={"value": service, "text": {"type": "plain_text", "text": label}},
        )
        _check(resp, f"choose {label} in the form")
        return current

    def submit(self, person: Person, view: Json, values: Json, summary: str) -> None:
        """`person` fills in the modal `view` with `values` and presses its submit button."""
        submit = (view.get("submit") or {}).get("text", "Submit")
        title = (view.get("title") or {}).get("text", "form")
        self._log(person, f"form “{title}”", f"{summary}\npresses [{submit}]")
        callback_id = str(view.get("callback_id"))
        resp = self._send().view_submission(callback_id, values, user=person.id, view=view)
        _check(resp, f"[{submit}] on {title}")
        errors = (resp.json or {}).get("errors") if isinstance(resp.json, dict) else None
        if errors:
            shown = "; ".join(str(v) for v in errors.values())
            self.actions.append(
                Action(time.time(), f"form “{title}”", "CareLoop", shown, kind="form_error")
            )
            raise StepFailed(f"[{submit}] on {title}", f"the form showed errors: {shown}")

    def reply(self, person: Person, ref: str, text: str) -> None:
        """`person` writes `text` in the consult's thread (Slack stores it, sends the event)."""
        sender = self._send()
        card = self.screens.card(ref)
        if card is None:
            raise StepFailed(f"reply in the {ref} thread", f"no card for {ref}")
        channel = card["channel"]
        stored = self.fake.inject_message(channel, text, user=person.id, thread_ts=card["ts"])
        self._log(person, f"#{CHANNELS[channel]} › {ref} thread", text)
        event = {"type": "message", "channel": channel, "channel_type": "channel"}
        event |= {"user": person.id, "text": text, "ts": stored["ts"], "thread_ts": card["ts"]}
        _check(sender.event(event), f"reply in the {ref} thread")


def form_state(view: Json, changes: dict[str, str]) -> Json:
    """``view.state.values`` as Slack sends it: what the form shows, with `changes` typed in
    (block id -> text, or the chosen option's value for menus)."""
    values: Json = {}
    for block in view.get("blocks") or []:
        if block.get("type") != "input":
            continue
        block_id = block.get("block_id", "")
        element = block.get("element") or {}
        action_id = element.get("action_id", "value")
        kind = element.get("type")
        if kind == "static_select":
            chosen = changes.get(block_id, (element.get("initial_option") or {}).get("value"))
            state = static_select(chosen)
        elif kind == "users_select":
            state = users_select(changes.get(block_id))
        else:
            state = plain_text(changes.get(block_id, element.get("initial_value")))
        values[block_id] = {action_id: state}
    return values


def _check(resp: Response, step: str) -> None:
    if resp.status != 200:
        raise StepFailed(step, f"the bot answered HTTP {resp.status}")


def _reply_text(resp: Response) -> str:
    if isinstance(resp.json, dict):
        return str(resp.json.get("text") or "")
    return resp.text if resp.status == 200 else ""


def _block_id_of(message: Json, action_id: str) -> str | None:
    for block in message.get("blocks") or []:
        for element in block.get("elements") or []:
            if element.get("action_id") == action_id:
                return block.get("block_id")
    return None
