"""The bot as it is deployed: `python -m bot serve` (and plain `python -m bot`) as real
processes, migrated by themselves, served by gunicorn, scheduled by APScheduler, talking to
the fake Slack over HTTP, stopped by SIGTERM and crashed by kill -9. SQLite by default,
PostgreSQL with CARELOOP_TEST_DB=postgres."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, inspect, select
from sqlalchemy.orm import Session

from bot.dev.fakeslack import FakeSlack, dispatch
from bot.dev.fakeslack.requests import SlackSender
from bot.slack.ids import OUTBOX_EVENT_TYPE, ActionId
from storage.db import create_db_engine
from storage.models import AuditEvent, Consult, OutboxMessage
from tests.harness import use_postgres
from tests.procs import (
    BACKUP,
    CARD_CHANNEL,
    ON_CALL,
    SECRET,
    Procs,
    bot_env,
    drop_postgres,
    free_port,
    fresh_postgres,
    wait_until,
    write_catalogue,
)

REQUESTER = "UREQ1"


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture
def empty_db_url(tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all (a new SQLite file, or a new PostgreSQL database)."""
    if use_postgres():
        with fresh_postgres() as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path / 'empty.db'}"


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    with Procs(tmp_path) as running:
        yield running


@pytest.fixture
def catalogue(tmp_path: Path) -> Path:
    return write_catalogue(tmp_path / "consult.toml")


# ---------------------------------------------------------------------------- helpers
def engine_for(url: str) -> Engine:
    return create_db_engine(url, pool_size=2)


def consults(engine: Engine) -> list[Consult]:
    with Session(engine) as s:
        return list(s.scalars(select(Consult).order_by(Consult.id)))


def consult(engine: Engine, ref: str) -> Consult:
    with Session(engine) as s:
        return s.scalars(select(Consult).where(Consult.ref == ref)).one()


def outbox_busy(engine: Engine) -> int:
    with engine.connect() as conn:
        return len(
            conn.execute(
                select(OutboxMessage.id).where(OutboxMessage.status.in_(("pending", "sending")))
            ).all()
        )


def nudge_rows(engine: Engine, consult_id: int) -> list[tuple[int, str]]:
    """(outbox id, status) of every thread nudge queued for a consult."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(OutboxMessage.id, OutboxMessage.status).where(
                OutboxMessage.consult_id == consult_id, OutboxMessage.dedupe_key.like("nudge:%")
            )
        ).all()
    return [(int(r.id), str(r.status)) for r in rows]


def nudge_times(engine: Engine, consult_id: int) -> list[float]:
    """When the sweep nudged a consult (from the audit trail), as epoch seconds."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(AuditEvent.at)
            .where(
                AuditEvent.consult_id == consult_id, AuditEvent.action.in_(("nudged", "escalated"))
            )
            .order_by(AuditEvent.id)
        ).all()
    return [r.at.timestamp() for r in rows]


def words(message: dict[str, Any]) -> str:
    return str(message.get("text") or "") + " " + json.dumps(message.get("blocks") or [])


def ack_nudges(slack: FakeSlack, channel_ts: str) -> list[dict[str, Any]]:
    """Acknowledgement nudges posted in one consult's thread."""
    return [
        m
        for m in slack.messages(CARD_CHANNEL)
        if m["thread_ts"] == channel_ts and "has not been acknowledged" in words(m)
    ]


def posted_outbox_ids(slack: FakeSlack) -> list[int]:
    """The outbox id carried by every successful chat.postMessage the fake received."""
    ids = []
    for call in slack.calls_to("chat.postMessage"):
        meta = call.args.get("metadata") or {}
        if call.ok and meta.get("event_type") == OUTBOX_EVENT_TYPE:
            ids.append(int(meta["event_payload"]["outbox_id"]))
    return ids


def sender_for(bot: Any, slack: FakeSlack) -> SlackSender:
    return SlackSender(bot.events_url, SECRET, response_url_factory=slack.response_url)


def assert_clean_exit(bot: Any, code: int) -> None:
    assert code == 0, bot.tail()
    assert "Traceback" not in bot.output(), bot.tail()


