"""The demo's stage: the Slack stand-in, the bot process, the people, and the checks a
scripted day makes (``expect``), scene by scene."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from bot.dev.demo.acting import Acting
from bot.dev.demo.cast import CAST, MEMBERS, Person
from bot.dev.demo.catalogue import (
    MINUTES_PER_SECOND,
    demo_catalogue,
    demo_seconds,
    radiology_rota,
)
from bot.dev.demo.output import Progress
from bot.dev.demo.process import HEALTHY, TOKEN, BotProcess
from bot.dev.demo.records import Action, DayClock, Entry, Step, StepFailed
from bot.dev.demo.screens import Screens
from bot.dev.demo.transcript import build_transcript
from bot.dev.fakeslack import FakeSlack, SlackSender

REPORT = "lead's report (python -m bot report)"


class Stage:
    """Everything a scripted day needs; a subclass lists its `SCENES` and plays them."""

    SCENES: tuple[str, ...] = ()

    def __init__(self, *, speed: float, workdir: Path, progress: Progress) -> None:
        self.speed = speed
        self.progress = progress
        self.seconds = demo_seconds(speed)
        self.clock = DayClock(scale=MINUTES_PER_SECOND * speed)  # day minutes per real second
        self.fake = FakeSlack(token=TOKEN)
        self.bot = BotProcess(workdir)
        self.screens = Screens(self.fake, self.clock)
        self.people = Acting(self.fake, self.screens)
        self.steps: list[Step] = []
        self.report = ""
        self.scene_title = ""

    # ------------------------------------------------------------------ the processes
    def start(self) -> None:
        """Write the catalogue, start the stand-in and the bot; wait for /healthz."""
        self.bot.catalogue_path.write_text(demo_catalogue(self.speed), encoding="utf-8")
        self.rota_path.write_text(radiology_rota(datetime.now(UTC)), encoding="utf-8")
        self.fake.start()
        self.bot.api_url = self.fake.url
        for channel, users in MEMBERS.items():
            self.fake.set_members(channel, users)
        for person in CAST:
            self.fake.set_user(
                person.id,
                real_name=person.name,
                name=person.name.lower().replace(" ", "."),
                profile={"real_name": person.name, "display_name": person.name},
            )
        self.bot.launch()
        self.people.sender = SlackSender(
            self.bot.events_url, self.bot.secret, response_url_factory=self.fake.response_url
        )
        self.bot.wait_healthy()
        self.record(HEALTHY, 0.0)

    @property
    def rota_path(self) -> Path:
        """The radiology rota, next to the catalogue (`schedule = "radiology.ics"`)."""
        return self.bot.catalogue_path.parent / "radiology.ics"

    def stop(self) -> int | None:
        """Stop the bot (see :meth:`BotProcess.stop`) and the stand-in; the bot's exit code."""
        code = self.bot.stop()
        self.fake.stop()
        return code

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
        try:
            done = self.bot.report()
        except subprocess.TimeoutExpired:
            self.record(REPORT, time.monotonic() - started, "no answer within 60 s", ok=False)
            raise StepFailed(REPORT, "no answer within 60 s") from None
        self.report = done.stdout
        if done.returncode != 0 or "radiology" not in done.stdout.lower():
            why = (done.stderr or done.stdout).strip().splitlines()[-3:]
            detail = f"exit code {done.returncode}: " + " / ".join(why)
            self.record(REPORT, time.monotonic() - started, detail, ok=False)
            raise StepFailed(REPORT, detail)
        self.record(REPORT, time.monotonic() - started)

    # ------------------------------------------------------------------ scenes and checks
    def pause(self, minutes: float) -> None:
        """Let `minutes` of the day pass (between what people do)."""
        self.clock.pause(minutes)

    @contextmanager
    def scene(self, index: int) -> Iterator[None]:
        self.scene_title = self.SCENES[index]
        self.progress.start_scene(self.scene_title)
        self.people.actions.append(Action(time.time(), "", "", self.scene_title, kind="scene"))
        yield

    def record(self, name: str, seconds: float, detail: str = "", ok: bool = True) -> None:
        self.steps.append(Step(name, self.scene_title, ok, round(seconds, 2), detail))

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
            self.bot.check_alive(name)
            if time.monotonic() >= deadline:
                why = detail() if callable(detail) else detail
                message = f"not seen within {timeout:.0f} s" + (f"; {why}" if why else "")
                self.record(name, time.monotonic() - started, message, ok=False)
                raise StepFailed(name, message)
            time.sleep(0.02)
        self.record(name, time.monotonic() - started)

    def expect_dm(self, name: str, person: Person, *needles: str, timeout: float = 10.0) -> None:
        """Wait for a DM to `person` holding every one of `needles`."""
        see = self.screens
        self.expect(
            name,
            lambda: see.has_dm(person, *needles),
            timeout=timeout,
            detail=see.seen(person, "dm"),
        )

    def transcript(self) -> list[Entry]:
        """Everything people did and saw, in time order."""
        people = self.people
        return build_transcript(people.actions, self.screens, people.triggers, people.view_owners)
