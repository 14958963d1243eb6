"""Parsing of `/consult` text into a command, without Slack payloads.

Forms: no text (open the form), a sub-command word (the table in `bot.domain.commands`),
or the quick form `<service or alias> [urgency] <patient>: <question>`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.domain.commands import BY_WORD, OFF, PERIODS, RELOAD, Command, Takes, Verb
from bot.domain.durations import parse_duration
from bot.domain.text import clean, escape, normalize_ref
from bot.domain.vocabulary import URGENCIES

_USER = re.compile(r"^<@([UW][A-Z0-9]+)(?:\|[^>]*)?>$")


@dataclass
class Parsed:
    """A parsed /consult: `verb` plus whichever arguments it takes; `error` when unusable."""

    verb: Verb
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


def parse_user(token: str) -> str | None:
    """'<@U123|name>' → 'U123' (Slack escapes mentions in slash commands)."""
    m = _USER.match(token.strip())
    return m.group(1) if m else None


def parse(text: str) -> Parsed:
    """Parse the text of a /consult command."""
    raw = clean(text)
    if not raw:
        return Parsed(Verb.FORM)
    head, _, rest = raw.partition(" ")
    command = BY_WORD.get(head.lower())
    if command is None or command.takes is None:
        return _quick(raw)
    return _READERS[command.takes](command, rest.strip())


def _nothing(command: Command, rest: str) -> Parsed:
    return Parsed(command.verb)


def _ref_command(command: Command, rest: str) -> Parsed:
    verb = command.verb
    first, _, tail = rest.partition(" ")
    ref = normalize_ref(first) if first else None
    if ref is None:
        what = f"'{escape(first[:40])}' is not a consult reference. " if first else ""
        return Parsed(verb, error=f"{what}Usage: `{command.usage}`")
    tail = tail.strip()
    if command.missing_text and not tail:
        return Parsed(verb, ref=ref, error=command.missing_text.format(usage=command.usage))
    return Parsed(verb, ref=ref, text=tail)


def _ref_word(command: Command, rest: str) -> Parsed:
    """`<ref> <word> <text>`: the word is the service (transfer) or the urgency (urgency)."""
    parsed = _ref_command(command, rest)
    word, _, text = parsed.text.partition(" ")
    if parsed.error is None and not text.strip():
        parsed.error = command.missing_text.format(usage=command.usage)
    if parsed.error:
        return Parsed(command.verb, ref=parsed.ref, error=parsed.error)
    if command.verb is Verb.URGENCY:
        return Parsed(command.verb, ref=parsed.ref, urgency=word.lower(), text=text.strip())
    return Parsed(command.verb, ref=parsed.ref, service=word, text=text.strip())


def _patient(command: Command, rest: str) -> Parsed:
    if not rest:
        return Parsed(command.verb, error=f"Give a patient reference: `{command.usage}`")
    return Parsed(command.verb, patient=rest)


def _handoff(command: Command, rest: str) -> Parsed:
    first, _, note = rest.partition(" ")
    user = parse_user(first) if first else None
    if user is None:
        return Parsed(command.verb, error=f"Name who takes over: `{command.usage}`")
    return Parsed(command.verb, user=user, text=note.strip())


def _oncall(command: Command, rest: str) -> Parsed:
    """Nothing (show), `reload`, or `<service> @user [for 4h | until 18:00]`."""
    if not rest:
        return Parsed(command.verb)
    parts = rest.split()
    if [p.lower() for p in parts] == [RELOAD]:
        return Parsed(command.verb, extra={RELOAD: "yes"})
    usage = f"Usage: `{command.usage}` (or `/consult oncall` to see it)"
    if len(parts) not in (2, 4) or parse_user(parts[1]) is None:
        return Parsed(command.verb, error=usage)
    parsed = Parsed(command.verb, service=parts[0], user=parse_user(parts[1]))
    if len(parts) == 4:
        word, value = parts[2].lower(), parts[3]
        if word not in ("for", "until"):
            return Parsed(command.verb, error=usage)
        if word == "for":
            try:
                parse_duration(value)
            except ValueError as exc:
                return Parsed(command.verb, error=f"{escape(str(exc))} {usage}")
        parsed.extra[word] = value
    return parsed


def _stats(command: Command, rest: str) -> Parsed:
    service, days = None, 30
    for token in rest.split():
        if token.lower() in PERIODS:
            days = PERIODS[token.lower()]
        elif service is None:
            service = token
        else:
            return Parsed(command.verb, error=f"Usage: `{command.usage}`")
    return Parsed(command.verb, service=service, days=days)


def _critical(command: Command, rest: str) -> Parsed:
    """`[service] @user <patient>: <finding>`; nothing at all opens the form."""
    if not rest:
        return Parsed(command.verb)
    first, _, tail = rest.partition(" ")
    service = None
    if parse_user(first) is None:
        service, (first, _, tail) = first, tail.strip().partition(" ")
    user = parse_user(first) if first else None
    patient, colon, finding = tail.partition(":")
    if user is None or not colon or not patient.strip() or not finding.strip():
        return Parsed(
            command.verb,
            error=f"Name the clinician, the patient and the finding: `{command.usage}`",
        )
    return Parsed(
        command.verb, service=service, user=user, patient=patient.strip(), question=finding.strip()
    )


def _followup(command: Command, rest: str) -> Parsed:
    """`<patient or consult ref>: <what is owed>`; nothing at all opens the form."""
    if not rest:
        return Parsed(command.verb)
    patient, colon, owed = rest.partition(":")
    if not colon or not patient.strip() or not owed.strip():
        return Parsed(
            command.verb,
            error=f"Name the patient (or the consult) and what is owed: `{command.usage}`",
        )
    ref = normalize_ref(patient)
    return Parsed(command.verb, ref=ref, patient=patient.strip(), question=owed.strip())


def _cover(command: Command, rest: str) -> Parsed:
    """Nothing (show), `off`, or `@user`."""
    if not rest:
        return Parsed(command.verb)
    if rest.lower() == OFF:
        return Parsed(command.verb, extra={OFF: "yes"})
    user = parse_user(rest) if " " not in rest else None
    if user is None:
        return Parsed(
            command.verb,
            error=f"Name who covers for you: `{command.usage}` (or `/consult cover off`).",
        )
    return Parsed(command.verb, user=user)


def _ref_colleague(command: Command, rest: str) -> Parsed:
    """`<ref> @user [note]`."""
    parsed = _ref_command(command, rest)
    if parsed.error:
        return parsed
    first, _, note = parsed.text.partition(" ")
    user = parse_user(first) if first else None
    if user is None:
        return Parsed(command.verb, ref=parsed.ref, error=f"Name the colleague: `{command.usage}`")
    return Parsed(command.verb, ref=parsed.ref, user=user, text=note.strip())


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
            return Parsed(Verb.QUICK, service=service, urgency=urgency, patient=rest)
        return Parsed(Verb.QUICK, service=service, urgency=urgency, question=rest)
    return Parsed(
        Verb.QUICK,
        service=service,
        urgency=urgency,
        patient=patient.strip(),
        question=question.strip(),
    )


_READERS: dict[Takes, Callable[[Command, str], Parsed]] = {
    Takes.NOTHING: _nothing,
    Takes.REF: _ref_command,
    Takes.PATIENT: _patient,
    Takes.COLLEAGUE: _handoff,
    Takes.ON_CALL: _oncall,
    Takes.STATS: _stats,
    Takes.CRITICAL: _critical,
    Takes.FOLLOWUP: _followup,
    Takes.COVER: _cover,
    Takes.REF_COLLEAGUE: _ref_colleague,
    Takes.REF_WORD: _ref_word,
}