# ---------------------------------------------------------------------------- start-up
def test_serve_migrates_an_empty_database_serves_delivers_and_stops_cleanly(
    empty_db_url: str, slack: FakeSlack, procs: Procs, catalogue: Path
):
    engine = engine_for(empty_db_url)
    try:
        assert inspect(engine).get_table_names() == []
        bot = procs.serve(bot_env(empty_db_url, slack.url, catalogue))
        bot.wait_healthy()
        tables = set(inspect(engine).get_table_names())
        assert {"consults", "outbox", "audit_events", "alembic_version"} <= tables

        resp = sender_for(bot, slack).command("cards MRN 1: chest pain?", user=REQUESTER)
        assert resp.status == 200 and "CARD-1" in resp.text, resp.text
        # The worker's dispatcher thread posts the card; the consult learns its message ts.
        assert wait_until(lambda: consult(engine, "CARD-1").channel_ts, 15), bot.tail()
        card = slack.message(CARD_CHANNEL, consult(engine, "CARD-1").channel_ts)
        assert card is not None and "CARD-1" in words(card)
        assert card["metadata"]["event_type"] == OUTBOX_EVENT_TYPE

        started = time.monotonic()
        code = bot.terminate(timeout=15)
        assert_clean_exit(bot, code)
        assert time.monotonic() - started < 10
        assert "background work stopped" in bot.output()
    finally:
        engine.dispose()


def test_a_burst_of_more_requests_than_threads_is_all_served_one_per_connection(
    empty_db_url: str, slack: FakeSlack, procs: Procs, catalogue: Path
):
    """Each worker takes a connection only when a thread is free, and closes it after the
    response: 24 creates at once on 2 workers x 2 threads all get their consult."""
    env = bot_env(empty_db_url, slack.url, catalogue, WEB_CONCURRENCY="2", WEB_THREADS="2")
    bot = procs.serve(env)
    bot.wait_healthy()
    sender = sender_for(bot, slack)
    with ThreadPoolExecutor(max_workers=24) as pool:
        replies = list(
            pool.map(
                lambda n: sender.command(f"cards MRN {n}: chest pain?", user=REQUESTER),
                range(24),
            )
        )
    assert [r.status for r in replies] == [200] * 24, bot.tail()
    assert all("received" in r.text for r in replies)
    assert {r.headers.get("connection") for r in replies} == {"close"}
    engine = engine_for(empty_db_url)
    try:
        refs = sorted(c.ref for c in consults(engine))
    finally:
        engine.dispose()
    assert refs == sorted(f"CARD-{n}" for n in range(1, 25))


def test_readyz_answers_503_when_the_database_goes_away_while_healthz_stays_200(
    empty_db_url: str, slack: FakeSlack, procs: Procs, catalogue: Path
):
    """/healthz is liveness (the process serves; a restart would not bring the database
    back), /readyz readiness (the database answers, among others)."""
    if not use_postgres():
        pytest.skip("a SQLite file cannot be taken away from an open connection")
    bot = procs.serve(bot_env(empty_db_url, slack.url, catalogue))
    bot.wait_healthy()
    assert http_get(bot.port, "/readyz") == READY
    drop_postgres(empty_db_url)
    assert wait_until(
        lambda: http_get(bot.port, "/readyz") == not_ready("database unreachable"), 15
    ), bot.tail()
    assert bot.healthz() == 200
    assert bot.running()  # reports the outage; does not crash


def test_two_processes_starting_together_on_a_fresh_database_both_come_up(
    empty_db_url: str, slack: FakeSlack, procs: Procs, catalogue: Path
):
    env = bot_env(empty_db_url, slack.url, catalogue)
    first, second = procs.serve(env, name="first"), procs.serve(env, name="second")
    first.wait_healthy()
    second.wait_healthy()
    engine = engine_for(empty_db_url)
    try:
        with engine.connect() as conn:
            versions = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
        assert len(versions) == 1
        # Both serve the same database: references are handed out once across them.
        answers = [
            sender_for(bot, slack).command(f"cards MRN {i}: q?", user=REQUESTER).text
            for i, bot in enumerate((first, second), 1)
        ]
        assert "CARD-1" in answers[0] and "CARD-2" in answers[1], answers
        assert [c.ref for c in consults(engine)] == ["CARD-1", "CARD-2"]
    finally:
        engine.dispose()
    for bot in (first, second):
        assert_clean_exit(bot, bot.terminate())


