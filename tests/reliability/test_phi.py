"""Point 7, patient data: patient references and clinical text (of consults and of
follow-ups) stay out of logs, App Home, modal titles, message metadata, notification
fallback text and error messages; a service may require a patient-reference pattern; old
closed consults can be purged of it all."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from slack_bolt.request import BoltRequest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from bot.dev.fakeslack import FakeSlack
from bot.dev.fakeslack.requests import sign, state_values, static_select, users_select
from bot.domain.catalogue_load import parse_catalogue
from bot.flows.retention import purge
from bot.reports.compute import compute_report
from bot.reports.export import report_csv, report_json, report_table
from bot.slack.ids import ActionId, BlockId, CallbackId
from storage.models import AuditEvent, Base, Consult, OutboxMessage, Reply
from storage.models_cover import RequesterCover
from tests.harness import (
    CARD_CHANNEL,
    RAD_ON_CALL,
    REQUESTER,
    TEST_CATALOGUE,
    Bot,
    start_bot,
)
from tests.reliability.conftest import LogCapture, form, interactive, wsgi_call
from tests.reliability.slack_rules import MESSAGE_METHODS, VIEW_METHODS, view_of
from tests.statements import refusing

ON_CALL, BACKUP, LEAD = "UCARDON", "UCARDBK", "UCARDLEAD"
PATIENT = "MRN 7781234"
QUESTION = "HIV positive, CD4 45 - PCP prophylaxis?"
ANSWER = "Start TMP-SMX 960 mg daily"
NEED = "Is she on dapsone already"
REPLY = "Yes, dapsone since May"
NOTE = "Wife is Jane Doe, call 555-0199"
INTAKE = "ACC-55501"
PHI = [
    "7781234",
    "HIV positive",
    "CD4 45",
    "TMP-SMX",
    "dapsone",
    "Jane Doe",
    "555-0199",
    "ACC-55501",
]


def leaks(text: str) -> list[str]:
    return [p for p in PHI if p in text]


def full_lifecycle(bot: Bot) -> str:
    """Every flow that carries patient data, over signed HTTP."""
    bot.command(f"cards stat {PATIENT}: {QUESTION}")
    ref = bot.consults()[-1].ref
    bot.settle()
    bot.command(f"followup {ref}: call back, {NOTE}")  # told when the answer arrives
    bot.reply(ref, f"{REPLY} (consultant)", user=ON_CALL)
    bot.command(f"needinfo {ref} {NEED}", user=ON_CALL)
    bot.settle()
    bot.reply(ref, REPLY, user=REQUESTER)
    bot.sender.view_submission(
        CallbackId.HANDOFF,
        state_values({BlockId.HANDOFF_TO: users_select(BACKUP), BlockId.NOTE: NOTE}),
        user=ON_CALL,
        private_metadata=ref,
    )
    bot.click(ActionId.ANSWER, ref, user=BACKUP, channel=CARD_CHANNEL)  # pre-filled modal
    bot.command(f"answer {ref} {ANSWER}", user=BACKUP)
    bot.settle()
    bot.command(f"reopen {ref} {NEED}?")
    bot.command(f"answer {ref} {ANSWER}.", user=BACKUP)
    bot.click(ActionId.NOT_HELPFUL, ref, user=REQUESTER)
    bot.sender.view_submission(
        CallbackId.FEEDBACK,
        state_values({BlockId.COMMENT: f"{NOTE} wanted {ANSWER}"}),
        user=REQUESTER,
        private_metadata=f"{ref}|0",
    )
    bot.command(f"close {ref}")
    bot.sender.view_submission(
        CallbackId.FOLLOWUP_DONE,
        state_values({BlockId.OUTCOME: static_select("other"), BlockId.NOTE: f"{NOTE} {ANSWER}"}),
        user=REQUESTER,
        private_metadata="FU-1",
    )
    bot.command(f"followup {PATIENT}: {NEED}")  # stays open: on App Home, owed to a patient
    bot.command("followups")
    bot.sender.view_submission(
        CallbackId.NEW_CONSULT,
        state_values(
            {
                (BlockId.SERVICE, ActionId.SERVICE_SELECT): static_select("radiology"),
                BlockId.URGENCY: static_select("stat"),
                BlockId.PATIENT: PATIENT,
                BlockId.QUESTION: QUESTION,
                BlockId.INTAKE_PREFIX + "accession": INTAKE,
            }
        ),
        user=REQUESTER,
    )
    other = bot.consults()[-1].ref
    bot.command(f"cancel {other} {NOTE}")
    bot.command(f"patient {PATIENT}", user=RAD_ON_CALL)
    bot.command(f"cards urgent {PATIENT}: {QUESTION} again")  # stays open: on App Home
    moved = bot.consults()[-1].ref
    bot.settle()
    bot.command(f"urgency {moved} stat {NOTE}")
    bot.click(ActionId.TRANSFER, moved, user=ON_CALL, channel=CARD_CHANNEL)  # the form
    bot.command(f"transfer {moved} path {NOTE}", user=ON_CALL)
    bot.command("list")
    shown = json.dumps(bot.command(f"show {ref}", user=REQUESTER).json)
    assert PATIENT in shown and ANSWER in shown  # `show` is where patient data may go
    bot.command(f"show {ref}", user="UOUTSIDE")  # refused
    for user in (REQUESTER, ON_CALL, BACKUP, LEAD, "UADMIN"):
        bot.sender.event({"type": "app_home_opened", "user": user, "tab": "home"})
    bot.settle()
    return ref


def test_patient_data_never_reaches_the_logs(bot: Bot, logs: LogCapture):
    ref = full_lifecycle(bot)
    # A forged request with patient data, and a malformed but signed one.
    body = form({"command": "/consult", "text": f"cards {PATIENT}: {QUESTION}", "user_id": "U1"})
    assert bot.sender.post(body, "application/x-www-form-urlencoded", sign=False).status == 401
    assert wsgi_call(bot, interactive(f'{{"oops": "{PATIENT}"')).status == 400
    # bolt's own signature failure log (it writes the whole body): reach bolt directly,
    # as a proxy or Socket Mode misconfiguration could.
    app = bot.server.get_app().handler.app
    # As an operator would when chasing a signing problem: bolt's middleware at DEBUG.
    verification = logging.getLogger("slack_bolt.RequestVerification")
    level = verification.level
    verification.setLevel(logging.DEBUG)
    try:
        response = app.dispatch(
            BoltRequest(
                body=body.decode(),
                headers={"content-type": "application/x-www-form-urlencoded", **sign("x", body)},
            )
        )
    finally:
        verification.setLevel(level)
    assert response.status == 401
    # The database fails in the middle of opening a consult (the error carries SQL
    # parameters: the patient and the question).
    engine = bot.services.engine

    def explode(sql: str, params: Any) -> OperationalError:
        return OperationalError(sql, params, RuntimeError(f"boom {params}"))

    with refusing(engine, "insert into consults", explode) as refused:
        assert "not saved" in bot.command(f"cards stat {PATIENT}: {QUESTION}").text
    assert refused  # the fault was injected
    # Slack refuses a post; the dispatcher logs and tells the requester.
    bot.slack.fail("chat.postMessage", error="channel_not_found", times=1)
    bot.command(f"path stat {PATIENT}: {QUESTION}")
    bot.settle()
    text = logs.text
    assert leaks(text) == [], [line for line in text.splitlines() if leaks(line)][:5]
    # Not vacuous: the flows above did log, with references, and bolt's dump was cut.
    lines = logs.lines()
    assert any(line.get("ref") == ref for line in lines)
    assert any("Invalid request signature" in line["message"] for line in lines)
    assert any("details withheld" in line["message"] for line in lines)
    assert any(line["message"] == "unhandled error in a Slack handler" for line in lines)
    assert any(line["message"] == "slack refused a message" for line in lines)
    assert any(line["message"].startswith("request refused") for line in lines)


def test_app_home_modal_titles_metadata_and_fallback_text_carry_no_patient_data(bot: Bot):
    full_lifecycle(bot)
    calls = bot.slack.calls
    published = [view_of(c) for c in calls if c.method == "views.publish" and c.ok]
    assert len(published) == 5
    for view in published:
        assert leaks(json.dumps(view)) == [], view
    assert any("Owed to patients" in json.dumps(v) and "FU-2" in json.dumps(v) for v in published)
    # It does show references (CARD-2, transferred: PATH-1).
    assert any("PATH-1" in json.dumps(v) for v in published)
    opened = [view_of(c) for c in calls if c.method in VIEW_METHODS and c.method != "views.publish"]
    assert opened
    for view in opened:
        for key in ("title", "submit", "close"):
            assert leaks((view.get(key) or {}).get("text", "")) == [], view.get(key)
        assert leaks(view.get("private_metadata") or "") == []
        assert leaks(view.get("callback_id") or "") == []
    messages = [c for c in calls if c.method in MESSAGE_METHODS and c.ok]
    assert len(messages) > 20
    for call in messages:
        assert leaks(str(call.args.get("text") or "")) == [], (call.method, call.args["text"])
        meta = call.args.get("metadata")
        if meta is not None:
            assert set(meta["event_payload"]) == {"outbox_id"}
            assert leaks(json.dumps(meta)) == []
    # The content itself does go where it belongs: the message blocks.
    assert any(PATIENT in json.dumps(c.args.get("blocks")) for c in messages)


def test_error_messages_carry_no_patient_data(bot: Bot):
    full_lifecycle(bot)
    texts = []
    texts.append(bot.command(f"answer CARD-1 {ANSWER}", user="UOUTSIDE").text)
    texts.append(bot.command(f"ack CARD-1 {PATIENT}", user="UOUTSIDE").text)
    bot.slack.fail("chat.postMessage", error="channel_not_found", times=1)
    bot.command(f"cards stat {PATIENT}: {QUESTION}")
    bot.settle()
    notices = [t for t in bot.dm_texts(REQUESTER) if "could not" in t]
    assert len(notices) == 1
    texts += notices
    for text in texts:
        assert leaks(text) == [], text
    with bot.services.sessions() as s:
        refusals = [a.details for a in s.execute(select(AuditEvent)).scalars()]
    assert leaks(json.dumps(refusals)) == []


def test_time_held_in_reports_and_stats_carries_no_patient_data(bot: Bot):
    full_lifecycle(bot)
    bot.clock.advance(timedelta(minutes=1))  # the period ends before now
    now = bot.clock.now()
    with bot.services.sessions() as s:
        report = compute_report(
            s, catalogue=bot.services.catalogue, since=now - timedelta(days=1), until=now,
            now=now,
        )  # fmt: skip
    data = report.as_dict()
    assert {(h["user"], h["role"]) for h in data["holders"]} >= {
        (ON_CALL, "consultant"), (BACKUP, "consultant"), (REQUESTER, "requester"),
    }  # fmt: skip
    outputs = [report_json(report), report_csv(report), report_table(report)]
    outputs.append(json.dumps(bot.command("stats cards 7d", user=LEAD).json))
    assert "Time held" in outputs[-1]
    for out in outputs:
        assert leaks(out) == [], out
    refused = bot.command(f"show {bot.consults()[0].ref}", user="UOUTSIDE").text
    assert "Only the requester" in refused and leaks(refused) == []
    with bot.services.sessions() as s:
        audits = [
            (a.action, a.details)
            for a in s.execute(select(AuditEvent)).scalars()
            if a.action == "show" or (a.details or {}).get("attempted") == "show"
        ]
    assert [a for a, _ in audits].count("show") == 1 and len(audits) >= 3
    assert leaks(json.dumps(audits)) == []


# ---------------------------------------------------------------------------- patterns
PATTERNED = TEST_CATALOGUE.replace(
    'key = "cardiology"\n',
    "key = \"cardiology\"\npatient_pattern = 'MRN \\d{7}'\n"
    'patient_hint = "MRN and 7 digits, e.g. MRN 1234567"\n',
)


@pytest.fixture
def strict_bot(db_url: str, slack: FakeSlack) -> Iterator[Bot]:
    running = start_bot(db_url, slack, catalogue=parse_catalogue(PATTERNED, "strict.toml"))
    yield running
    running.stop()


def test_patient_pattern_is_enforced_in_the_quick_form_and_the_modal(strict_bot: Bot):
    bot = strict_bot
    assert bot.services.catalogue.service("cards").patient_pattern
    for bad in ("MRN 12", "7781234", "Jane Doe", "MRN 77812345"):
        resp = bot.command(f"cards stat {bad}: q?")
        assert "MRN and 7 digits" in resp.text, resp.text
        assert bad not in resp.text.replace("MRN 1234567", "")
    assert bot.consults() == []
    for n, bad in enumerate(("MRN 12", "mrn1234567")):
        resp = bot.sender.view_submission(
            CallbackId.NEW_CONSULT,
            state_values(
                {
                    (BlockId.SERVICE, ActionId.SERVICE_SELECT): static_select("cardiology"),
                    BlockId.URGENCY: static_select("stat"),
                    BlockId.PATIENT: bad,
                    BlockId.QUESTION: "q?",
                }
            ),
            user=REQUESTER,
            view_id=f"VPAT{n}",
        )
        assert "MRN and 7 digits" in resp.json["errors"][BlockId.PATIENT]
    assert bot.consults() == []
    assert "CARD-1" in bot.command(f"cards stat {PATIENT}: q?").text
    assert "PATH-1" in bot.command("path stat anything goes: q?").text  # no pattern there


# ---------------------------------------------------------------------------- retention
def phi_rows(bot: Bot, needle: str) -> list[str]:
    """Every row, in every table, whose text contains `needle`."""
    found = []
    with bot.services.sessions() as s:
        for table in Base.metadata.sorted_tables:
            for row in s.execute(table.select()).mappings():
                if needle.lower() in json.dumps(dict(row), default=str).lower():
                    found.append(f"{table.name}: {dict(row)}")
    return found


def test_purge_cli_removes_patient_data_from_old_closed_consults(bot: Bot, db_url: str):
    bot.services.dispatcher.pacer.interval = 0
    real_now = datetime.now(UTC)
    old = "OLDMRN 1111111"
    bot.clock.set(real_now - timedelta(days=400))
    bot.sender.view_submission(
        CallbackId.NEW_CONSULT,
        state_values(
            {
                (BlockId.SERVICE, ActionId.SERVICE_SELECT): static_select("radiology"),
                BlockId.URGENCY: static_select("stat"),
                BlockId.PATIENT: old,
                BlockId.QUESTION: "oldquestion CT?",
                BlockId.INTAKE_PREFIX + "accession": "oldaccession",
            }
        ),
        user=REQUESTER,
    )
    purged_ref = bot.consults()[-1].ref
    bot.settle()
    bot.command(f"ack {purged_ref}", user=RAD_ON_CALL)
    bot.reply(purged_ref, "oldreply from radiology", user=RAD_ON_CALL)
    bot.command(f"needinfo {purged_ref} oldneedinfo?", user=RAD_ON_CALL)
    bot.settle()
    bot.reply(purged_ref, "oldrequesterreply", user=REQUESTER)
    bot.command("handoff <@URADBK> oldhandoffnote", user=RAD_ON_CALL)
    bot.command(f"answer {purged_ref} oldanswer", user="URADBK")
    bot.click(ActionId.HELPFUL, purged_ref, user=REQUESTER)
    bot.sender.view_submission(
        CallbackId.FEEDBACK,
        state_values({BlockId.COMMENT: "oldcomment"}),
        user=REQUESTER,
        private_metadata=f"{purged_ref}|1",
    )
    bot.clock.advance(timedelta(hours=2))
    bot.command(f"close {purged_ref}")
    still_open = bot.open(f"cards stat {old}: stillopen?")
    # Answered, and nobody ever closed it: done once the answer is older than the limit.
    never_closed = bot.open("cards stat MRN 3333333: oldneverclosed?")
    bot.command(f"answer {never_closed} oldneverclosedanswer", user=ON_CALL)
    bot.clock.set(real_now - timedelta(days=10))
    recent = bot.open("cards stat MRN 2222222: recent?")
    bot.command(f"answer {recent} recentanswer", user=ON_CALL)
    bot.command(f"close {recent}")
    recent_unclosed = bot.open("cards stat MRN 4444444: recentunclosed?")
    bot.command(f"answer {recent_unclosed} recentunclosedanswer", user=ON_CALL)
    bot.settle()
    before = bot.consult(purged_ref)
    assert before.answer == "oldanswer" and phi_rows(bot, "oldhandoffnote")

    def purge() -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DATABASE_"))}
        env |= {"DATABASE_URL": db_url, "SLACK_BOT_TOKEN": "xoxb-cli", "LOG_FORMAT": "text"}
        done = subprocess.run(
            [sys.executable, "-m", "bot", "purge", "--older-than", "365d"],
            env=env,
            cwd=Path(__file__).parent,  # no .env file here
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "purged 2 consult(s)" in purge()
    closed = bot.consult(never_closed)
    assert closed.status == "closed" and closed.purged_at is not None
    assert closed.patient is None and closed.answer is None
    assert closed.closed_at is not None and closed.answered_at is not None
    with bot.services.sessions() as s:
        (auto,) = s.execute(
            select(AuditEvent).where(
                AuditEvent.consult_id == closed.id, AuditEvent.action == "closed"
            )
        ).scalars()
        assert auto.actor == "cli" and auto.details["reason"] == "retention"
    assert phi_rows(bot, "oldneverclosed") == []
    # Answered within the limit and not closed: left as it is (the requester may reopen).
    kept = bot.consult(recent_unclosed)
    assert kept.status == "answered" and kept.answer == "recentunclosedanswer"
    after = bot.consult(purged_ref)
    assert after.purged_at is not None
    for field in ("patient", "patient_key", "question", "answer", "feedback_comment"):
        assert getattr(after, field) is None, field
    assert after.intake == {}
    # Timings stay for reports.
    for field in ("created_at", "acknowledged_at", "first_reply_at", "answered_at", "closed_at"):
        assert getattr(after, field) == getattr(before, field), field
    assert after.feedback_helpful is True and after.status == "closed"
    with bot.services.sessions() as s:
        texts = list(s.execute(select(Reply.text).where(Reply.consult_id == after.id)).scalars())
        assert texts and set(texts) == {None}
        (audit,) = s.execute(select(AuditEvent).where(AuditEvent.action == "purged")).scalars()
        assert audit.actor == "cli" and sorted(audit.details["refs"]) == sorted(
            [purged_ref, never_closed]
        )
        assert audit.details["outbox_messages"] >= 1
        assert (
            s.execute(select(OutboxMessage).where(OutboxMessage.consult_id == after.id)).first()
            is None
        )
    for needle in (
        "oldquestion",
        "oldaccession",
        "oldreply",
        "oldneedinfo",
        "oldrequesterreply",
        "oldhandoffnote",
        "oldanswer",
        "oldcomment",
    ):
        assert phi_rows(bot, needle) == [], needle
    # The open consult of the same patient and the recent one are untouched.
    assert bot.consult(still_open).patient == old
    assert bot.consult(recent).answer == "recentanswer"
    assert "purged 0 consult(s)" in purge()
    with bot.services.sessions() as s:
        assert s.execute(select(Consult).where(Consult.purged_at.is_not(None))).all()


def test_purge_removes_transfer_and_urgency_reasons(bot: Bot):
    real_now = datetime.now(UTC)
    bot.clock.set(real_now - timedelta(days=400))
    ref = bot.open("cards routine MRN 1212121: oldtransferquestion?")
    bot.command(f"urgency {ref} stat oldurgencyreason", user=REQUESTER)
    bot.command(f"transfer {ref} path oldtransferreason", user=ON_CALL)
    bot.command("answer PATH-1 oldtransferanswer", user="UPATHON")
    bot.command("close PATH-1")
    bot.settle()
    assert bot.consult("PATH-1").transfer_reason == "oldtransferreason"
    bot.clock.set(real_now)
    refs = purge(sessions=bot.services.sessions, clock=bot.clock, older_than=timedelta(days=365))
    assert refs == ["PATH-1"]
    for needle in ("oldtransferreason", "oldurgencyreason", "MRN 1212121"):
        assert phi_rows(bot, needle) == [], needle
    # What the reports count stays.
    moved = bot.consult("PATH-1")
    assert (moved.former_ref, moved.transferred_from) == ("CARD-1", "cardiology")


# ---------------------------------------------------------------------------- the log filter
THIRD_PARTY = [
    ("slack_bolt.IgnoringSelfEvents", "Skipped self event: {'type': 'message', 'text': '%s'}"),
    ("slack_bolt.App", "Unhandled request ({'type': 'block_actions', 'value': '%s'})"),
    ("slack_bolt.App", 'Responding with status: 200 body: "%s" (3 millis)'),
    ("slack_bolt.App", "Failed to run a middleware (error: value %s too long)"),
    ("slack_bolt.App", "Error: (psycopg.DataError) [parameters: ('%s',)]"),
    (
        "slack_sdk.web.base_client",
        "Sending a request - url: https://slack.com/api/chat.postMessage, query_params: {}, "
        "body_params: {'text': '%s'}, files: {}, json_body: None",
    ),
    ("slack_sdk.web.base_client", "Received the following response - status: 200, body: %s"),
    ("urllib3.connectionpool", 'https://slack.com:443 "POST /api/x?text=%s HTTP/1.1" 200'),
]


@pytest.mark.parametrize(("name", "template"), THIRD_PARTY)
def test_third_party_log_lines_lose_their_payloads(logs: LogCapture, name: str, template: str):
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        logger.warning(template, f"{PATIENT} {QUESTION}")
    finally:
        logger.setLevel(level)
    (line,) = [line for line in logs.lines() if line["logger"] == name]
    assert leaks(line["message"]) == [], line
    assert line["message"].endswith("[details withheld]"), line


def test_exceptions_are_logged_by_type_only(logs: LogCapture):
    log = logging.getLogger("careloop.test")
    try:
        raise ValueError(f"cannot parse {PATIENT}: {QUESTION}")
    except ValueError:
        log.exception("parsing failed", extra={"ref": "CARD-9", "patient": PATIENT})
    (line,) = [line for line in logs.lines() if line["logger"] == "careloop.test"]
    assert line["exception"] == "builtins.ValueError" and line["ref"] == "CARD-9"
    assert leaks(json.dumps(line)) == [], line  # nor the unsafe `patient` extra


def test_database_statements_are_not_logged_at_debug(logs: LogCapture, tmp_path: Path):
    from storage.db import create_db_engine  # noqa: PLC0415

    engine = create_db_engine(f"sqlite:///{tmp_path / 'x.db'}")  # created after DEBUG is on
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x TEXT)")
            conn.exec_driver_sql("INSERT INTO t VALUES (?)", (PATIENT,))
    finally:
        engine.dispose()
    assert leaks(logs.text) == []


# ---------------------------------------------------------------------------- cover, hand-over
def test_cover_and_hand_over_keep_patient_data_in_message_bodies(bot: Bot, logs: LogCapture):
    """The hand-over note and the consult's patient reach the new requester and the
    thread (message bodies) and nothing else: not the audit trail, the cover table, logs,
    modal titles, fallback text or App Home."""
    cover, new = "UCOVER1", "UNEWREQ"
    bot.command(f"cards stat {PATIENT}: {QUESTION}")
    ref = bot.consults()[-1].ref
    bot.command(f"cover <@{cover}>")
    bot.command(f"ack {ref}", user=ON_CALL)
    bot.command(f"needinfo {ref} {NEED}", user=ON_CALL)
    bot.command(f"cover <@{cover}>", user=new)
    bot.click(ActionId.HANDOVER, ref, user=cover)  # the form, opened by the cover
    bot.sender.view_submission(
        CallbackId.HANDOVER,
        state_values({BlockId.HANDOVER_TO: users_select(new), BlockId.NOTE: NOTE}),
        user=cover,
        private_metadata=ref,
    )
    bot.command("cover", user=cover)
    bot.settle()  # delivered while the cover is in force
    bot.command("cover off", user=new)
    for user in (cover, new):
        bot.sender.event({"type": "app_home_opened", "user": user, "tab": "home"})
    bot.settle()
    assert bot.consult(ref).requester == new
    assert leaks(logs.text) == []
    with bot.services.sessions() as s:
        audits = [(a.action, a.details) for a in s.execute(select(AuditEvent)).scalars()]
        cover_rows = [(r.user, r.cover) for r in s.execute(select(RequesterCover)).scalars()]
    assert {"cover_on", "cover_off", "handover"} <= {a for a, _ in audits}
    assert cover_rows and leaks(json.dumps(audits)) == [] and leaks(str(cover_rows)) == []
    calls = bot.slack.calls
    for call in calls:
        if call.method in VIEW_METHODS:
            view = view_of(call)
            assert leaks(json.dumps(view.get("title"))) == []
            if call.method == "views.publish":
                assert leaks(json.dumps(view)) == []
        elif call.method in MESSAGE_METHODS:
            assert leaks(str(call.args.get("text") or "")) == [], call.args.get("text")
    # Not vacuous: the note and the patient did reach the cover of the new requester.
    to_cover = json.dumps([m.get("blocks") for m in bot.slack.dms(cover)])
    assert NOTE in to_cover and PATIENT in to_cover
