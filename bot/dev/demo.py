"""`python -m bot demo`: a clinical day with CareLoop, on a laptop, in under a minute.

Nothing is needed but ``pip install``: no Slack workspace, no tokens, no database server.
The demo

1. writes a demo catalogue (radiology, pathology, cardiology; the example catalogue's clocks
   with one real second standing for five minutes of the day, divided further by
   ``--speed``) into a temporary directory;
2. starts :class:`bot.dev.fakeslack.FakeSlack`, the local stand-in for Slack's Web API that the
   tests use too, and the real bot as ``python -m bot serve`` (the production code path:
   gunicorn, the outbox dispatcher and the APScheduler sweep) on 127.0.0.1 with a fresh
   SQLite database, pointed at the stand-in;
3. plays the day as Slack would, with signed requests (:class:`bot.dev.fakeslack.SlackSender`):
   a stat radiology consult acknowledged and answered; a pathology consult nobody picks up,
   nudged and escalated to the backup and the lead, then answered; a consultant who needs
   information from the requester and gets it; a shift handoff; a requester who cancels; one
   who rates an answer and closes it. Every step waits (with a time limit) for what it should
   produce in the stand-in, and the demo stops with a non-zero exit naming the step when it
   does not come;
4. stops the bot with SIGTERM and runs ``python -m bot report`` on the database: the lead's
   report.

It prints what each person saw, in order: the time of the (compressed) day, where
(channel, thread, DM, form, "only you" messages), who, and the text rendered from Block Kit
(:func:`bot.blocks.to_plain_text`, buttons as ``[Acknowledge]``). ``--json`` prints one JSON
document instead (steps with ``ok``, the transcript, the report). Progress goes to stderr.
The temporary directory is removed at the end unless ``--keep`` is given; then the database
path and the command to report on it are printed.

The demo never reads the bot's database while it runs: everything it checks is what Slack
(the stand-in) received, as a person would see it.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from bot.dev.fakeslack import BOT_USER_ID, FakeSlack, Response, SlackSender
from bot.dev.fakeslack.requests import plain_text, static_select, users_select
from bot.dev.plain import to_plain_text
from bot.slack.ids import ActionId, BlockId, CallbackId

__all__ = ["DEMO_CATALOGUE", "MINUTES_PER_SECOND", "Entry", "Step", "demo_catalogue", "run_demo"]

# One real second is this many minutes of the demo's day (at --speed 1).
MINUTES_PER_SECOND = 5
DAY_STARTS = datetime(2026, 3, 2, 8, 0)  # a Monday, 08:00
TOKEN = "xoxb-careloop-demo"
MAX_SPEED = 10.0


# ---------------------------------------------------------------------------- the cast
@dataclass(frozen=True)
class Person:
    """Someone in the demo: Slack user id, display name and role."""

    id: str
    name: str
    role: str

    @property
    def label(self) -> str:
        return f"{self.name} ({self.role})"


AHMED = Person("UAHMED", "Dr Ahmed", "emergency physician")
BROWN = Person("UBROWN", "Dr Brown", "ward 4B physician")
GARCIA = Person("UGARCIA", "Dr Garcia", "orthopaedic surgeon")
CHEN = Person("URADCHEN", "Dr Chen", "radiology on call")
NOVAK = Person("URADNOVAK", "Dr Novak", "radiology, night shift")
OKOYE = Person("URADOKOYE", "Dr Okoye", "radiology backup")
REYES = Person("URADREYES", "Dr Reyes", "radiology lead")
SINGH = Person("UPATHSINGH", "Dr Singh", "pathology on call")
PATEL = Person("UPATHPATEL", "Dr Patel", "pathology backup")
MOREAU = Person("UPATHMOREAU", "Dr Moreau", "pathology lead")
LI = Person("UCARDLI", "Dr Li", "cardiology on call")
KOWALSKI = Person("UCARDKOWAL", "Dr Kowalski", "cardiology backup")
OBI = Person("UCARDOBI", "Dr Obi", "cardiology lead")
CAST = (AHMED, BROWN, GARCIA, CHEN, NOVAK, OKOYE, REYES, SINGH, PATEL, MOREAU, LI, KOWALSKI, OBI)
PEOPLE = {p.id: p for p in CAST}

CHANNELS = {
    "CEMERG": "emergency",
    "CWARD4B": "ward-4b",
    "CORTHO": "orthopaedics",
    "CRAD": "radiology",
    "CPATH": "pathology",
    "CCARD": "cardiology",
}
MEMBERS = {
    "CRAD": [CHEN.id, NOVAK.id, OKOYE.id, REYES.id],
    "CPATH": [SINGH.id, PATEL.id, MOREAU.id],
    "CCARD": [LI.id, KOWALSKI.id, OBI.id],
}

# The catalogue, with every duration in *demo seconds* at --speed 1 (one second = five
# minutes): stat 15m/1h/10m, urgent 1h/4h/30m, routine 4h/24h/2h, as in the example catalogue,
# but escalating after one nudge so the whole ladder fits in the demo.
DEMO_CATALOGUE = """\
# CareLoop demo catalogue (written by `python -m bot demo`).
# Durations are real seconds: at --speed 1 one second stands for five minutes of the day.
sweep_interval = {sweep}
storm_threshold = 50
post_interval = 1
admins = ["{lead}"]

[digest]
enabled = false

[urgency.stat]
acknowledge_within = {stat_ack}
answer_within = {stat_answer}
nudge_every = {stat_nudge}
escalate_after = 1

[urgency.urgent]
acknowledge_within = {urgent_ack}
answer_within = {urgent_answer}
nudge_every = {urgent_nudge}
escalate_after = 1

[urgency.routine]
acknowledge_within = {routine_ack}
answer_within = {routine_answer}
nudge_every = {routine_nudge}
escalate_after = 1

[[services]]
key = "radiology"
name = "Radiology"
prefix = "RAD"
aliases = ["rad", "imaging"]
channel = "CRAD"
on_call = "{chen}"
backup = "{okoye}"
leads = ["{reyes}"]

[[services.intake]]
key = "accession"
label = "Study / accession number"
required = true
hint = "As shown in PACS, e.g. A2026-0412"
max_length = 40