# ---------------------------------------------------------------------------- bad config
def _one_line(result: Any) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0, result.stderr
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_a_wrong_catalogue_stops_start_up_with_one_line(
    tmp_path: Path, slack: FakeSlack, procs: Procs
):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        write_catalogue(tmp_path / "good.toml")
        .read_text()
        .replace('channel = "CCARD"', 'channel = "#cardiology"')
    )
    db = tmp_path / "never.db"
    line = _one_line(procs.run(["-m", "bot", "serve"], bot_env(f"sqlite:///{db}", slack.url, bad)))
    assert str(bad) in line and "services[0].channel" in line, line
    assert "'#cardiology' is not a Slack channel id" in line, line
    assert not db.exists()  # refused before touching the database


@pytest.mark.parametrize(
    ("missing", "expected"),
    [("SLACK_BOT_TOKEN", "SLACK_BOT_TOKEN"), ("SLACK_SIGNING_SECRET", "SLACK_SIGNING_SECRET")],
)
def test_missing_settings_stop_start_up_with_a_clear_message(
    missing: str, expected: str, db_url: str, slack: FakeSlack, procs: Procs, catalogue: Path
):
    env = bot_env(db_url, slack.url, catalogue, **{missing: None})
    line = _one_line(procs.run(["-m", "bot", "serve"], env))
    assert expected in line and "required" in line.lower(), line


def test_an_unreachable_database_stops_start_up_with_one_line(
    slack: FakeSlack, procs: Procs, catalogue: Path
):
    url = "postgresql://careloop:secret@127.0.0.1:9/careloop"  # discard port: nothing listens
    line = _one_line(procs.run(["-m", "bot", "serve"], bot_env(url, slack.url, catalogue)))
    assert line.startswith("database error:") and "127.0.0.1" in line, line
    assert "secret" not in line  # the password is not printed


# ---------------------------------------------------------------------------- mode choice
def test_plain_python_m_bot_with_an_app_token_uses_socket_mode(
    db_url: str, slack: FakeSlack, procs: Procs, catalogue: Path
):
    env = bot_env(
        db_url, slack.url, catalogue, SLACK_APP_TOKEN="xapp-1-test", SLACK_SIGNING_SECRET=None
    )
    bot = procs.start(["-m", "bot"], env)
    code = bot.wait(timeout=30)  # exits by itself: no thread keeps a refused process alive
    opened = slack.calls_to("apps.connections.open")
    assert len(opened) == 1 and opened[0].token == "xapp-1-test"
    assert code != 0
    out = bot.output()
    assert "Traceback" not in out, out
    last = out.strip().splitlines()[-1]
    assert last.startswith("configuration error: Socket Mode:"), out
    assert "not_allowed_token_type" in last, out
    assert "SLACK_APP_TOKEN" in last
    assert not slack.calls_to("chat.postMessage")


def test_plain_python_m_bot_without_an_app_token_serves_http(
    db_url: str, slack: FakeSlack, procs: Procs, catalogue: Path
):
    bot = procs.start(["-m", "bot"], bot_env(db_url, slack.url, catalogue, SLACK_APP_TOKEN=None))
    bot.wait_healthy()
    resp = sender_for(bot, slack).command("help", user=REQUESTER)
    assert resp.status == 200 and resp.text
    assert not slack.calls_to("apps.connections.open")
    assert_clean_exit(bot, bot.terminate())


