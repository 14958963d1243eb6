"""Test harness: the real bot (same WSGI app as `serve`) on a loopback HTTP server, talking
to the fake Slack Web API, with an injected clock; requests are signed as Slack signs them."""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from sqlalchemy import MetaData, create_engine, func, literal, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from bot.app import build_services, build_wsgi
from bot.domain.catalogue import Catalogue
from bot.domain.catalogue_load import parse_catalogue
from bot.domain.clock import FakeClock
from bot.flows.sweep import SweepResult, sweep
from bot.services import Services
from bot.settings import Settings
from storage.db import create_db_engine, migrate
from storage.models import AuditEvent, Consult, OutboxMessage
from tests.fake_slack import FakeSlack, SlackSender

SECRET = "test-signing-secret"
TOKEN = "xoxb-test-token"

# People and channels used across the tests.
REQUESTER = "UREQ1"
OTHER_REQUESTER = "UREQ2"
RAD_ON_CALL = "URADON"
RAD_BACKUP = "URADBK"
RAD_LEAD = "URADLEAD"
RAD_MEMBER = "URADMEM"
PATH_ON_CALL = "UPATHON"
OUTSIDER = "UOUTSIDE"
RAD_CHANNEL = "CRAD"
PATH_CHANNEL = "CPATH"
CARD_CHANNEL = "CCARD"

TEST_CATALOGUE = f"""
sweep_interval = "1m"
storm_threshold = 3
post_interval = "1s"
admins = ["UADMIN"]

[urgency.stat]
acknowledge_within = "15m"
answer_within = "1h"
nudge_every = "10m"
escalate_after = 2

[urgency.urgent]
acknowledge_within = "1h"
answer_within = "4h"
nudge_every = "30m"
escalate_after = 2

[urgency.routine]
acknowledge_within = "4h"
answer_within = "24h"
nudge_every = "2h"
escalate_after = 2

[[services]]
key = "radiology"
name = "Radiology"
prefix = "RAD"
aliases = ["rad", "imaging"]
channel = "{RAD_CHANNEL}"
on_call = "{RAD_ON_CALL}"
backup = "{RAD_BACKUP}"
leads = ["{RAD_LEAD}"]

[[services.intake]]
key = "accession"
label = "Study / accession number"
required = true

[[services]]
key = "pathology"
name = "Pathology"
prefix = "PATH"
aliases = ["path"]
channel = "{PATH_CHANNEL}"
on_call = "{PATH_ON_CALL}"
backup = "UPATHBK"
leads = ["UPATHLEAD"]

[[services]]
key = "cardiology"
name = "Cardiology"
prefix = "CARD"
aliases = ["cards"]
channel = "{CARD_CHANNEL}"
on_call = "UCARDON"
backup = "UCARDBK"
leads = ["UCARDLEAD"]
"""


def use_postgres() -> bool:
    return os.environ.get("CARELOOP_TEST_DB", "sqlite").lower() in ("postgres", "postgresql")


