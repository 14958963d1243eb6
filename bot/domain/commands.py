"""The `/consult` sub-commands, defined once: each command's verb, the words that type it,
what it takes after the word, its usage line (shown when the arguments are wrong) and its
lines in `/consult help`.

`bot.domain.parsing` reads the text with this table, the catalogue refuses its words as
service names (`RESERVED_WORDS`), and the `/consult` handler dispatches on `Verb`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum

from bot.domain.vocabulary import URGENCIES, Urgency


class Verb(StrEnum):
    """What a `/consult` asks for; the value is the word typed after `/consult` (except for
    the form and the quick form, which have no word)."""

    FORM = "form"
    QUICK = "quick"
    HELP = "help"
    LIST = "list"
    ACK = "ack"
    ANSWER = "answer"
    NEED_INFO = "needinfo"
    HANDOFF = "handoff"
    CLOSE = "close"
    REOPEN = "reopen"
    CANCEL = "cancel"
    PATIENT = "patient"
    ON_CALL = "oncall"
    STATS = "stats"
    SNOOZE = "snooze"
    CRITICAL = "critical"
    FOLLOWUP = "followup"
    FOLLOWUPS = "followups"
    COVER = "cover"
    HANDOVER = "handover"
    SHOW = "show"
    TRANSFER = "transfer"
    URGENCY = "urgency"


class Takes(Enum):
    """What a sub-command reads after its word (each has one reader in `parsing`)."""

    NOTHING = "nothing"  # anything after the word is ignored
    REF = "ref"  # a consult reference, then text (required when `Command.missing_text`)
    PATIENT = "patient"  # a patient reference (required)
    COLLEAGUE = "colleague"  # @user, then an optional note
    ON_CALL = "on_call"  # nothing (show), reload, or <service> @user [for 4h | until 18:00]
    STATS = "stats"  # [service] [period]
    CRITICAL = "critical"  # nothing (the form), or [service] @user <patient>: <finding>
    FOLLOWUP = "followup"  # nothing (the form), or <patient or consult ref>: <what is owed>
    COVER = "cover"  # nothing (show), off, or @user
    REF_COLLEAGUE = "ref_colleague"  # a consult reference, @user, then an optional note
    REF_WORD = "ref_word"  # a consult reference, a word (service or urgency), then text (required)


@dataclass(frozen=True)
class Command:
    """One row of the table.

    `takes` None: not typed as a word (the form, the quick form). `usage` is shown when the
    arguments are wrong. Help shows `help_form` (else `usage`) with `description`, then the
    `more` (form, description) pairs, joined with "; "; an empty description shares the
    next command's line (forms joined with " · "). `missing_text` is the error (with
    `{usage}`) when the text after the reference is required and absent.
    """

    verb: Verb
    takes: Takes | None
    usage: str
    description: str
    help_form: str = ""
    more: tuple[tuple[str, str], ...] = ()
    aliases: tuple[str, ...] = ()
    missing_text: str = ""

    @property
    def words(self) -> tuple[str, ...]:
        """What may be typed after `/consult` to give this command (word first)."""
        return (self.verb.value, *self.aliases) if self.takes is not None else ()

    @property
    def help(self) -> tuple[tuple[str, str], ...]:
        """The (form, description) pairs of the command in `/consult help`."""
        return ((self.help_form or self.usage, self.description), *self.more)


# `/consult oncall reload`: re-read the schedules.
RELOAD = "reload"
# `/consult cover off`: end my cover.
OFF = "off"
# Stats periods a person may type, in days.
PERIODS = {"7d": 7, "30d": 30, "90d": 90}
QUICK_USAGE = f"/consult <service> [{'|'.join(URGENCIES)}] <patient>: <question>"
QUICK_EXAMPLE = f"/consult rad {Urgency.STAT} MRN 12345: CT head, r/o bleed?"
_STATS_USAGE = f"/consult stats [service] [{'|'.join(PERIODS)}]"
CRITICAL_USAGE = "/consult critical [service] @clinician <patient>: <finding>"
FOLLOWUP_USAGE = "/consult followup <patient or RAD-42>: <what is owed>"

# In the order `/consult help` shows them. One row per line: a table, not code.
# fmt: off
COMMANDS: tuple[Command, ...] = (
    Command(Verb.FORM, None, "/consult", "open the form"),
    Command(Verb.QUICK, None, QUICK_USAGE, f"quick form, e.g. `{QUICK_EXAMPLE}`"),
    Command(Verb.LIST, Takes.NOTHING, "/consult list", "your open consults, as requester and as assignee"),
    Command(Verb.ACK, Takes.REF, "/consult ack RAD-42", "acknowledge (take ownership)",
            more=(("/consult ack CRIT-12", "confirm receipt of a critical result, with a read-back"),)),
    Command(Verb.ANSWER, Takes.REF, "/consult answer RAD-42 <answer>", "answer", help_form="/consult answer RAD-42 <text>",
            missing_text="Add the answer after the reference: `{usage}`"),
    Command(Verb.NEED_INFO, Takes.REF, "/consult needinfo RAD-42 <question for the requester>", "ask the requester; pauses your clock",
            help_form="/consult needinfo RAD-42 <question>", missing_text="Add the question for the requester after the reference: `{usage}`"),
    Command(Verb.HANDOFF, Takes.COLLEAGUE, "/consult handoff @colleague [note]", "hand all your open consults to someone (shift change)",
            help_form="/consult handoff @user [note]"),
    Command(Verb.CLOSE, Takes.REF, "/consult close RAD-42", ""),
    Command(Verb.REOPEN, Takes.REF, "/consult reopen RAD-42 <follow-up>", ""),
    Command(Verb.CANCEL, Takes.REF, "/consult cancel RAD-42 [reason]", "for requesters"),
    Command(Verb.SHOW, Takes.REF, "/consult show RAD-42", "a consult's card and timeline: who held it, how long, nudges, the answer"),
    Command(Verb.PATIENT, Takes.PATIENT, "/consult patient <patient>", "a patient's open consults across services"),
    Command(Verb.ON_CALL, Takes.ON_CALL, "/consult oncall <service> @colleague [for 4h | until 18:00]", "who is on call, until when, who next",
            help_form="/consult oncall", more=(("/consult oncall <service> @user [for 4h | until 18:00]", "cover for someone (a scheduled service's rota resumes after)"),
                                               ("/consult oncall reload", "re-read the schedules (leads)"))),
    Command(Verb.TRANSFER, Takes.REF_WORD, "/consult transfer RAD-42 <service> <reason>", "send it to the right service, with why (consultants)",
            missing_text="Name the service and say why: `{usage}`"),
    Command(Verb.URGENCY, Takes.REF_WORD, f"/consult urgency RAD-42 <{'|'.join(URGENCIES)}> <reason>", "change its urgency; the deadlines follow (requester, owner, leads)",
            missing_text="Give the new urgency and say why: `{usage}`"),
    Command(Verb.SNOOZE, Takes.REF, "/consult snooze RAD-42 30m", "hold a consult's reminders (at most 24h)",
            missing_text="Say for how long: `{usage}` (at most 24h)"),
    Command(Verb.CRITICAL, Takes.CRITICAL, CRITICAL_USAGE, "send a critical result; the clinician must confirm receipt",
            help_form="/consult critical [service] @user <patient>: <finding>"),
    Command(Verb.FOLLOWUP, Takes.FOLLOWUP, FOLLOWUP_USAGE, "track what is owed to a patient (alone: the form)",
            help_form="/consult followup <patient or ref>: <what is owed>"),
    Command(Verb.FOLLOWUPS, Takes.NOTHING, "/consult followups", "the follow-ups you own"),
    Command(Verb.STATS, Takes.STATS, _STATS_USAGE, "response times (service leads)"),
    Command(Verb.COVER, Takes.COVER, "/consult cover @colleague", "while you are away, your consults' messages go to them and they may act for you",
            help_form="/consult cover @user", more=(("/consult cover off", "end it"), ("/consult cover", "who covers whom"))),
    Command(Verb.HANDOVER, Takes.REF_COLLEAGUE, "/consult handover RAD-42 @colleague [note]", "your side of one consult to a colleague, for good",
            help_form="/consult handover RAD-42 @user [note]"),
    Command(Verb.HELP, Takes.NOTHING, "/consult help", "this message", aliases=("?",)),
)
# fmt: on

BY_VERB: dict[Verb, Command] = {command.verb: command for command in COMMANDS}
# Every typed word and alias → its command.
BY_WORD: dict[str, Command] = {word: command for command in COMMANDS for word in command.words}
# The sub-command words (without aliases), in the table's order.
WORDS: tuple[str, ...] = tuple(command.verb.value for command in COMMANDS if command.takes)
# Names a service cannot take: `/consult <word>` must keep meaning the command, and the
# quick form `<service> [urgency] ...` would be confusing with a service called "stat".
RESERVED_WORDS: frozenset[str] = frozenset({*BY_WORD, *URGENCIES})


def help_lines() -> list[str]:
    """The command lines of `/consult help` (mrkdwn), one per help line, in table order."""
    lines: list[str] = []
    pending: list[str] = []
    for command in COMMANDS:
        parts: list[str] = []
        for form, description in command.help:
            pending.append(f"`{form}`")
            if description:
                parts.append(f"{' · '.join(pending)} — {description}")
                pending = []
        if parts:
            lines.append("; ".join(parts))
    return lines