# ---------------------------------------------------------------------------- SLA clocks
def test_unacknowledged_consult_is_nudged_then_escalated_until_acknowledged(
    db_url: str, slack: FakeSlack, procs: Procs, tmp_path: Path
):
    fast = write_catalogue(
        tmp_path / "fast.toml",
        sweep_interval="1s",
        acknowledge_within="2s",
        nudge_every="2s",
        escalate_after=1,
    )
    bot = procs.serve(bot_env(db_url, slack.url, fast))
    bot.wait_healthy()
    sender = sender_for(bot, slack)
    engine = engine_for(db_url)
    try:
        assert "CARD-1" in sender.command("cards stat MRN 1: chest pain?", user=REQUESTER).text
        assert "CARD-2" in sender.command("cards stat MRN 2: control?", user=REQUESTER).text
        assert wait_until(lambda: consult(engine, "CARD-1").channel_ts, 15), bot.tail()
        ts = consult(engine, "CARD-1").channel_ts

        # First the on-call is nudged in the thread, then the backup gets a DM.
        assert wait_until(lambda: ack_nudges(slack, ts), 15), bot.tail()
        assert f"<@{ON_CALL}>" in words(ack_nudges(slack, ts)[0])
        assert wait_until(
            lambda: any(
                "CARD-1" in words(m) and "escalated" in words(m) for m in slack.dms(BACKUP)
            ),
            15,
        ), bot.tail()
        assert any(f"<@{BACKUP}>" in words(m) for m in ack_nudges(slack, ts)[1:])

        resp = sender.block_action(
            ActionId.ACKNOWLEDGE, user=ON_CALL, value="CARD-1", channel=CARD_CHANNEL, message_ts=ts
        )
        assert resp.status == 200
        assert wait_until(lambda: consult(engine, "CARD-1").status == "acknowledged", 10)
        nudged = consult(engine, "CARD-1").nudge_count
        control = consult(engine, "CARD-2").nudge_count
        # Two more nudge intervals pass (the unacknowledged control consult shows it) ...
        assert wait_until(lambda: consult(engine, "CARD-2").nudge_count >= control + 2, 15)
        assert wait_until(lambda: outbox_busy(engine) == 0, 15)
        # ... and the acknowledged consult was not nudged again.
        assert consult(engine, "CARD-1").nudge_count == nudged
        assert len(ack_nudges(slack, ts)) == nudged
    finally:
        engine.dispose()
    assert_clean_exit(bot, bot.terminate())


