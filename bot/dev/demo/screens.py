"""What people see in Slack: the stand-in's channels, threads, DMs, "only you" messages and
forms, rendered as plain text the way a person reads them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.dev.demo.cast import CAST, CHANNELS, PEOPLE, Person, service_channel
from bot.dev.demo.records import DayClock
from bot.dev.fakeslack import BOT_USER_ID, FakeSlack
from bot.dev.plain import to_plain_text

Json = dict[str, Any]

# Card sections whose label stands on a line of its own above the value.
_LABELS = {"Question", "Study / accession number"}


class Screens:
    """Reads the stand-in (`fake`) as the people in the demo see it."""

    def __init__(self, fake: FakeSlack, clock: DayClock) -> None:
        self.fake = fake
        self.clock = clock
        self.names = {p.id: p.name for p in CAST} | {BOT_USER_ID: "CareLoop"}

    def render(self, text: str | None, blocks: list[Json] | None) -> str:
        """A message's text and blocks as plain text (mentions and dates resolved)."""
        plain = to_plain_text(
            text or "", blocks, names=self.names, channels=CHANNELS, when=self.clock
        )
        return _tidy(plain)

    def where(self, channel: str) -> str:
        """A channel as a person names it: ``#radiology`` or ``DM with Dr Chen``."""
        if channel.startswith("D"):
            person = PEOPLE.get(channel[1:])
            return f"DM with {person.name}" if person else channel
        return f"#{CHANNELS.get(channel, channel)}"

    def card(self, ref: str) -> Json | None:
        """The consult's card (top-level bot message whose fallback starts with the ref)."""
        for msg in self.fake.messages(service_channel(ref)):
            if (
                msg["user"] == BOT_USER_ID
                and not msg["thread_ts"]
                and msg["text"].startswith(f"{ref} ·")
            ):
                return msg
        return None

    def card_text(self, ref: str) -> str:
        msg = self.card(ref)
        return self.render(msg["text"], msg["blocks"]) if msg else ""

    def thread_texts(self, ref: str) -> list[str]:
        msg = self.card(ref)
        if msg is None:
            return []
        return [
            self.render(m["text"], m["blocks"])
            for m in self.fake.thread(msg["channel"], msg["ts"])
            if m["ts"] != msg["ts"]
        ]

    def dm_texts(self, person: Person) -> list[str]:
        return [self.render(m["text"], m["blocks"]) for m in self.fake.dms(person.id)]

    def ephemeral_texts(self, person: Person) -> list[str]:
        return [
            self.render(e.get("text"), e.get("blocks")) for e in self.fake.ephemerals(person.id)
        ]

    def has_dm(self, person: Person, *needles: str) -> bool:
        return any(all(n in t for n in needles) for t in self.dm_texts(person))

    def in_thread(self, ref: str, *needles: str) -> bool:
        return any(all(n in t for n in needles) for t in self.thread_texts(ref))

    def dm_message(self, person: Person, action_id: str, ref: str) -> Json | None:
        """The newest DM to `person` carrying the button `action_id` for `ref`."""
        for msg in reversed(self.fake.dms(person.id)):
            for block in msg["blocks"] or []:
                for element in block.get("elements") or []:
                    if element.get("action_id") == action_id and element.get("value") == ref:
                        return msg
        return None

    def form(self, callback_id: str, ref: str | None = None, *, after: int = 0) -> Json | None:
        """The newest modal Slack holds with `callback_id` (and private_metadata `ref`),
        among those opened after the first `after` views."""
        for view in reversed(self.fake.views()[after:]):
            if view.get("callback_id") != callback_id:
                continue
            if ref is None or str(view.get("private_metadata", "")).split("|")[0] == ref:
                return view
        return None

    def seen(self, person: Person, where: str) -> Callable[[], str]:
        """A description of the last DM to (``where="dm"``) or message for `person`."""

        def describe() -> str:
            texts = self.dm_texts(person) if where == "dm" else self.ephemeral_texts(person)
            last = texts[-1].splitlines()[0] if texts else "nothing"
            return f"last {'DM to' if where == 'dm' else 'message for'} {person.name}: {last!r}"

        return describe


def initial_value(view: Json | None, block_id: str) -> str | None:
    """The pre-filled value of a text input in a modal."""
    for block in (view or {}).get("blocks") or []:
        if block.get("block_id") == block_id:
            return (block.get("element") or {}).get("initial_value")
    return None


def _tidy(text: str) -> str:
    """Card sections written as "Label\\nvalue" read as "Label: value" on one line."""
    out: list[str] = []
    for line in text.splitlines():
        previous = out[-1] if out else ""
        if out and previous in _LABELS:
            out[-1] = f"{previous}: {line}"
        else:
            out.append(line)
    return "\n".join(out)