[[services]]
key = "pathology"
name = "Pathology"
prefix = "PATH"
aliases = ["path", "lab"]
channel = "CPATH"
on_call = "{singh}"
backup = "{patel}"
leads = ["{moreau}"]

[[services]]
key = "cardiology"
name = "Cardiology"
prefix = "CARD"
aliases = ["cards", "cardio"]
channel = "CCARD"
on_call = "{li}"
backup = "{kowalski}"
leads = ["{obi}"]
"""

_BASE_SECONDS = {
    "sweep": 1,
    "stat_ack": 3,
    "stat_answer": 12,
    "stat_nudge": 2,
    "urgent_ack": 12,
    "urgent_answer": 48,
    "urgent_nudge": 6,
    "routine_ack": 48,
    "routine_answer": 288,
    "routine_nudge": 24,
}


def demo_seconds(speed: float) -> dict[str, int]:
    """The catalogue's durations at `speed`: whole seconds (the catalogue's unit), >= 1."""
    return {k: max(1, round(v / speed)) for k, v in _BASE_SECONDS.items()}


def demo_catalogue(speed: float = 1.0) -> str:
    """The demo's catalogue TOML for `speed`."""
    ids = {p.name.split()[-1].lower(): p.id for p in CAST}
    return DEMO_CATALOGUE.format(lead=REYES.id, **demo_seconds(speed), **ids)


# ---------------------------------------------------------------------------- results
@dataclass
class Entry:
    """One thing someone saw or did: real time `at`, the day's clock `time`, where, who."""

    at: float
    time: str
    where: str
    who: str
    text: str
    kind: str  # scene | action | post | reply | dm | update | ephemeral | form | form_error


@dataclass
class Step:
    """One scripted check: did the expected effect appear in (the stand-in for) Slack?"""

    name: str
    scene: str
    ok: bool
    seconds: float
    detail: str = ""


class StepFailed(Exception):
    """A scripted step did not produce what it should."""

    def __init__(self, step: str, detail: str) -> None:
        super().__init__(f"{step}: {detail}")
        self.step = step
        self.detail = detail


@dataclass
class _Action:
    at: float
    where: str
    who: str
    text: str
    kind: str = "action"


# ---------------------------------------------------------------------------- progress
class Progress:
    """The progress line on stderr: rewritten in place on a terminal, one line per scene
    otherwise (logs, CI)."""

    def __init__(self, stream: TextIO, total: int) -> None:
        self.stream = stream
        self.total = total
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.index = 0
        self.scene = ""
        self._width = 0

    def start_scene(self, title: str) -> None:
        self.index += 1
        self.scene = f"[{self.index}/{self.total}] {title}…"
        if self.tty:
            self._show(self.scene)
        else:
            print(self.scene, file=self.stream, flush=True)

    def waiting(self, what: str) -> None:
        if self.tty:
            self._show(f"{self.scene} ({what})")

    def _show(self, line: str) -> None:
        try:
            columns = shutil.get_terminal_size((100, 20)).columns
        except (OSError, ValueError):
            columns = 100
        line = line[: max(columns - 1, 20)]
        pad = max(self._width - len(line), 0)
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()
        self._width = len(line)

    def done(self) -> None:
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


