"""Real bot processes for tests and benchmarks: `python -m bot serve` (or any `python -m ...`)
as a subprocess with its own environment, a free port, its output captured to a file, a
wait for GET /healthz, SIGTERM for a clean stop and SIGKILL (of the whole process group,
gunicorn workers included) for a crash.

    with Procs(tmp_path) as procs:
        bot = procs.serve(env=bot_env(db_url, slack.url, catalogue))
        bot.wait_healthy()
        ...
        assert bot.terminate() == 0
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[1]
SECRET = "proc-test-signing-secret"
TOKEN = "xoxb-proc-test-token"

# Every variable bot.settings reads: a subprocess gets only what a test gives it.
_BOT_VARS = (
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
    "SLACK_API_URL",
    "DATABASE_URL",
    "CONSULT_CONFIG",
    "PORT",
    "HOST",
    "HEALTH_PORT",
    "WEB_CONCURRENCY",
    "WEB_THREADS",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "SLACK_TIMEOUT",
    "MAX_BODY_BYTES",
    "SLACK_BOT_TOKEN_FILE",
    "SLACK_SIGNING_SECRET_FILE",
    "SLACK_APP_TOKEN_FILE",
    "DATABASE_URL_FILE",
    "READY_OUTBOX_MAX_AGE",
    "PROMETHEUS_MULTIPROC_DIR",
)

# The cardiology service of tests.harness, alone, with SLA clocks a test can choose.
CATALOGUE = """
sweep_interval = "{sweep_interval}"
storm_threshold = {storm_threshold}
post_interval = "1s"
admins = ["UADMIN"]

[digest]
enabled = false

[urgency.stat]
acknowledge_within = "{acknowledge_within}"
answer_within = "{answer_within}"
nudge_every = "{nudge_every}"
escalate_after = {escalate_after}

[[services]]
key = "cardiology"
name = "Cardiology"
prefix = "CARD"
aliases = ["cards"]
channel = "CCARD"
on_call = "UCARDON"
backup = "UCARDBK"
leads = ["UCARDLEAD"]
"""
CARD_CHANNEL, ON_CALL, BACKUP = "CCARD", "UCARDON", "UCARDBK"


def write_catalogue(
    path: Path,
    *,
    sweep_interval: str = "1m",
    acknowledge_within: str = "15m",
    answer_within: str = "1h",
    nudge_every: str = "10m",
    escalate_after: int = 2,
    storm_threshold: int = 5,
) -> Path:
    """A one-service catalogue (cardiology, channel CCARD) with the given clocks."""
    path.write_text(
        CATALOGUE.format(
            sweep_interval=sweep_interval,
            acknowledge_within=acknowledge_within,
            answer_within=answer_within,
            nudge_every=nudge_every,
            escalate_after=escalate_after,
            storm_threshold=storm_threshold,
        )
    )
    return path


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bot_env(
    database_url: str | None = None,
    slack_api_url: str | None = None,
    catalogue: Path | str | None = None,
    **extra: str | None,
) -> dict[str, str]:
    """The environment of a bot process: this one's minus every CareLoop variable, plus the
    test token/secret, loopback binding, text logs and `extra` (None removes a variable)."""
    env = {k: v for k, v in os.environ.items() if k not in _BOT_VARS}
    env.update(
        SLACK_BOT_TOKEN=TOKEN,
        SLACK_SIGNING_SECRET=SECRET,
        HOST="127.0.0.1",
        LOG_FORMAT="json",
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    if slack_api_url is not None:
        env["SLACK_API_URL"] = slack_api_url
    if catalogue is not None:
        env["CONSULT_CONFIG"] = os.fspath(catalogue)
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    # The repository on the path whatever the cwd (the bench's bare app lives in bench/).
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.02) -> bool:
    """Poll `predicate` until it is truthy or `timeout` seconds pass; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


class BotProcess:
    """One running `python -m ...` process in its own process group."""

    def __init__(
        self, args: Sequence[str], env: dict[str, str], log_path: Path, cwd: Path, port: int
    ) -> None:
        self.args = list(args)
        self.port = port
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in cleanup()
        self.proc = subprocess.Popen(
            [sys.executable, *self.args],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill -9 takes the workers too
        )

    # ------------------------------------------------------------------ addresses
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def events_url(self) -> str:
        return self.base_url + "/slack/events"

    @property
    def pid(self) -> int:
        return self.proc.pid

    # ------------------------------------------------------------------ observing
    def output(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def running(self) -> bool:
        return self.proc.poll() is None

    def healthz(self, timeout: float = 2.0) -> int | None:
        """Status of GET /healthz, or None when nothing answers."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", "/healthz", headers={"Connection": "close"})
            resp = conn.getresponse()
            resp.read()
            return resp.status
        except OSError:
            return None
        finally:
            conn.close()

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Wait for /healthz to answer 200; fail at once (with the output) if it exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.args} exited with {self.proc.returncode} before it was healthy:\n"
                    + self.tail()
                )
            if self.healthz(timeout=1.0) == 200:
                return
            time.sleep(0.05)
        raise AssertionError(f"{self.args} not healthy after {timeout}s:\n{self.tail()}")

    # ------------------------------------------------------------------ stopping
    def wait(self, timeout: float) -> int:
        """Wait for the process to exit on its own; its exit code."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self.args} still running after {timeout}s:\n{self.tail()}"
            ) from None

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM (what a supervisor sends) and wait; its exit code. Kills and fails if it
        does not stop within `timeout`."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        """kill -9 of the whole process group: the master and every worker, no clean-up."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def cleanup(self) -> None:
        """Make sure nothing of this process is left (also orphaned workers)."""
        self.kill()
        if not self._log.closed:
            self._log.close()


class Procs:
    """Starts bot processes and kills whatever is still running on exit (use as a fixture)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[BotProcess] = []

    def start(
        self,
        args: Sequence[str],
        env: dict[str, str],
        *,
        port: int | None = None,
        name: str | None = None,
    ) -> BotProcess:
        """`python <args>` with `env` (PORT set to a free port unless it is given)."""
        port = port or free_port()
        env = dict(env, PORT=str(port))
        name = name or f"proc{len(self.started) + 1}"
        proc = BotProcess(args, env, self.workdir / f"{name}.log", self.workdir, port)
        self.started.append(proc)
        return proc

    def serve(self, env: dict[str, str], **kw: Any) -> BotProcess:
        return self.start(["-m", "bot", "serve"], env, **kw)

    def run(self, args: Sequence[str], env: dict[str, str], timeout: float = 30.0) -> Any:
        """Run to completion; a CompletedProcess with text output."""
        return subprocess.run(
            [sys.executable, *args],
            env=env,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def close(self) -> None:
        for proc in self.started:
            proc.cleanup()

    def __enter__(self) -> Procs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------- databases
PG_ADMIN_URL = os.environ.get(
    "CARELOOP_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@contextmanager
def fresh_postgres(prefix: str = "careloop_proc") -> Iterator[str]:
    """A new, empty PostgreSQL database for the block (dropped afterwards); its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        drop_postgres(name)
        admin.dispose()


def drop_postgres(name_or_url: str) -> None:
    """Drop a PostgreSQL database now, disconnecting whoever is still connected."""
    name = name_or_url.rsplit("/", 1)[-1]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
