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
   information from the requester and gets it; a shift handoff, after which the requester
   looks at the consult's timeline (`/consult show`); a requester who cancels; one
   who rates an answer and closes it; a critical result from the night radiologist that is
   not acknowledged at first, is escalated to the house supervisor, then acknowledged with a
   read-back. Every step waits (with a time limit) for what it should
   produce in the stand-in, and the demo stops with a non-zero exit naming the step when it
   does not come;
4. stops the bot with SIGTERM and runs ``python -m bot report`` on the database: the lead's
   report.

It prints what each person saw, in order: the time of the (compressed) day, where
(channel, thread, DM, form, "only you" messages), who, and the text rendered from Block Kit
(``to_plain_text``, buttons as ``[Acknowledge]``). ``--json`` prints one JSON document
instead (steps with ``ok``, the transcript, the report). Progress goes to stderr.
The temporary directory is removed at the end unless ``--keep`` is given; then the database
path and the command to report on it are printed.

The demo never reads the bot's database while it runs: everything it checks is what Slack
(the stand-in) received, as a person would see it.

This module runs it (:func:`run_demo`); the pieces: ``catalogue`` (the demo catalogue, from
the shipped ``catalogue.toml.in``), ``cast`` (people and channels), ``process`` (the bot's
processes), ``stage`` (stand-in, bot, people and checks), ``screens`` (what people see),
``acting`` (what they do), ``day`` and ``critical`` (the scenes), ``transcript`` and ``output``.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import TextIO

from bot.dev.demo.day import Demo
from bot.dev.demo.output import Progress, json_document, text_output
from bot.dev.demo.process import TOKEN
from bot.dev.demo.records import Step, StepFailed

__all__ = ["MAX_SPEED", "run_demo"]

MAX_SPEED = 10.0
STOPS_CLEANLY = "bot stops cleanly on SIGTERM"


def run_demo(speed: float = 1.0, as_json: bool = False, keep: bool = False) -> int:
    """Play the demo day; returns 0 when every scripted step produced what it should.

    Prints the transcript (or, with `as_json`, one JSON document) on stdout and a progress
    line on stderr. With `keep` the temporary directory (database, catalogue, bot log) is
    left in place and its paths are printed.
    """
    _replace_unprintable_characters()
    if not (0 < speed <= MAX_SPEED) or math.isnan(speed):
        print(f"--speed must be above 0 and at most {MAX_SPEED:g}", file=sys.stderr)
        return 2
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="careloop-demo-"))
    progress = Progress(sys.stderr, total=len(Demo.SCENES))
    demo = Demo(speed=speed, workdir=workdir, progress=progress)
    failure = _play(demo, progress)
    _print_outcome(demo, speed, time.monotonic() - started, failure, as_json, keep)
    tail = demo.bot.log_tail() if failure is not None else ""
    if keep:
        _print_kept(demo, workdir, sys.stderr if as_json else sys.stdout)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    if failure is not None:
        print(f"demo failed at step '{failure.step}': {failure.detail}", file=sys.stderr)
        if tail and "exited" not in failure.detail:
            print(f"last lines of the bot's log:\n{tail}", file=sys.stderr)
        return 1
    return 0


def _replace_unprintable_characters() -> None:
    """Let a terminal that cannot show a character print a replacement instead of failing."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="replace")
            except (ValueError, OSError):
                pass


def _play(demo: Demo, progress: Progress) -> StepFailed | None:
    """Start the bot, play the day, stop the bot and report; the step that failed, if any."""
    exit_code: int | None = None
    try:
        with demo.scene(0):
            demo.start()
            demo.clock.t0 = time.time()
        demo.play()
        demo.settle()
        last = len(demo.SCENES) - 1
        with demo.scene(last):
            exit_code = demo.stop()
            detail = "" if exit_code == 0 else f"exit code {exit_code}"
            demo.steps.append(Step(STOPS_CLEANLY, demo.SCENES[last], exit_code == 0, 0.0, detail))
            if exit_code != 0:
                raise StepFailed(STOPS_CLEANLY, detail)
            demo.run_report()
    except StepFailed as exc:
        if not any(s.name == exc.step and not s.ok for s in demo.steps):
            demo.steps.append(Step(exc.step, demo.scene_title, False, 0.0, exc.detail))
        return exc
    except KeyboardInterrupt:
        return StepFailed("interrupted", "stopped with Ctrl-C")
    except Exception as exc:  # noqa: BLE001 - a bug in the script: report it as a failed step
        traceback.print_exc()
        return StepFailed("demo script", f"{type(exc).__name__}: {exc}")
    finally:
        if exit_code is None:
            demo.stop()
        progress.done()
    return None


def _print_outcome(
    demo: Demo,
    speed: float,
    elapsed: float,
    failure: StepFailed | None,
    as_json: bool,
    keep: bool,
) -> None:
    transcript = demo.transcript()
    if not as_json:
        print(text_output(speed, transcript, demo.report, demo.steps, elapsed, failure))
        return
    document = json_document(
        speed=speed,
        seconds=round(elapsed, 2),
        database=str(demo.bot.db_path) if keep else None,
        steps=demo.steps,
        transcript=transcript,
        t0=demo.clock.t0,
        report=demo.report,
        failure=failure,
    )
    print(json.dumps(document, indent=2, ensure_ascii=False))


def _print_kept(demo: Demo, workdir: Path, stream: TextIO) -> None:
    bot = demo.bot
    url = f"sqlite:///{bot.db_path}"
    print(
        f"\nKept {workdir}\n  database:  {bot.db_path}\n  catalogue: {bot.catalogue_path}\n"
        f"  bot log:   {bot.log_path}\nReport on it with:\n"
        f"  DATABASE_URL={url} CONSULT_CONFIG={bot.catalogue_path} "
        f"SLACK_BOT_TOKEN={TOKEN} python -m bot report",
        file=stream,
    )