def test_restart_after_kill_9_sends_one_nudge_not_a_burst_and_loses_nothing(
    db_url: str, slack: FakeSlack, procs: Procs, tmp_path: Path
):
    every = 2.0
    clocks = write_catalogue(
        tmp_path / "restart.toml",
        sweep_interval="1s",
        acknowledge_within="3s",
        nudge_every=f"{int(every)}s",
        escalate_after=100,
        storm_threshold=10,
    )
    env = bot_env(db_url, slack.url, clocks)
    bot = procs.serve(env, name="before")
    bot.wait_healthy()
    sender = sender_for(bot, slack)
    engine = engine_for(db_url)
    try:
        for i in (1, 2, 3):
            assert f"CARD-{i}" in sender.command(f"cards stat MRN {i}: q{i}?", user=REQUESTER).text
        # Everything queued so far is delivered (nothing left leased) before the crash.
        assert wait_until(
            lambda: all(c.channel_ts for c in consults(engine)) and outbox_busy(engine) == 0, 15
        ), bot.tail()
        bot.kill()
        assert not bot.running()
        before = {c.ref: c.nudge_count for c in consults(engine)}
        posted_before = len(posted_outbox_ids(slack))

        # Down for more than three nudge intervals past the due time.
        resume_after = max(c.next_nudge_at.timestamp() for c in consults(engine)) + 3 * every
        while time.time() < resume_after:
            time.sleep(0.1)

        restarted = time.time()
        again = procs.serve(env, name="after")
        again.wait_healthy()
        healthy = time.time()
        # Two nudge slots after the restart, for every consult; then a clean stop.
        assert wait_until(
            lambda: all(c.nudge_count >= before[c.ref] + 2 for c in consults(engine)), 20
        ), again.tail()
        assert_clean_exit(again, again.terminate())

        rows = consults(engine)
        assert [c.ref for c in rows] == ["CARD-1", "CARD-2", "CARD-3"]  # none lost or doubled
        for c in rows:
            times = [t for t in nudge_times(engine, c.id) if t >= restarted]
            assert len(times) == c.nudge_count - before[c.ref]
            # One nudge straight after the restart, the next a full interval later: no
            # catching up on the slots missed while the bot was down.
            assert times[0] < healthy + every, (times, restarted, healthy)
            gaps = [round(b - a, 3) for a, b in zip(times, times[1:], strict=False)]
            assert all(g >= every - 0.01 for g in gaps), f"{c.ref} nudged in a burst: {gaps}"
            # Each slot was queued once, and what was delivered was delivered once.
            rows_ = nudge_rows(engine, c.id)
            assert len(rows_) == c.nudge_count
            sent = sorted(i for i, status in rows_ if status == "sent")
            in_thread = [
                m["metadata"]["event_payload"]["outbox_id"] for m in ack_nudges(slack, c.channel_ts)
            ]
            assert sorted(in_thread) == sent and len(sent) >= c.nudge_count - 1
            cards = [m for m in slack.messages(CARD_CHANNEL) if m["ts"] == c.channel_ts]
            assert len(cards) == 1
        ids = posted_outbox_ids(slack)
        assert len(ids) > posted_before
        assert [i for i, n in Counter(ids).items() if n > 1] == []  # no post delivered twice
        top_level = [m for m in slack.messages(CARD_CHANNEL) if not m["thread_ts"]]
        assert len(top_level) == 3
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------- catalogue vs data
def _add_consult(s: Session, ref: str, service: str, status: str) -> None:
    now = datetime.now(UTC)
    seq = int(ref.rsplit("-", 1)[1])
    s.add(
        Consult(
            ref=ref,
            service=service,
            seq=seq,
            urgency="stat",
            patient=f"MRN 9{seq}",
            question=f"secret question {seq}?",
            requester=REQUESTER,
            status=status,
            channel="COLD",
            created_at=now - timedelta(minutes=10 - seq),
            next_nudge_at=now if status == "open" else None,
        )
    )


@pytest.mark.parametrize("command", ["serve", "socket"])
def test_unfinished_consults_of_a_service_missing_from_the_catalogue_stop_start_up(
    command: str, db_url: str, slack: FakeSlack, procs: Procs, catalogue: Path
):
    engine = engine_for(db_url)
    try:
        with Session(engine) as s, s.begin():
            _add_consult(s, "OLD-1", "oldsvc", "open")
            _add_consult(s, "OLD-2", "oldsvc", "closed")  # finished: no longer matters
            _add_consult(s, "OLD-3", "oldsvc", "answered")  # the requester may still reopen
            _add_consult(s, "CARD-1", "cardiology", "open")  # still in the catalogue
    finally:
        engine.dispose()
    # WARNING: the refusal is the only line, not after "database schema is current".
    env = bot_env(db_url, slack.url, catalogue, SLACK_APP_TOKEN="xapp-1-test", LOG_LEVEL="WARNING")
    line = _one_line(procs.run(["-m", "bot", command], env))
    assert line.startswith(f"configuration error: {catalogue}:"), line
    assert "'oldsvc' (2 unfinished consults: OLD-1, OLD-3)" in line, line
    assert "same key" in line and "closed" in line, line
    assert "OLD-2" not in line and "cardiology" not in line and "CARD-1" not in line, line
    assert "MRN" not in line and "secret" not in line, line  # references only, no PHI
    assert not slack.calls_to("apps.connections.open")  # refused before connecting