# ---------------------------------------------------------------------------- the demo
class Demo:
    """The running demo: the Slack stand-in, the bot process, the people and the checks."""

    SCENES = (
        "starting CareLoop (python -m bot serve) on a fresh SQLite database",
        "radiology: a stat consult, acknowledged and answered",
        "pathology: nobody picks up; nudged, escalated to backup and lead, answered",
        "cardiology: the consultant needs information from the requester",
        "radiology: shift handoff to the night radiologist",
        "cardiology: a requester cancels",
        "radiology: the requester rates the answer and closes the consult",
        "end of the day: the lead's report",
    )

    def __init__(self, *, speed: float, workdir: Path, progress: Progress) -> None:
        self.speed = speed
        self.workdir = workdir
        self.progress = progress
        self.seconds = demo_seconds(speed)
        self.scale = MINUTES_PER_SECOND * speed  # day minutes per real second
        self.secret = secrets.token_hex(16)
        self.db_path = workdir / "careloop-demo.db"
        self.catalogue_path = workdir / "consult-demo.toml"
        self.log_path = workdir / "bot.log"
        self.fake = FakeSlack(token=TOKEN)
        self.sender: SlackSender | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.t0 = time.time()
        self.steps: list[Step] = []
        self.actions: list[_Action] = []
        self.triggers: dict[str, str] = {}  # trigger id -> user
        self.view_owners: dict[str, str] = {}  # view id -> user
        self.report = ""
        self.api_url = "http://127.0.0.1:9/api/"
        self._scene = ""
        self._log: Any = None

    # ------------------------------------------------------------------ environment
    def bot_env(self) -> dict[str, str]:
        """The environment of the bot and report processes: demo settings only."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SLACK_", "DATABASE_", "CONSULT_", "WEB_", "LOG_"))
            and k not in ("PORT", "HOST")
        }
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        env.update(
            SLACK_BOT_TOKEN=TOKEN,
            SLACK_SIGNING_SECRET=self.secret,
            SLACK_API_URL=self.api_url,
            DATABASE_URL=f"sqlite:///{self.db_path}",
            CONSULT_CONFIG=str(self.catalogue_path),
            LOG_LEVEL="WARNING",
            LOG_FORMAT="text",
            HOST="127.0.0.1",
            WEB_CONCURRENCY="1",
            PYTHONUNBUFFERED="1",
        )
        return env

    def start(self) -> None:
        """Write the catalogue, start the stand-in and the bot; wait for /healthz."""
        self.catalogue_path.write_text(demo_catalogue(self.speed), encoding="utf-8")
        self.fake.start()
        self.api_url = self.fake.url
        for channel, users in MEMBERS.items():
            self.fake.set_members(channel, users)
        for person in CAST:
            self.fake.set_user(
                person.id,
                real_name=person.name,
                name=person.name.lower().replace(" ", "."),
                profile={"real_name": person.name, "display_name": person.name},
            )
        self.port = _free_port()
        url = f"http://127.0.0.1:{self.port}/slack/events"
        self.sender = SlackSender(url, self.secret, response_url_factory=self.fake.response_url)
        self._log = open(self.log_path, "wb")  # closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--port", str(self.port)],
            env=self.bot_env(),
            cwd=self.workdir,  # no stray .env from where the demo was started
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        health = f"http://127.0.0.1:{self.port}/healthz"
        deadline = time.monotonic() + 30
        while True:
            self._check_alive("starting the bot")
            try:
                with urllib.request.urlopen(health, timeout=1) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise StepFailed("bot answers GET /healthz", "no answer within 30 s")
            time.sleep(0.05)
        self._record("bot answers GET /healthz", 0.0)

    def stop(self) -> int | None:
        """SIGTERM the bot and wait for it (kill after 15 s); returns its exit code."""
        code = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait(timeout=5)
        elif self.proc is not None:
            code = self.proc.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        self.fake.stop()
        return code

    def bot_log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        # bolt's two start-up notices about tokens are expected; leave them out.
        kept = [line for line in text.splitlines() if "slack_bolt.App: As " not in line]
        return "\n".join(kept[-lines:])

    def _check_alive(self, step: str) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise StepFailed(
                step, f"the bot exited with code {self.proc.returncode}:\n{self.bot_log_tail()}"
            )

    # ------------------------------------------------------------------ the day's clock
    def clock(self, epoch: float) -> str:
        """HH:MM of the demo's day for a real time (whole seconds, as Slack dates are)."""
        minutes = max(math.floor(epoch) - math.floor(self.t0), 0) * self.scale
        when = DAY_STARTS + timedelta(minutes=minutes)
        return when.strftime("%H:%M" if when.date() == DAY_STARTS.date() else "%a %H:%M")

    def pause(self, minutes: float) -> None:
        """Let `minutes` of the day pass (between what people do)."""
        time.sleep(minutes / self.scale)

    # ------------------------------------------------------------------ scenes and checks
    @contextmanager
    def scene(self, index: int) -> Iterator[None]:
        self._scene = self.SCENES[index]
        self.progress.start_scene(self._scene)
        self.actions.append(_Action(time.time(), "", "", self._scene, kind="scene"))
        yield

    def _record(self, name: str, seconds: float, detail: str = "", ok: bool = True) -> None:
        self.steps.append(Step(name, self._scene, ok, round(seconds, 2), detail))

    def expect(
        self,
        name: str,
        predicate: Callable[[], bool],
        *,
        timeout: float = 10.0,
        detail: str | Callable[[], str] = "",
    ) -> None:
        """Wait up to `timeout` s for `predicate`; record the step or raise StepFailed."""
        self.progress.waiting(name)
        started = time.monotonic()
        deadline = started + timeout
        while not predicate():
            self._check_alive(name)
            if time.monotonic() >= deadline:
                why = detail() if callable(detail) else detail
                message = f"not seen within {timeout:.0f} s" + (f"; {why}" if why else "")
                self._record(name, time.monotonic() - started, message, ok=False)
                raise StepFailed(name, message)
            time.sleep(0.02)
        self._record(name, time.monotonic() - started)

    # ------------------------------------------------------------------ what Slack holds
    def render(self, text: str | None, blocks: list[dict[str, Any]] | None) -> str:
        names = {p.id: p.name for p in CAST} | {BOT_USER_ID: "CareLoop"}
        return _tidy(
            to_plain_text(text or "", blocks, names=names, channels=CHANNELS, when=self.clock)
        )

    def card(self, ref: str) -> dict[str, Any] | None:
        """The consult's card (top-level bot message whose fallback starts with the ref)."""
        channel = _service_channel(ref)
        for msg in self.fake.messages(channel):
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

    def dm_message(self, person: Person, action_id: str, ref: str) -> dict[str, Any] | None:
        """The newest DM to `person` carrying the button `action_id` for `ref`."""
        for msg in reversed(self.fake.dms(person.id)):
            for block in msg["blocks"] or []:
                for element in block.get("elements") or []:
                    if element.get("action_id") == action_id and element.get("value") == ref:
                        return msg
        return None

    def form(
        self, callback_id: str, ref: str | None = None, *, after: int = 0
    ) -> dict[str, Any] | None:
        """The newest modal Slack holds with `callback_id` (and private_metadata `ref`),
        among those opened after the first `after` views."""
        for view in reversed(self.fake.views()[after:]):
            if view.get("callback_id") != callback_id:
                continue
            if ref is None or str(view.get("private_metadata", "")).split("|")[0] == ref:
                return view
        return None

    def _seen(self, person: Person, where: str) -> Callable[[], str]:
        def describe() -> str:
            texts = self.dm_texts(person) if where == "dm" else self.ephemeral_texts(person)
            last = texts[-1].splitlines()[0] if texts else "nothing"
            return f"last {'DM to' if where == 'dm' else 'message for'} {person.name}: {last!r}"

        return describe

    # ------------------------------------------------------------------ people acting
    def _log_action(self, person: Person, where: str, text: str) -> None:
        self.actions.append(_Action(time.time(), where, person.label, text))

    def _reply_text(self, resp: Response) -> str:
        if isinstance(resp.json, dict):
            return str(resp.json.get("text") or "")
        return resp.text if resp.status == 200 else ""

    def command(self, person: Person, text: str, channel: str) -> str:
        """`person` types `/consult text` in `channel`; returns what Slack shows them."""
        assert self.sender is not None
        trigger = self.sender.new_trigger_id()
        self.triggers[trigger] = person.id
        typed = self.render(f"/consult {text}".rstrip(), None)
        self._log_action(person, f"#{CHANNELS[channel]}", typed)
        resp = self.sender.command(text, user=person.id, channel=channel, trigger_id=trigger)
        if resp.status != 200:
            raise StepFailed(f"/consult {text[:30]}", f"the bot answered HTTP {resp.status}")
        reply = self._reply_text(resp)
        if reply:
            shown = self.render(reply, None)
            self.actions.append(
                _Action(
                    time.time(),
                    f"#{CHANNELS[channel]}, only {person.name} sees",
                    "CareLoop",
                    shown,
                    kind="ephemeral",
                )
            )
        return reply

    def click(
        self, person: Person, action_id: str, ref: str, message: dict[str, Any], label: str
    ) -> str:
        """`person` presses the button `action_id` for `ref` on `message`; returns trigger."""
        assert self.sender is not None
        trigger = self.sender.new_trigger_id()
        self.triggers[trigger] = person.id
        channel = message["channel"]
        self._log_action(person, self._where(channel), f"presses [{label}] on {ref}")
        resp = self.sender.block_action(
            action_id,
            user=person.id,
            value=ref,
            channel=channel,
            message=message,
            block_id=_block_id_of(message, action_id) or "b",
            trigger_id=trigger,
        )
        if resp.status != 200:
            raise StepFailed(f"[{label}] on {ref}", f"the bot answered HTTP {resp.status}")
        return trigger

    def choose_service(
        self,
        person: Person,
        view: dict[str, Any],
        service: str,
        label: str,
        typed: dict[str, str],
    ) -> dict[str, Any]:
        """`person` picks `service` in the form's Service menu (having typed `typed`)."""
        assert self.sender is not None
        current = dict(view)
        current["state"] = {"values": _form_state(view, typed | {BlockId.SERVICE: service})}
        title = (view.get("title") or {}).get("text", "form")
        self.view_owners[str(view.get("id"))] = person.id
        self._log_action(person, f"form “{title}”", f"chooses Service: {label}")
        resp = self.sender.block_action(
            ActionId.SERVICE_SELECT,
            user=person.id,
            view=current,
            block_id=BlockId.SERVICE,
            selected_option={"value": service, "text": {"type": "plain_text", "text": label}},
        )
        if resp.status != 200:
            raise StepFailed(f"choose {label} in the form", f"the bot answered HTTP {resp.status}")
        return current

    def submit(
        self,
        person: Person,
        view: dict[str, Any],
        values: dict[str, Any],
        summary: str,
    ) -> None:
        """`person` fills in the modal `view` with `values` and presses its submit button."""
        assert self.sender is not None
        submit = (view.get("submit") or {}).get("text", "Submit")
        title = (view.get("title") or {}).get("text", "form")
        self._log_action(person, f"form “{title}”", f"{summary}\npresses [{submit}]")
        resp = self.sender.view_submission(
            str(view.get("callback_id")),
            values,
            user=person.id,
            view=view,
        )
        if resp.status != 200:
            raise StepFailed(f"[{submit}] on {title}", f"the bot answered HTTP {resp.status}")
        errors = (resp.json or {}).get("errors") if isinstance(resp.json, dict) else None
        if errors:
            shown = "; ".join(str(v) for v in errors.values())
            self.actions.append(
                _Action(time.time(), f"form “{title}”", "CareLoop", shown, kind="form_error")
            )
            raise StepFailed(f"[{submit}] on {title}", f"the form showed errors: {shown}")

    def reply(self, person: Person, ref: str, text: str) -> None:
        """`person` writes `text` in the consult's thread (Slack stores it, sends the event)."""
        assert self.sender is not None
        card = self.card(ref)
        if card is None:
            raise StepFailed(f"reply in the {ref} thread", f"no card for {ref}")
        stored = self.fake.inject_message(
            card["channel"], text, user=person.id, thread_ts=card["ts"]
        )
        self._log_action(person, f"#{CHANNELS[card['channel']]} › {ref} thread", text)
        resp = self.sender.event(
            {
                "type": "message",
                "channel": card["channel"],
                "channel_type": "channel",
                "user": person.id,
                "text": text,
                "ts": stored["ts"],
                "thread_ts": card["ts"],
            }
        )
        if resp.status != 200:
            raise StepFailed(f"reply in the {ref} thread", f"the bot answered HTTP {resp.status}")

    def _where(self, channel: str) -> str:
        if channel.startswith("D"):
            person = PEOPLE.get(channel[1:])
            return f"DM with {person.name}" if person else channel
        return f"#{CHANNELS.get(channel, channel)}"

    # ------------------------------------------------------------------ the transcript
    def transcript(self) -> list[Entry]:
        """Everything people did and saw, in time order."""
        entries = [
            Entry(a.at, self.clock(a.at), a.where, a.who, a.text, a.kind) for a in self.actions
        ]
        entries += self._slack_entries()
        entries.sort(key=lambda e: e.at)
        return entries

    def _slack_entries(self) -> list[Entry]:
        calls = list(self.fake.calls)
        # Bot messages per channel, in posting order, to learn each post's ts.
        stored: dict[str, list[dict[str, Any]]] = {}
        versions: dict[tuple[str, str], str] = {}
        refs: dict[tuple[str, str], str] = {}
        out: list[Entry] = []

        def add(at: float, where: str, who: str, text: str, kind: str) -> None:
            out.append(Entry(at, self.clock(at), where, who, text, kind))

        for call in calls:
            if call.status != 200 or not call.ok:
                continue
            args = call.args
            if call.method == "chat.postMessage":
                channel = _resolve(str(args.get("channel", "")))
                if channel not in stored:
                    stored[channel] = [
                        m for m in self.fake.messages(channel) if m["user"] == BOT_USER_ID
                    ]
                msg = stored[channel].pop(0) if stored[channel] else None
                text = self.render(args.get("text"), args.get("blocks"))
                if msg is not None:
                    versions[(channel, msg["ts"])] = text
                    ref = str(args.get("text", "")).split(" ·")[0]
                    if not msg["thread_ts"] and " · " in str(args.get("text", "")):
                        refs[(channel, msg["ts"])] = ref
                thread = args.get("thread_ts")
                if channel.startswith("D"):
                    person = PEOPLE.get(channel[1:])
                    where = f"DM to {person.label}" if person else channel
                    add(call.at, where, "CareLoop", text, "dm")
                elif thread:
                    ref = refs.get((channel, str(thread)), "consult")
                    where = f"#{CHANNELS.get(channel, channel)} › {ref} thread"
                    add(call.at, where, "CareLoop", text, "reply")
                else:
                    add(call.at, f"#{CHANNELS.get(channel, channel)}", "CareLoop", text, "post")
            elif call.method == "chat.update":
                channel = _resolve(str(args.get("channel", "")))
                key = (channel, str(args.get("ts", "")))
                text = self.render(args.get("text"), args.get("blocks"))
                changed = _changed_lines(versions.get(key, ""), text)
                versions[key] = text
                if changed:
                    ref = refs.get(key, "message")
                    add(
                        call.at,
                        f"#{CHANNELS.get(channel, channel)}",
                        "CareLoop",
                        f"(updated) card {ref}:\n{changed}",
                        "update",
                    )
            elif call.method == "chat.postEphemeral":
                person = PEOPLE.get(str(args.get("user", "")))
                name = person.name if person else str(args.get("user"))
                where = f"{self._where(str(args.get('channel', '')))}, only {name} sees"
                text = self.render(args.get("text"), args.get("blocks"))
                add(call.at, where, "CareLoop", text, "ephemeral")
            elif call.method in ("views.open", "views.push", "views.update"):
                view = args.get("view") or {}
                if isinstance(view, str):
                    view = json.loads(view)
                owner = self.triggers.get(str(args.get("trigger_id")))
                owner = owner or self.view_owners.get(str(args.get("view_id")), "")
                user = PEOPLE.get(owner)
                title = (view.get("title") or {}).get("text", "form")
                body = self.render("", view.get("blocks"))
                buttons = " ".join(
                    f"[{(view.get(k) or {}).get('text')}]"
                    for k in ("submit", "close")
                    if view.get(k)
                )
                where = f"form on {user.name}'s screen" if user else "form"
                again = "(updated) " if call.method == "views.update" else ""
                add(call.at, where, "CareLoop", f"{again}“{title}”\n{body}\n{buttons}", "form")
            elif call.method == "response_url":
                text = self.render(args.get("text"), args.get("blocks"))
                if text:
                    add(call.at, "response", "CareLoop", text, "ephemeral")
        return out

    # ------------------------------------------------------------------ the day
    def play(self) -> None:
        """The scripted day (scene 0, starting the bot, is run by `run_demo`)."""
        self.radiology_stat()
        self.pathology_escalation()
        self.cardiology_need_info()
        self.radiology_handoff()
        self.cardiology_cancel()
        self.radiology_rating()

    def _card_posted(self, ref: str, channel: str, *needles: str) -> None:
        self.expect(
            f"card {ref} posted in #{channel}",
            lambda: bool(self.card(ref)) and all(n in self.card_text(ref) for n in needles),
            detail=lambda: (
                f"#{channel} holds {len(self.fake.messages(_service_channel(ref)))} message(s)"
            ),
        )

    def radiology_stat(self) -> None:
        with self.scene(1):
            question = "CT head: new confusion on apixaban, rule out bleed?"
            ack = self.command(AHMED, f"rad stat MRN 12345: {question}", "CEMERG")
            self.expect(
                "missing accession: the form opens with what was typed",
                lambda: "opened the form" in ack and self.form(CallbackId.NEW_CONSULT) is not None,
                detail=f"the bot answered {ack!r}",
            )
            self.pause(2)
            view = self.form(CallbackId.NEW_CONSULT)
            assert view is not None
            values = _form_state(view, {BlockId.INTAKE_PREFIX + "accession": "A2026-0412"})
            self.submit(AHMED, view, values, "adds Study / accession number: A2026-0412")
            self._card_posted("RAD-1", "radiology", "[Acknowledge]", "@Dr Chen")
            self.expect(
                "requester gets a confirmation with the link",
                lambda: self.has_dm(AHMED, "Your consult RAD-1 is in #radiology"),
                detail=self._seen(AHMED, "dm"),
            )
            self.pause(5)
            card = self.card("RAD-1")
            assert card is not None
            self.click(CHEN, ActionId.ACKNOWLEDGE, "RAD-1", card, "Acknowledge")
            self.expect(
                "requester DM says 'acknowledged'",
                lambda: self.has_dm(AHMED, "acknowledged RAD-1"),
                detail=self._seen(AHMED, "dm"),
            )
            self.expect(
                "card shows who acknowledged, without [Acknowledge]",
                lambda: (
                    "owned by @Dr Chen" in self.card_text("RAD-1")
                    and "[Acknowledge]" not in self.card_text("RAD-1")
                ),
                detail=lambda: self.card_text("RAD-1").splitlines()[1:2].__repr__(),
            )
            self.pause(5)
            prelim = "Prelim: no acute haemorrhage. Old small left parietal infarct."
            self.reply(CHEN, "RAD-1", prelim)
            self.expect(
                "thread reply relayed to the requester",
                lambda: self.has_dm(AHMED, "replied on RAD-1", "no acute haemorrhage"),
                detail=self._seen(AHMED, "dm"),
            )
            self.pause(5)
            card = self.card("RAD-1")
            assert card is not None
            self.click(CHEN, ActionId.ANSWER, "RAD-1", card, "Answer")
            self.expect(
                "answer form opens pre-filled with the reply",
                lambda: _initial(self.form(CallbackId.ANSWER, "RAD-1"), BlockId.ANSWER) == prelim,
            )
            view = self.form(CallbackId.ANSWER, "RAD-1")
            assert view is not None
            answer = (
                "No acute intracranial haemorrhage. Old small left parietal infarct. "
                "No contraindication to continuing apixaban."
            )
            self.submit(
                CHEN,
                view,
                {BlockId.ANSWER: {"value": plain_text(answer)}},
                f"edits the answer: {answer}",
            )
            self.expect(
                "answer posted in the RAD-1 thread",
                lambda: self.in_thread("RAD-1", "Answer from @Dr Chen", "contraindication"),
            )
            self.expect(
                "requester gets the answer with [Close] and [Helpful]",
                lambda: self.has_dm(AHMED, "answered RAD-1", "contraindication", "[Helpful]"),
                detail=self._seen(AHMED, "dm"),
            )

    def pathology_escalation(self) -> None:
        s = self.seconds
        ladder_timeout = s["stat_ack"] + 3 * (s["stat_nudge"] + s["sweep"]) + 10
        with self.scene(2):
            self.pause(5)
            self.command(
                AHMED, "path stat S26-01234: frozen section, are the margins clear?", "CEMERG"
            )
            self._card_posted("PATH-1", "pathology", "@Dr Singh")
            self.expect(
                "nudge in the PATH-1 thread mentions the on-call (Dr Singh)",
                lambda: self.in_thread("PATH-1", "@Dr Singh", "has not been acknowledged"),
                timeout=ladder_timeout,
            )
            self.expect(
                "requester told PATH-1 is overdue",
                lambda: self.has_dm(AHMED, "PATH-1 is overdue"),
                detail=self._seen(AHMED, "dm"),
            )
            self.expect(
                "escalated to the backup in the thread",
                lambda: self.in_thread("PATH-1", "Escalated", "@Dr Patel"),
                timeout=ladder_timeout,
            )
            self.expect(
                "escalation DM to the backup (Dr Patel)",
                lambda: self.has_dm(PATEL, "PATH-1", "escalated to you"),
                detail=self._seen(PATEL, "dm"),
            )
            self.expect(
                "requester told 'escalated'",
                lambda: self.has_dm(AHMED, "PATH-1 is still waiting; escalated to @Dr Patel"),
                detail=self._seen(AHMED, "dm"),
            )
            self.expect(
                "escalation DM to the lead (Dr Moreau)",
                lambda: self.has_dm(MOREAU, "PATH-1", "escalated to you"),
                timeout=ladder_timeout,
                detail=self._seen(MOREAU, "dm"),
            )
            self.pause(3)
            card = self.card("PATH-1")
            assert card is not None
            self.click(PATEL, ActionId.ACKNOWLEDGE, "PATH-1", card, "Acknowledge")
            self.expect(
                "card shows the backup acknowledged",
                lambda: "owned by @Dr Patel" in self.card_text("PATH-1"),
            )
            self.pause(5)
            ack = self.command(
                PATEL,
                "answer PATH-1 Margins clear; closest 4 mm (posterior). Proceed with closure.",
                "CPATH",
            )
            self.expect(
                "the answer reaches the requester",
                lambda: "PATH-1 answered" in ack and self.has_dm(AHMED, "Margins clear"),
                detail=self._seen(AHMED, "dm"),
            )

    def cardiology_need_info(self) -> None:
        s = self.seconds
        with self.scene(3):
            self.pause(5)
            self.command(BROWN, "cards stat MRN 67890: new AF, rate 140. Anticoagulate?", "CWARD4B")
            self._card_posted("CARD-1", "cardiology", "@Dr Li")
            self.pause(2)
            ack = self.command(LI, "ack CARD-1", "CCARD")
            self.expect("Dr Li acknowledges CARD-1", lambda: "You acknowledged CARD-1" in ack)
            self.pause(3)
            card = self.card("CARD-1")
            assert card is not None
            self.click(LI, ActionId.NEED_INFO, "CARD-1", card, "Need info")
            self.expect(
                "need-info form opens",
                lambda: self.form(CallbackId.NEED_INFO, "CARD-1") is not None,
            )
            view = self.form(CallbackId.NEED_INFO, "CARD-1")
            assert view is not None
            ask = "Latest creatinine? Any history of bleeding or falls?"
            self.submit(LI, view, {BlockId.QUESTION: {"value": plain_text(ask)}}, f"asks: {ask}")
            self.expect(
                "need-info DM to the requester",
                lambda: self.has_dm(BROWN, "needs information for CARD-1", "creatinine"),
                detail=self._seen(BROWN, "dm"),
            )
            self.expect(
                "card shows 'Waiting on requester'",
                lambda: "Waiting on requester" in self.card_text("CARD-1"),
            )
            self.expect(
                "requester reminded while the clock is paused",
                lambda: self.has_dm(BROWN, "waiting for your reply on CARD-1"),
                timeout=s["stat_nudge"] + 2 * s["sweep"] + 10,
                detail=self._seen(BROWN, "dm"),
            )
            self.pause(3)
            self.reply(BROWN, "CARD-1", "Creatinine 88. No bleeding history; one fall last year.")
            self.expect(
                "requester's reply resumes the consult",
                lambda: self.has_dm(LI, "replied on CARD-1", "running again"),
                detail=self._seen(LI, "dm"),
            )
            self.expect(
                "card back to 'Acknowledged'",
                lambda: "owned by @Dr Li" in self.card_text("CARD-1"),
            )
            self.pause(5)
            ack = self.command(
                LI,
                "answer CARD-1 Start apixaban 5 mg twice daily; bisoprolol 2.5 mg for rate. "
                "Echo as outpatient.",
                "CCARD",
            )
            self.expect(
                "the answer reaches the requester",
                lambda: "CARD-1 answered" in ack and self.has_dm(BROWN, "Start apixaban"),
                detail=self._seen(BROWN, "dm"),
            )

    def radiology_handoff(self) -> None:
        with self.scene(4):
            self.pause(10)
            before = len(self.fake.views())
            ack = self.command(BROWN, "", "CWARD4B")
            self.expect(
                "/consult alone opens the form",
                lambda: (
                    "Opening the consult form" in ack
                    and self.form(CallbackId.NEW_CONSULT, after=before) is not None
                ),
                detail=f"the bot answered {ack!r}",
            )
            view = self.form(CallbackId.NEW_CONSULT, after=before)
            assert view is not None
            self.pause(2)
            typed = {
                BlockId.URGENCY: "urgent",
                BlockId.PATIENT: "MRN 67890",
                BlockId.QUESTION: "CT pulmonary angiogram: pleuritic pain, D-dimer 2.1. PE?",
            }
            view = self.choose_service(BROWN, view, "radiology", "Radiology", typed)
            self.expect(
                "choosing Radiology adds its accession field",
                lambda: "Study / accession number" in str(self.fake.view(view["id"])),
            )
            view = self.fake.view(view["id"]) or view
            values = _form_state(view, typed | {BlockId.INTAKE_PREFIX + "accession": "A2026-0413"})
            self.submit(
                BROWN,
                view,
                values,
                "Urgency: Urgent; Patient: MRN 67890; Question: CT pulmonary angiogram: "
                "pleuritic pain, D-dimer 2.1. PE?; Study / accession number: A2026-0413",
            )
            self._card_posted("RAD-2", "radiology", "Urgent")
            self.pause(3)
            ack = self.command(CHEN, "ack RAD-2", "CRAD")
            self.expect("Dr Chen acknowledges RAD-2", lambda: "You acknowledged RAD-2" in ack)
            self.pause(5)
            ack = self.command(
                CHEN,
                f"handoff <@{NOVAK.id}|novak> RAD-2 protocolled; scan booked 18:30, "
                "please report tonight.",
                "CRAD",
            )
            self.expect("handoff confirmed to Dr Chen", lambda: "Handed off to" in ack)
            self.expect(
                "handoff DM lists the consults for Dr Novak",
                lambda: self.has_dm(NOVAK, "handed off 1 consult(s) to you", "RAD-2", "18:30"),
                detail=self._seen(NOVAK, "dm"),
            )
            self.expect(
                "RAD-2 thread records the handoff",
                lambda: self.in_thread("RAD-2", "Handed off from @Dr Chen to @Dr Novak"),
            )
            self.expect(
                "requester told who owns RAD-2 now",
                lambda: self.has_dm(BROWN, "RAD-2 is now with @Dr Novak"),
                detail=self._seen(BROWN, "dm"),
            )

    def cardiology_cancel(self) -> None:
        with self.scene(5):
            self.pause(5)
            self.command(
                GARCIA, "cards MRN 24680: pre-op cardiac review before hip replacement?", "CORTHO"
            )
            self._card_posted("CARD-2", "cardiology", "Routine")
            self.pause(5)
            ack = self.command(GARCIA, "cancel CARD-2 surgery postponed, will re-refer", "CORTHO")
            self.expect(
                "cancel confirmed to the requester",
                lambda: "CARD-2 is cancelled" in ack,
                detail=f"the bot answered {ack!r}",
            )
            self.expect(
                "CARD-2 thread says cancelled, card has no buttons",
                lambda: (
                    self.in_thread("CARD-2", "Cancelled by @Dr Garcia", "postponed")
                    and "Cancelled" in self.card_text("CARD-2")
                    and "[Answer]" not in self.card_text("CARD-2")
                ),
            )

    def radiology_rating(self) -> None:
        with self.scene(6):
            self.pause(5)
            message = self.dm_message(AHMED, ActionId.HELPFUL, "RAD-1")
            if message is None:
                raise StepFailed("[Helpful] on the RAD-1 answer", "no DM with the button")
            self.click(AHMED, ActionId.HELPFUL, "RAD-1", message, "Helpful")
            self.expect(
                "feedback recorded",
                lambda: any(
                    "rating of RAD-1 was recorded" in t for t in self.ephemeral_texts(AHMED)
                ),
                detail=self._seen(AHMED, "ephemeral"),
            )
            self.expect(
                "comment form opens",
                lambda: self.form(CallbackId.FEEDBACK, "RAD-1") is not None,
            )
            view = self.form(CallbackId.FEEDBACK, "RAD-1")
            assert view is not None
            comment = "Quick and clear, thank you."
            self.submit(AHMED, view, {BlockId.COMMENT: {"value": plain_text(comment)}}, comment)
            self._record("comment accepted", 0.0)
            self.pause(2)
            message = self.dm_message(AHMED, ActionId.CLOSE, "RAD-1")
            if message is None:
                raise StepFailed("[Close] on the RAD-1 answer", "no DM with the button")
            self.click(AHMED, ActionId.CLOSE, "RAD-1", message, "Close")
            self.expect(
                "requester closes RAD-1",
                lambda: (
                    any("RAD-1 is closed" in t for t in self.ephemeral_texts(AHMED))
                    and self.in_thread("RAD-1", "Closed by @Dr Ahmed")
                ),
                detail=self._seen(AHMED, "ephemeral"),
            )
            self.expect(
                "RAD-1 card shows Closed",
                lambda: "\nClosed" in self.card_text("RAD-1"),
            )

    def settle(self, quiet: float = 0.8, limit: float = 5.0) -> None:
        """Wait until the stand-in has had no new call for `quiet` s (at most `limit` s)."""
        deadline = time.monotonic() + limit
        last, since = len(self.fake.calls), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            count = len(self.fake.calls)
            if count != last:
                last, since = count, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return

    def run_report(self) -> None:
        """`python -m bot report --format table` on the demo database."""
        self.progress.waiting("python -m bot report")
        started = time.monotonic()
        name = "lead's report (python -m bot report)"
        try:
            done = subprocess.run(
                [sys.executable, "-m", "bot", "report", "--format", "table"],
                env=self.bot_env(),
                cwd=self.workdir,
                capture_output=True,
                text=True,
                timeout=60,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            self._record(name, time.monotonic() - started, "no answer within 60 s", ok=False)
            raise StepFailed(name, "no answer within 60 s") from None
        self.report = done.stdout
        if done.returncode != 0 or "radiology" not in done.stdout.lower():
            why = (done.stderr or done.stdout).strip().splitlines()[-3:]
            detail = f"exit code {done.returncode}: " + " / ".join(why)
            self._record(name, time.monotonic() - started, detail, ok=False)
            raise StepFailed(name, detail)
        self._record(name, time.monotonic() - started)


# ---------------------------------------------------------------------------- helpers
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _resolve(channel: str) -> str:
    return "D" + channel if channel[:1] in ("U", "W") else channel


def _service_channel(ref: str) -> str:
    prefix = ref.split("-")[0]
    return {"RAD": "CRAD", "PATH": "CPATH", "CARD": "CCARD"}[prefix]


def _block_id_of(message: dict[str, Any], action_id: str) -> str | None:
    for block in message.get("blocks") or []:
        for element in block.get("elements") or []:
            if element.get("action_id") == action_id:
                return block.get("block_id")
    return None


def _initial(view: dict[str, Any] | None, block_id: str) -> str | None:
    """The pre-filled value of a text input in a modal."""
    for block in (view or {}).get("blocks") or []:
        if block.get("block_id") == block_id:
            return (block.get("element") or {}).get("initial_value")
    return None


def _form_state(view: dict[str, Any], changes: dict[str, str]) -> dict[str, Any]:
    """``view.state.values`` as Slack sends it: what the form shows, with `changes` typed in
    (block id -> text, or the chosen option's value for menus)."""
    values: dict[str, Any] = {}
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


def _tidy(text: str) -> str:
    """Card sections written as "Label\\nvalue" read as "Label: value" on one line."""
    lines = text.splitlines()
    out: list[str] = []
    for line in lines:
        previous = out[-1] if out else ""
        if out and previous in _LABELS:
            out[-1] = f"{previous}: {line}"
        else:
            out.append(line)
    return "\n".join(out)


_LABELS = {"Question", "Study / accession number"}


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


# ---------------------------------------------------------------------------- output
WHERE_WIDTH = 40


def format_transcript(entries: list[Entry]) -> str:
    """The transcript as a clinician reads it: time, where, who, then the message."""
    out: list[str] = []
    for i, e in enumerate(entries):
        if e.kind == "scene":
            following = entries[i + 1] if i + 1 < len(entries) else None
            if following is None or following.kind == "scene":
                continue  # nothing happened in it that anybody saw
            out.append("")
            out.append(f"── {e.text[:1].upper()}{e.text[1:]} " + "─" * 10)
            continue
        out.append(f"{e.time}  {e.where:<{WHERE_WIDTH}} {e.who}")
        for line in e.text.splitlines() or [""]:
            out.extend(_wrap(line))
    return "\n".join(out)


def _wrap(line: str, width: int = 100) -> list[str]:
    """One message line, indented under the header and wrapped (bullets and quotes hang)."""
    indent = "       "
    lead = ""
    for marker in ("> ", "• "):
        if line.startswith(marker):
            lead = " " * len(marker)
    wrapped = textwrap.wrap(
        line,
        width=width,
        initial_indent=indent,
        subsequent_indent=indent + lead,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return wrapped or [""]


def _header(speed: float) -> str:
    cast = "\n".join(f"  {p.name:<12} {p.role}" for p in CAST)
    per_second = MINUTES_PER_SECOND * speed
    unit = f"{per_second:g} minutes" if per_second != 1 else "1 minute"
    return (
        "CareLoop demo: a clinical day against a local stand-in for Slack\n"
        f"Clocks are compressed: one real second is {unit} of the day (--speed {speed:g}).\n"
        "Each entry: time of day, where (channel › thread, DM, form, or a message only one "
        "person sees), who, and what they saw or did.\n\n"
        f"The cast:\n{cast}"
    )


def run_demo(speed: float = 1.0, as_json: bool = False, keep: bool = False) -> int:
    """Play the demo day; returns 0 when every scripted step produced what it should.

    Prints the transcript (or, with `as_json`, one JSON document) on stdout and a progress
    line on stderr. With `keep` the temporary directory (database, catalogue, bot log) is
    left in place and its paths are printed.
    """
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="replace")
            except (ValueError, OSError):
                pass
    if not (0 < speed <= MAX_SPEED) or math.isnan(speed):
        print(f"--speed must be above 0 and at most {MAX_SPEED:g}", file=sys.stderr)
        return 2
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="careloop-demo-"))
    progress = Progress(sys.stderr, total=len(Demo.SCENES))
    demo = Demo(speed=speed, workdir=workdir, progress=progress)
    failure: StepFailed | None = None
    exit_code: int | None = None
    try:
        with demo.scene(0):
            demo.start()
            demo.t0 = time.time()
        demo.play()
        demo.settle()
        with demo.scene(7):
            exit_code = demo.stop()
            demo.steps.append(
                Step(
                    "bot stops cleanly on SIGTERM",
                    demo.SCENES[7],
                    exit_code == 0,
                    0.0,
                    "" if exit_code == 0 else f"exit code {exit_code}",
                )
            )
            if exit_code != 0:
                raise StepFailed("bot stops cleanly on SIGTERM", f"exit code {exit_code}")
            demo.run_report()
    except StepFailed as exc:
        failure = exc
        if not any(s.name == exc.step and not s.ok for s in demo.steps):
            demo.steps.append(Step(exc.step, demo._scene, False, 0.0, exc.detail))
    except KeyboardInterrupt:
        failure = StepFailed("interrupted", "stopped with Ctrl-C")
    except Exception as exc:  # noqa: BLE001 - a bug in the script: report it as a failed step
        traceback.print_exc()
        failure = StepFailed("demo script", f"{type(exc).__name__}: {exc}")
    finally:
        if exit_code is None:
            demo.stop()
        progress.done()
    elapsed = time.monotonic() - started
    transcript = demo.transcript()
    ok = failure is None
    if as_json:
        document = {
            "ok": ok,
            "failed_step": failure.step if failure else None,
            "detail": failure.detail if failure else None,
            "speed": speed,
            "minutes_per_second": MINUTES_PER_SECOND * speed,
            "seconds": round(elapsed, 2),
            "database": str(demo.db_path) if keep else None,
            "cast": [asdict(p) for p in CAST],
            "steps": [asdict(s) for s in demo.steps],
            "transcript": [
                {k: v for k, v in asdict(e).items() if k != "at"} | {"at": round(e.at - demo.t0, 3)}
                for e in transcript
            ],
            "report": demo.report,
        }
        print(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        print(_header(speed))
        print(format_transcript(transcript))
        if demo.report:
            print("\n── The lead's report (python -m bot report --format table) " + "─" * 10)
            print(
                "Times are real seconds; in the demo's day each second is "
                f"{MINUTES_PER_SECOND * speed:g} minutes."
            )
            print(demo.report.rstrip())
        passed = sum(1 for s in demo.steps if s.ok)
        print(
            f"\n{passed} of {len(demo.steps)} checks passed in {elapsed:.1f} s"
            + ("." if ok else f"; failed: {failure.step if failure else ''}.")
        )
    tail = demo.bot_log_tail() if failure is not None else ""
    if keep:
        url = f"sqlite:///{demo.db_path}"
        print(
            f"\nKept {workdir}\n  database:  {demo.db_path}\n  catalogue: {demo.catalogue_path}\n"
            f"  bot log:   {demo.log_path}\nReport on it with:\n"
            f"  DATABASE_URL={url} CONSULT_CONFIG={demo.catalogue_path} "
            f"SLACK_BOT_TOKEN={TOKEN} python -m bot report",
            file=sys.stderr if as_json else sys.stdout,
        )
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    if failure is not None:
        print(f"demo failed at step '{failure.step}': {failure.detail}", file=sys.stderr)
        if tail and "exited" not in failure.detail:
            print(f"last lines of the bot's log:\n{tail}", file=sys.stderr)
        return 1
    return 0
