"""Parsing of `/consult` text into a command, without Slack payloads.

Forms: no text (open the form), a sub-command word (help, list, ack, answer, needinfo,
handoff, close, reopen, cancel, patient, oncall, stats, snooze), or the quick form
`<service or alias> [stat|urgent|routine] <patient>: <question>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bot.domain.text import clean, escape, normalize_ref
from bot.domain.vocabulary import URGENCIES

WORDS = (
    "help",
    "list",
    "ack",
    "answer",
    "needinfo",
    "handoff",
    "close",
    "reopen",
    "cancel",
    "patient",
    "oncall",
    "stats",
    "snooze",
)
_USER = re.compile(r"^<@([UW][A-Z0-9]+)(?:\|[^>]*)?>$")
PERIODS = {"7d": 7, "30d": 30, "90d": 90}


@dataclass
class Parsed:
    """A parsed /consult: `verb` plus whichever arguments it takes; `error` when unusable."""

    verb: str
    ref: str | None = None
    text: str = ""
    user: str | None = None
    service: str | None = None
    urgency: str | None = None
    patient: str = ""
    question: str = ""
    days: int | None = None
    error: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


USAGE = {
    "ack": "/consult ack RAD-42",
    "answer": "/consult answer RAD-42 <answer>",
    "needinfo": "/consult needinfo RAD-42 <question for the requester>",
    "close": "/consult close RAD-42",
    "reopen": "/consult reopen RAD-42 <follow-up>",
    "cancel": "/consult cancel RAD-42 [reason]",
    "patient": "/consult patient <patient>",
    "handoff": "/consult handoff @colleague [note]",
    "oncall": "/consult oncall <service> @colleague",
    "stats": "/consult stats [service] [7d|30d|90d]",
    "snooze": "/consult snooze RAD-42 30m",
}


def parse_user(token: str) -> str | None:
    """'<@U123|name>' → 'U123' (Slack escapes mentions in slash commands)."""
    m = _USER.match(token.strip())
    return m.group(1) if m else None


def parse(text: str) -> Parsed:
    """Parse the text of a /consult command."""
    raw = clean(text)
    if not raw:
        return Parsed("form")
    head, _, rest = raw.partition(" ")
    word = head.lower()
    rest = rest.strip()
    if word in ("help", "?"):
        return Parsed("help")
    if word == "list":
        return Parsed("list")
    if word in ("ack", "answer", "needinfo", "close", "reopen", "cancel", "snooze"):
        return _ref_command(word, rest)
    if word == "patient":
        if not rest:
            return Parsed("patient", error=f"Give a patient reference: `{USAGE['patient']}`")
        return Parsed("patient", patient=rest)
    if word == "handoff":
        return _handoff(rest)
    if word == "oncall":
        return _oncall(rest)
    if word == "stats":
        return _stats(rest)
    return _quick(raw)


def _ref_command(word: str, rest: str) -> Parsed:
    first, _, tail = rest.partition(" ")
    ref = normalize_ref(first) if first else None
    if ref is None:
        what = f"'{escape(first[:40])}' is not a consult reference. " if first else ""
        return Parsed(word, error=f"{what}Usage: `{USAGE[word]}`")
    tail = tail.strip()
    if word == "snooze" and not tail:
        return Parsed(word, ref=ref, error=f"Say for how long: `{USAGE[word]}` (at most 24h)")
    if word in ("answer", "needinfo") and not tail:
        need = "the answer" if word == "answer" else "the question for the requester"
        return Parsed(word, ref=ref, error=f"Add {need} after the reference: `{USAGE[word]}`")
    return Parsed(word, ref=ref, text=tail)


def _handoff(rest: str) -> Parsed:
    first, _, note = rest.partition(" ")
    user = parse_user(first) if first else None
    if user is None:
        return Parsed("handoff", error=f"Name who takes over: `{USAGE['handoff']}`")
    return Parsed("handoff", user=user, text=note.strip())


def _oncall(rest: str) -> Parsed:
    if not rest:
        return Parsed("oncall")
    parts = rest.split()
    if len(parts) != 2 or parse_user(parts[1]) is None:
        return Parsed(
            "oncall", error=f"Usage: `{USAGE['oncall']}` (or `/consult oncall` to see it)"
        )
    return Parsed("oncall", service=parts[0], user=parse_user(parts[1]))


def _stats(rest: str) -> Parsed:
    service, days = None, 30
    for token in rest.split():
        if token.lower() in PERIODS:
            days = PERIODS[token.lower()]
        elif service is None:
            service = token
        else:
            return Parsed("stats", error=f"Usage: `{USAGE['stats']}`")
    return Parsed("stats", service=service, days=days)


def _quick(raw: str) -> Parsed:
    service, _, rest = raw.partition(" ")
    rest = rest.strip()
    urgency = None
    first, _, tail = rest.partition(" ")
    if first.lower() in URGENCIES:
        urgency, rest = first.lower(), tail.strip()
    elif first.lower().rstrip(":") in URGENCIES and first.endswith(":"):
        urgency, rest = first.lower().rstrip(":"), tail.strip()
    patient, colon, question = rest.partition(":")
    if not colon:
        # No ':' → patient and question cannot be told apart: one word is taken as the
        # patient, more as the question; the form opens pre-filled either way.
        rest = rest.strip()
        if rest and " " not in rest:
            return Parsed("quick", service=service, urgency=urgency, patient=rest)
        return Parsed("quick", service=service, urgency=urgency, question=rest)
    return Parsed(
        "quick",
        service=service,
        urgency=urgency,
        patient=patient.strip(),
        question=question.strip(),
    )