# ---------------------------------------------------------------------------- Socket Mode health
class SocketModeEndpoint:
    """Slack's Socket Mode websocket, standard library only (the fake Slack has none): the
    fake's apps.connections.open hands out its ws:// URL (fixture `socket_link`). It completes
    the websocket handshake, or refuses it with 503 while `accepting` is False, answers pings
    with pongs, and `drop()` closes every open connection with a close frame."""

    _GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self) -> None:
        self.accepting = True
        self.handshakes = 0
        self.refused = 0
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"ws://127.0.0.1:{self._listener.getsockname()[1]}/link/?ticket=test"
        threading.Thread(target=self._accept, daemon=True).start()

    def connected(self) -> int:
        with self._lock:
            return len(self._open)

    def drop(self) -> None:
        """Close every open websocket, as Slack does (a close frame, then the socket)."""
        with self._lock:
            conns, self._open = self._open, []
        for conn in conns:
            try:
                conn.sendall(b"\x88\x02" + struct.pack("!H", 1001))
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.accepting = False
        self.drop()
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    request += chunk
                if not self.accepting:
                    self.refused += 1
                    conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
                    return
                headers = {}
                for line in request.decode().split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                digest = hashlib.sha1((headers["sec-websocket-key"] + self._GUID).encode()).digest()
                with self._lock:  # counted before the bot can know it is connected
                    self._open.append(conn)
                    self.handshakes += 1
                conn.sendall(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                    + base64.b64encode(digest)
                    + b"\r\n\r\n"
                )
                while True:
                    opcode, payload = self._frame(conn)
                    if opcode == 0x9:  # ping: pong with the same payload, unmasked
                        conn.sendall(bytes([0x8A, len(payload)]) + payload)
                    elif opcode == 0x8:
                        return
            except (OSError, KeyError, ValueError):
                return
            finally:
                with self._lock:
                    if conn in self._open:
                        self._open.remove(conn)

    @staticmethod
    def _frame(conn: socket.socket) -> tuple[int, bytes]:
        """One client frame (clients always mask): its opcode and unmasked payload."""

        def exactly(n: int) -> bytes:
            data = b""
            while len(data) < n:
                chunk = conn.recv(n - len(data))
                if not chunk:
                    raise ConnectionError("closed")
                data += chunk
            return data

        first, second = exactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", exactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", exactly(8))
        mask = exactly(4) if second & 0x80 else b"\0\0\0\0"
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(exactly(length)))
        return first & 0x0F, payload


@pytest.fixture
def socket_link(slack: FakeSlack, monkeypatch: pytest.MonkeyPatch) -> Iterator[SocketModeEndpoint]:
    """A Socket Mode websocket the fake Slack's apps.connections.open points at."""
    endpoint = SocketModeEndpoint()
    monkeypatch.setitem(
        dispatch.METHODS, "apps.connections.open", lambda _fake, _args: {"url": endpoint.url}
    )
    yield endpoint
    endpoint.close()


def socket_env(db_url: str, slack: FakeSlack, catalogue: Path, health_port: int) -> dict[str, str]:
    return bot_env(
        db_url,
        slack.url,
        catalogue,
        SLACK_APP_TOKEN="xapp-1-test",
        SLACK_SIGNING_SECRET=None,
        HEALTH_PORT=str(health_port),
    )


READY = (200, '{"status": "ready"}')


def not_ready(reason: str) -> tuple[int, str]:
    """What /readyz answers when the process should get no work: 503 and one JSON line."""
    return 503, json.dumps({"status": "not ready", "reason": reason})


