"""bot.domain.commands: the one table of /consult sub-commands, and everything that reads it
(parsing, reserved service names, help lines, the /consult dispatch, the request key)."""

from __future__ import annotations

import pytest

from bot.domain.catalogue_load import parse_catalogue
from bot.domain.commands import (
    BY_WORD,
    COMMANDS,
    RESERVED_WORDS,
    WORDS,
    Takes,
    Verb,
    help_lines,
)
from bot.domain.lifecycle import Refused
from bot.domain.parsing import parse
from bot.domain.vocabulary import URGENCIES
from bot.flows.consults.service import ConsultService
from bot.slack.render.texts import help_text
from handlers.commands import HANDLERS, REF_VERBS
from handlers.middleware import audited, key_of
from tests.harness import TEST_CATALOGUE

# Text after the word that every reader accepts.
GOOD_ARGS = {
    Takes.NOTHING: "",
    Takes.REF: "RAD-42 30m",
    Takes.PATIENT: "MRN 12345",
    Takes.COLLEAGUE: "<@U0123ABC> night shift",
    Takes.ON_CALL: "rad <@U0123ABC>",
    Takes.STATS: "rad 7d",
    Takes.CRITICAL: "rad <@U0123ABC> MRN 12345: massive PE",
    Takes.FOLLOWUP: "MRN 12345: call with the biopsy result",
    Takes.COVER: "<@U0123ABC>",
    Takes.REF_COLLEAGUE: "RAD-42 <@U0123ABC> going off shift",
    Takes.REF_WORD: "RAD-42 stat wrong service, needs cardiology",
}


def test_every_verb_has_one_row():
    assert sorted(c.verb for c in COMMANDS) == sorted(Verb)


@pytest.mark.parametrize("word", sorted(BY_WORD))
def test_every_word_and_alias_parses_to_its_verb(word: str):
    command = BY_WORD[word]
    assert command.takes is not None
    parsed = parse(f"{word.upper()} {GOOD_ARGS[command.takes]}")
    assert parsed.error is None
    assert parsed.verb == command.verb


def test_help_has_the_question_mark_alias():
    assert parse("?").verb == Verb.HELP


def test_the_form_and_the_quick_form_are_not_typed_words():
    assert parse("").verb == Verb.FORM
    assert parse("form").verb == Verb.QUICK
    assert parse("quick").verb == Verb.QUICK
    assert {Verb.FORM, Verb.QUICK}.isdisjoint(BY_WORD)


def test_words_are_the_typed_verbs_without_aliases():
    assert set(WORDS) == {c.verb.value for c in COMMANDS if c.takes is not None}
    assert "?" not in WORDS


def test_reserved_words_are_the_table_words_and_the_urgencies():
    assert RESERVED_WORDS == {w for c in COMMANDS for w in c.words} | set(URGENCIES)
    assert {"help", "?", "ack", "oncall", "needinfo", "stat", "routine"} <= RESERVED_WORDS


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.takes is Takes.REF])
def test_a_bad_reference_shows_the_usage_from_the_table(command):
    parsed = parse(f"{command.verb} nonsense")
    assert parsed.error == f"'nonsense' is not a consult reference. Usage: `{command.usage}`"


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.missing_text])
def test_required_text_is_asked_for_with_the_usage(command):
    parsed = parse(f"{command.verb} RAD-42")
    assert parsed.ref == "RAD-42"
    assert parsed.error == command.missing_text.format(usage=command.usage)


def test_help_lines_are_the_lines_of_consult_help():
    lines = help_text(parse_catalogue(TEST_CATALOGUE)).split("\n")
    assert lines[1:-1] == help_lines()


def test_every_command_shows_in_help():
    assert all(c.help and c.help[-1][0] for c in COMMANDS)
    assert COMMANDS[-1].help[-1][1], "the last command must end a help line"


def test_the_consult_handler_answers_every_verb():
    assert set(HANDLERS) == set(Verb)


def test_reference_verbs_are_the_table_rows_that_take_a_reference():
    # `show` takes a reference too, but reads (its own handler) rather than acts.
    assert set(REF_VERBS) | {Verb.SHOW} == {c.verb for c in COMMANDS if c.takes is Takes.REF}
    for verb in REF_VERBS.values():
        assert callable(getattr(ConsultService, verb.flow))


def test_request_keys_are_stable_per_request():
    assert key_of({"command": "/consult", "trigger_id": "T1"}) == "cmd:T1"
    assert key_of({"command": "/consult"}) is None
    click = {"type": "block_actions", "trigger_id": "T2", "actions": [{"action_id": "ack"}]}
    assert key_of(click) == "act:ack:T2"
    no_trigger = {"type": "block_actions", "actions": [{"action_id": "ack", "action_ts": "9.1"}]}
    assert key_of(no_trigger) == "act:ack:9.1"
    assert key_of({"type": "view_submission", "view": {"id": "V1"}}) == "view:V1"
    assert key_of({"type": "event_callback"}) is None


class _Consults:
    def __init__(self) -> None:
        self.audits: list[dict[str, object]] = []

    def audit_refusal(self, **kwargs: object) -> None:
        self.audits.append(kwargs)


class _Svc:
    def __init__(self) -> None:
        self.consults = _Consults()


def test_a_refusal_is_audited_and_returned():
    svc = _Svc()

    def refuse() -> str:
        raise Refused("Only the requester can close RAD-42.")

    result = audited(svc, refuse, user="U1", action="close", ref="RAD-42")  # type: ignore[arg-type]
    assert isinstance(result, Refused)
    assert svc.consults.audits == [
        {
            "user": "U1",
            "action": "close",
            "reason": "Only the requester can close RAD-42.",
            "ref": "RAD-42",
        }
    ]


def test_a_call_that_is_not_refused_is_not_audited():
    svc = _Svc()
    assert audited(svc, lambda: "done", user="U1", action="ack", ref=None) == "done"  # type: ignore[arg-type]
    assert svc.consults.audits == []
