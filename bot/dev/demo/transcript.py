"""The transcript: what people did (logged as they did it) and what the bot made them see,
replayed from the calls the Slack stand-in recorded, in time order."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from bot.dev.demo.cast import CHANNELS, PEOPLE
from bot.dev.demo.records import Action, Entry
from bot.dev.demo.screens import Screens
from bot.dev.fakeslack import BOT_USER_ID, Call

Json = dict[str, Any]
_VIEW_METHODS = ("views.open", "views.push", "views.update")


def build_transcript(
    actions: list[Action],
    screens: Screens,
    triggers: dict[str, str],
    view_owners: dict[str, str],
) -> list[Entry]:
    """Everything people did and saw, in time order."""
    clock = screens.clock
    entries = [Entry(a.at, clock(a.at), a.where, a.who, a.text, a.kind) for a in actions]
    entries += _Replay(screens, triggers, view_owners).entries()
    entries.sort(key=lambda e: e.at)
    return entries


class _Replay:
    """Walks the stand-in's recorded calls, keeping what each message said last."""

    def __init__(
        self, screens: Screens, triggers: dict[str, str], view_owners: dict[str, str]
    ) -> None:
        self.screens = screens
        self.triggers = triggers
        self.view_owners = view_owners
        # Bot messages per channel, in posting order, to learn each post's ts.
        self.stored: dict[str, list[Json]] = {}
        self.versions: dict[tuple[str, str], str] = {}
        self.refs: dict[tuple[str, str], str] = {}
        self.out: list[Entry] = []

    def entries(self) -> list[Entry]:
        handlers: dict[str, Callable[[Call], None]] = {
            "chat.postMessage": self._post,
            "chat.update": self._update,
            "chat.postEphemeral": self._ephemeral,
            "response_url": self._response,
        } | {method: self._view for method in _VIEW_METHODS}
        for call in list(self.screens.fake.calls):
            handler = handlers.get(call.method)
            if call.status == 200 and call.ok and handler is not None:
                handler(call)
        return self.out

    def _add(self, at: float, where: str, text: str, kind: str) -> None:
        self.out.append(Entry(at, self.screens.clock(at), where, "CareLoop", text, kind))

    def _text(self, args: Json) -> str:
        return self.screens.render(args.get("text"), args.get("blocks"))

    def _post(self, call: Call) -> None:
        args = call.args
        channel = _resolve(str(args.get("channel", "")))
        if channel not in self.stored:
            messages = self.screens.fake.messages(channel)
            self.stored[channel] = [m for m in messages if m["user"] == BOT_USER_ID]
        msg = self.stored[channel].pop(0) if self.stored[channel] else None
        text = self._text(args)
        if msg is not None:
            self.versions[(channel, msg["ts"])] = text
            ref = str(args.get("text", "")).split(" ·")[0]
            if not msg["thread_ts"] and " · " in str(args.get("text", "")):
                self.refs[(channel, msg["ts"])] = ref
        thread = args.get("thread_ts")
        if channel.startswith("D"):
            person = PEOPLE.get(channel[1:])
            self._add(call.at, f"DM to {person.label}" if person else channel, text, "dm")
        elif thread:
            ref = self.refs.get((channel, str(thread)), "consult")
            where = f"#{CHANNELS.get(channel, channel)} › {ref} thread"
            self._add(call.at, where, text, "reply")
        else:
            self._add(call.at, f"#{CHANNELS.get(channel, channel)}", text, "post")

    def _update(self, call: Call) -> None:
        channel = _resolve(str(call.args.get("channel", "")))
        key = (channel, str(call.args.get("ts", "")))
        text = self._text(call.args)
        changed = _changed_lines(self.versions.get(key, ""), text)
        self.versions[key] = text
        if changed:
            ref = self.refs.get(key, "message")
            where = f"#{CHANNELS.get(channel, channel)}"
            self._add(call.at, where, f"(updated) card {ref}:\n{changed}", "update")

    def _ephemeral(self, call: Call) -> None:
        args = call.args
        person = PEOPLE.get(str(args.get("user", "")))
        name = person.name if person else str(args.get("user"))
        where = f"{self.screens.where(str(args.get('channel', '')))}, only {name} sees"
        self._add(call.at, where, self._text(args), "ephemeral")

    def _view(self, call: Call) -> None:
        args = call.args
        view = args.get("view") or {}
        if isinstance(view, str):
            view = json.loads(view)
        owner = self.triggers.get(str(args.get("trigger_id")))
        owner = owner or self.view_owners.get(str(args.get("view_id")), "")
        user = PEOPLE.get(owner)
        title = (view.get("title") or {}).get("text", "form")
        body = self.screens.render("", view.get("blocks"))
        buttons = " ".join(
            f"[{(view.get(k) or {}).get('text')}]" for k in ("submit", "close") if view.get(k)
        )
        where = f"form on {user.name}'s screen" if user else "form"
        again = "(updated) " if call.method == "views.update" else ""
        self._add(call.at, where, f"{again}“{title}”\n{body}\n{buttons}", "form")

    def _response(self, call: Call) -> None:
        text = self._text(call.args)
        if text:
            self._add(call.at, "response", text, "ephemeral")


def _resolve(channel: str) -> str:
    return "D" + channel if channel[:1] in ("U", "W") else channel


def _changed_lines(before: str, after: str) -> str:
    """What a person notices in an updated message: new lines, and buttons that went."""
    old = before.splitlines()
    new = after.splitlines()
    changed = [line for line in new if line not in old]
    had_buttons = any(line.startswith("[") for line in old)
    has_buttons = any(line.startswith("[") for line in new)
    if had_buttons and not has_buttons:
        changed.append("(no buttons any more)")
    return "\n".join(changed)