def http_get(port: int, path: str = "/healthz", method: str = "GET") -> tuple[int | None, str]:
    """Status and body of one request to 127.0.0.1:port, or (None, "") when nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    except OSError:
        return None, ""
    finally:
        conn.close()


def test_socket_mode_health_port_is_ready_once_connected_404_elsewhere_and_not_when_slack_drops(
    db_url: str, slack: FakeSlack, procs: Procs, catalogue: Path, socket_link: SocketModeEndpoint
):
    health = free_port()
    bot = procs.start(["-m", "bot", "socket"], socket_env(db_url, slack, catalogue, health))
    assert wait_until(lambda: http_get(health, "/readyz") == READY, 30), bot.tail()
    assert http_get(health) == (200, "ok")
    status, scrape = http_get(health, "/metrics")
    assert status == 200 and "careloop_database_up 1.0" in scrape
    # Logged once background work has started, which may be just after the first 200.
    assert wait_until(lambda: "connected in Socket Mode" in bot.output(), 10), bot.tail()
    assert socket_link.connected() == 1
    assert slack.calls_to("apps.connections.open")[0].token == "xapp-1-test"
    assert http_get(health, "/") == (404, "not found")
    assert http_get(health, "/slack/events", method="POST") == (404, "not found")
    assert http_get(health, "/healthz", method="POST") == (404, "not found")
    assert http_get(health, "/healthz", method="HEAD") == (200, "")
    assert http_get(bot.port) == (None, "")  # PORT is not used in Socket Mode

    # Slack closes the websocket and refuses new ones: down until it lets the bot back in.
    socket_link.accepting = False
    socket_link.drop()
    down = not_ready("slack connection down")
    assert wait_until(lambda: http_get(health, "/readyz") == down, 15), bot.tail()
    assert http_get(health) == (200, "ok")  # alive: slack_sdk keeps reconnecting
    assert bot.running()

    assert_clean_exit(bot, bot.terminate())
    assert http_get(health) == (None, "")  # the port is closed with the rest
    assert "health endpoint" not in bot.output()  # no request log, no errors


def test_plain_python_m_bot_health_says_slack_connection_down_until_the_websocket_opens(
    db_url: str, slack: FakeSlack, procs: Procs, catalogue: Path, socket_link: SocketModeEndpoint
):
    """slack_sdk does not raise when the websocket handshake fails: it logs and retries (every
    10 s). The process stays up, and /readyz says why it is not ready."""
    socket_link.accepting = False
    health = free_port()
    bot = procs.start(["-m", "bot"], socket_env(db_url, slack, catalogue, health))
    assert wait_until(lambda: socket_link.refused >= 1, 30), bot.tail()
    down = not_ready("slack connection down")
    assert wait_until(lambda: http_get(health, "/readyz") == down, 10), bot.tail()
    assert http_get(health) == (200, "ok")
    assert wait_until(lambda: "websocket not connected yet" in bot.output(), 10), bot.tail()
    assert bot.running()

    socket_link.accepting = True  # the next retry gets in
    assert wait_until(lambda: http_get(health, "/readyz") == READY, 25), bot.tail()
    assert socket_link.handshakes == 1
    assert_clean_exit(bot, bot.terminate())


def test_socket_mode_readyz_answers_503_when_the_database_goes_away(
    empty_db_url: str,
    slack: FakeSlack,
    procs: Procs,
    catalogue: Path,
    socket_link: SocketModeEndpoint,
):
    if not use_postgres():
        pytest.skip("a SQLite file cannot be taken away from an open connection")
    health = free_port()
    bot = procs.start(["-m", "bot", "socket"], socket_env(empty_db_url, slack, catalogue, health))
    assert wait_until(lambda: http_get(health, "/readyz") == READY, 30), bot.tail()
    drop_postgres(empty_db_url)
    down = not_ready("database unreachable")
    assert wait_until(lambda: http_get(health, "/readyz") == down, 15), bot.tail()
    assert http_get(health) == (200, "ok")
    assert bot.running()  # reports the outage; does not crash


def test_a_health_port_already_in_use_stops_socket_mode_with_one_line(
    db_url: str, slack: FakeSlack, procs: Procs, catalogue: Path, socket_link: SocketModeEndpoint
):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        env = dict(socket_env(db_url, slack, catalogue, port), LOG_LEVEL="ERROR")
        line = _one_line(procs.run(["-m", "bot", "socket"], env))
    assert line.startswith(
        f"configuration error: HEALTH_PORT: cannot listen on 127.0.0.1:{port}:"
    ), line
    assert not slack.calls_to("apps.connections.open")  # refused before connecting


def test_http_mode_ignores_health_port(
    db_url: str, slack: FakeSlack, procs: Procs, catalogue: Path
):
    health = free_port()
    bot = procs.serve(bot_env(db_url, slack.url, catalogue, HEALTH_PORT=str(health)))
    bot.wait_healthy()  # /healthz on PORT, as always
    assert http_get(health) == (None, "")
    assert_clean_exit(bot, bot.terminate())