PG_ADMIN_URL = os.environ.get(
    "CARELOOP_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


class Database:
    """A fresh database per test run: a migrated SQLite template copied per test, or one
    PostgreSQL database created for the run and emptied between tests."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.pg_name: str | None = None
        if use_postgres():
            self.pg_name = f"careloop_test_{uuid.uuid4().hex[:10]}"
            admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{self.pg_name}"'))
            admin.dispose()
            self.template_url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{self.pg_name}"
        else:
            self.template_url = f"sqlite:///{workdir / 'template.db'}"
        engine = create_db_engine(self.template_url)
        migrate(engine)
        engine.dispose()
        if self.pg_name:
            self._pg = create_engine(self.template_url, poolclass=NullPool)
            self._empty = self._emptying_statements()

    def _emptying_statements(self) -> str:
        """What empties the PostgreSQL database between tests: a DELETE per table the
        migrations made (children first), then every sequence restarted, the services'
        reference sequences (made at run time, `storage.creation`) among them, as TRUNCATE
        ... RESTART IDENTITY did, at a tenth of its cost on tables this small. The tables
        come from the database itself, so a table no test module imported is emptied too.
        A table the migrations left rows in (`alembic_version`, `report_days_gate`'s one
        row) keeps them: the code expects them there, as in a migrated production database."""
        tables = MetaData()
        tables.reflect(self._pg)
        with self._pg.connect() as conn:
            seeded = {
                t.name
                for t in tables.sorted_tables
                if conn.execute(select(literal(1)).select_from(t).limit(1)).first()
            }
        deletes = [
            f'DELETE FROM "{t.name}"'
            for t in reversed(tables.sorted_tables)
            if t.name not in seeded
        ]
        restarts = (
            "DO $$ DECLARE s record; BEGIN FOR s IN SELECT sequencename FROM pg_sequences "
            "WHERE schemaname = current_schema() LOOP "
            "EXECUTE 'ALTER SEQUENCE ' || quote_ident(s.sequencename) || ' RESTART'; END LOOP; END $$"
        )
        return "; ".join([*deletes, restarts])

    def fresh_url(self) -> str:
        if self.pg_name:
            with self._pg.begin() as conn:
                conn.exec_driver_sql(self._empty)
            return self.template_url
        target = self.workdir / f"t-{uuid.uuid4().hex[:8]}.db"
        shutil.copy(self.workdir / "template.db", target)
        return f"sqlite:///{target}"

    def drop(self) -> None:
        if self.pg_name:
            self._pg.dispose()
            admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
            try:
                with admin.connect() as conn:
                    # DROP DATABASE waits for every backend of the cluster to take a signal;
                    # one stuck in a client's COPY (another program's) never does.
                    conn.execute(text("SET statement_timeout = '15s'"))
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)'))
            except OperationalError as exc:
                warnings.warn(f"left {self.pg_name} behind: {exc.orig}", stacklevel=1)
            finally:
                admin.dispose()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def server_activate(self) -> None:
        """Listen with a timeout on `accept`: a connection that is gone between the poll
        and the accept then costs a second instead of a serve loop (and the `shutdown`
        waiting for it) blocked for good. Accepted connections stay blocking."""
        super().server_activate()
        self.socket.settimeout(1.0)


@dataclass
class Bot:
    """A running bot under test."""

    services: Services
    slack: FakeSlack
    sender: SlackSender
    clock: FakeClock
    url: str
    server: Any
    thread: threading.Thread

    # ---- acting as Slack / as users
    def command(self, text: str, *, user: str = REQUESTER, **kw: Any) -> Any:
        return self.sender.command(text, user=user, **kw)

    def click(self, action_id: str, value: str, *, user: str, **kw: Any) -> Any:
        return self.sender.block_action(action_id, user=user, value=value, **kw)

    def thread_event(self, ref: str, text: str, *, user: str, ts: str | None = None) -> dict:
        """A `message` event as Slack sends it for a reply in the consult's thread."""
        consult = self.consult(ref)
        return {
            "type": "message",
            "channel": consult.channel,
            "user": user,
            "text": text,
            "ts": ts or f"{time.time():.6f}",
            "thread_ts": consult.channel_ts,
            "channel_type": "channel",
        }

    def reply(self, ref: str, text: str, *, user: str, event_id: str | None = None) -> Any:
        return self.sender.event(self.thread_event(ref, text, user=user), event_id=event_id)

    # ---- observing
    def consult(self, ref: str) -> Consult:
        with self.services.sessions() as s:
            c = s.execute(select(Consult).where(Consult.ref == ref)).scalar_one()
            s.expunge(c)
            return c

    def consults(self) -> list[Consult]:
        with self.services.sessions() as s:
            rows = list(s.execute(select(Consult).order_by(Consult.id)).scalars())
            for r in rows:
                s.expunge(r)
            return rows

    def audit(self, ref: str) -> list[str]:
        with self.services.sessions() as s:
            c = s.execute(select(Consult).where(Consult.ref == ref)).scalar_one()
            return [
                a.action
                for a in s.execute(
                    select(AuditEvent).where(AuditEvent.consult_id == c.id).order_by(AuditEvent.id)
                ).scalars()
            ]

    def pending(self) -> int:
        with self.services.sessions() as s:
            return int(
                s.execute(
                    select(func.count())
                    .select_from(OutboxMessage)
                    .where(OutboxMessage.status.in_(("pending", "sending")))
                ).scalar_one()
            )

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until the dispatcher has delivered everything it can (no sleeping blind)."""
        assert wait_until(lambda: self.pending() == 0, timeout), (
            f"outbox did not drain: {self.pending()} pending; calls: "
            f"{[c.method for c in self.slack.calls][-20:]}"
        )

    def sweep(self) -> SweepResult:
        svc = self.services
        return sweep(
            sessions=svc.sessions,
            catalogue=svc.catalogue,
            clock=svc.clock,
            outbox=svc.outbox,
            on_call=svc.consults.roster,
        )

    def card(self, ref: str) -> dict[str, Any]:
        c = self.consult(ref)
        msg = self.slack.message(c.channel, c.channel_ts)
        assert msg is not None, f"no channel message for {ref}"
        return msg

    def dm_texts(self, user: str) -> list[str]:
        return [_flatten(m) for m in self.slack.dms(user)]

    def thread_texts(self, ref: str) -> list[str]:
        c = self.consult(ref)
        return [
            _flatten(m)
            for m in self.slack.thread(c.channel, c.channel_ts)
            if m.get("ts") != c.channel_ts
        ]

    def open(
        self,
        text: str = "cards stat MRN 12345: chest pain, troponin rising?",
        *,
        user: str = REQUESTER,
    ) -> str:
        """Open a consult with the quick form; return its reference once posted."""
        before = len(self.consults())
        resp = self.command(text, user=user)
        assert resp.status == 200, resp.body
        consults = self.consults()
        assert len(consults) == before + 1, f"no consult created: {resp.body!r}"
        ref = consults[-1].ref
        self.settle()
        return ref

    def stop(self) -> None:
        self.services.dispatcher.stop()
        self.server.shutdown()
        self.server.server_close()
        self.services.engine.dispose()


def _flatten(message: dict[str, Any]) -> str:
    parts = [str(message.get("text") or "")]
    for block in message.get("blocks") or []:
        if block.get("text"):
            parts.append(str(block["text"].get("text", "")))
        for f in block.get("fields") or []:
            parts.append(str(f.get("text", "")))
        for e in block.get("elements") or []:
            if isinstance(e.get("text"), dict):
                parts.append(str(e["text"].get("text", "")))
            elif isinstance(e.get("text"), str):
                parts.append(e["text"])
    return "\n".join(parts)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll a condition (10 ms) until it holds or the timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def start_bot(
    db_url: str,
    slack: FakeSlack,
    *,
    catalogue: Catalogue | None = None,
    clock: FakeClock | None = None,
    dispatcher: bool = True,
    **settings_overrides: Any,
) -> Bot:
    """Build the services and the WSGI app exactly as `serve` does, on port 0."""
    settings = Settings(
        SLACK_BOT_TOKEN=TOKEN,
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=slack.url,
        DATABASE_URL=db_url,
        CONSULT_CONFIG="unused.toml",
        **settings_overrides,
    )
    clock = clock or FakeClock()
    services = build_services(
        settings,
        catalogue=catalogue or parse_catalogue(TEST_CATALOGUE, "test.toml"),
        clock=clock,
        run_migrations=False,
    )
    services.dispatcher.poll_interval = 0.05
    services.dispatcher.standby_interval = 0.05
    wsgi = build_wsgi(services)
    server = make_server(
        "127.0.0.1", 0, wsgi, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
    )
    # `shutdown()` waits for the serve loop to look at its flag, which it does every
    # `poll_interval` (0.5 s by default): poll every 20 ms so stopping a bot costs ~nothing.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/slack/events"
    if dispatcher:
        services.dispatcher.start()
    slack.set_members(RAD_CHANNEL, [RAD_ON_CALL, RAD_BACKUP, RAD_LEAD, RAD_MEMBER])
    slack.set_members(PATH_CHANNEL, [PATH_ON_CALL])
    sender = SlackSender(url, SECRET, response_url_factory=slack.response_url)
    return Bot(services, slack, sender, clock, url, server, thread)
