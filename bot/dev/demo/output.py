"""What the demo prints: the progress line on stderr, the transcript as a clinician reads
it, the JSON document of ``--json``, and where a kept run's files are."""

from __future__ import annotations

import shutil
import textwrap
from dataclasses import asdict
from typing import Any, TextIO

from bot.dev.demo.cast import CAST
from bot.dev.demo.catalogue import MINUTES_PER_SECOND
from bot.dev.demo.records import Entry, Step, StepFailed

WHERE_WIDTH = 40


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


def header(speed: float) -> str:
    """What the text output starts with: how to read it, and the cast."""
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


def text_output(
    speed: float,
    transcript: list[Entry],
    report: str,
    steps: list[Step],
    elapsed: float,
    failure: StepFailed | None,
) -> str:
    """The whole text output: header, transcript, the lead's report and the checks' tally."""
    parts = [header(speed), format_transcript(transcript)]
    if report:
        parts.append("\n── The lead's report (python -m bot report --format table) " + "─" * 10)
        parts.append(
            "Times are real seconds; in the demo's day each second is "
            f"{MINUTES_PER_SECOND * speed:g} minutes."
        )
        parts.append(report.rstrip())
    passed = sum(1 for s in steps if s.ok)
    parts.append(
        f"\n{passed} of {len(steps)} checks passed in {elapsed:.1f} s"
        + ("." if failure is None else f"; failed: {failure.step}.")
    )
    return "\n".join(parts)


def json_document(
    *,
    speed: float,
    seconds: float,
    database: str | None,
    steps: list[Step],
    transcript: list[Entry],
    t0: float,
    report: str,
    failure: StepFailed | None,
) -> dict[str, Any]:
    """The ``--json`` document: outcome, timing, cast, checks, transcript and report."""
    return {
        "ok": failure is None,
        "failed_step": failure.step if failure else None,
        "detail": failure.detail if failure else None,
        "speed": speed,
        "minutes_per_second": MINUTES_PER_SECOND * speed,
        "seconds": seconds,
        "database": database,
        "cast": [asdict(p) for p in CAST],
        "steps": [asdict(s) for s in steps],
        "transcript": [
            {k: v for k, v in asdict(e).items() if k != "at"} | {"at": round(e.at - t0, 3)}
            for e in transcript
        ],
        "report": report,
    }
