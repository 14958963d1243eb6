"""The bot as the demo runs it: ``python -m bot serve`` and ``python -m bot report`` as child
processes, with demo settings only (a fresh SQLite database, the demo catalogue, the local
Slack stand-in) in a working directory of their own."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from bot.dev.demo.records import StepFailed

TOKEN = "xoxb-careloop-demo"
HEALTHY = "bot answers GET /healthz"


class BotProcess:
    """The bot's files in `workdir` (database, catalogue, log) and its serving process."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.secret = secrets.token_hex(16)
        self.db_path = workdir / "careloop-demo.db"
        self.catalogue_path = workdir / "consult-demo.toml"
        self.log_path = workdir / "bot.log"
        self.api_url = "http://127.0.0.1:9/api/"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def events_url(self) -> str:
        """The bot's request URL (where Slack sends commands, actions and events)."""
        return f"http://127.0.0.1:{self.port}/slack/events"

    def env(self) -> dict[str, str]:
        """The environment of the bot and report processes: demo settings only."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SLACK_", "DATABASE_", "CONSULT_", "WEB_", "LOG_"))
            and k not in ("PORT", "HOST")
        }
        package_root = str(Path(__file__).resolve().parents[3])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        env.update(
            SLACK_BOT_TOKEN=TOKEN,
            SLACK_SIGNING_SECRET=self.secret,
            SLACK_API_URL=self.api_url,
            DATABASE_URL=f"sqlite:///{self.db_path}",
            CONSULT_CONFIG=str(self.catalogue_path),
            LOG_LEVEL="WARNING",
            LOG_FORMAT="text",
            HOST="127.0.0.1",
            WEB_CONCURRENCY="1",
            PYTHONUNBUFFERED="1",
        )
        return env

    def launch(self) -> None:
        """Start ``python -m bot serve`` on a free port, its output going to the log."""
        self.port = free_port()
        self._log = open(self.log_path, "wb")  # closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--port", str(self.port)],
            env=self.env(),
            cwd=self.workdir,  # no stray .env from where the demo was started
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def wait_healthy(self, timeout: float = 30) -> None:
        """Wait until the bot answers GET /healthz; StepFailed when it exits or is silent."""
        health = f"http://127.0.0.1:{self.port}/healthz"
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive("starting the bot")
            try:
                with urllib.request.urlopen(health, timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise StepFailed(HEALTHY, f"no answer within {timeout:.0f} s")
            time.sleep(0.05)

    def check_alive(self, step: str) -> None:
        """StepFailed naming `step` if the bot has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise StepFailed(
                step, f"the bot exited with code {self.proc.returncode}:\n{self.log_tail()}"
            )

    def stop(self) -> int | None:
        """SIGTERM the bot and wait for it (kill after 15 s); returns its exit code."""
        code = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait(timeout=5)
        elif self.proc is not None:
            code = self.proc.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def log_tail(self, lines: int = 15) -> str:
        """The last `lines` lines of the bot's log (without bolt's expected token notices)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        # bolt's two start-up notices about tokens are expected; leave them out.
        kept = [line for line in text.splitlines() if "slack_bolt.App: As " not in line]
        return "\n".join(kept[-lines:])

    def report(self, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``python -m bot report --format table`` on the demo database."""
        return subprocess.run(
            [sys.executable, "-m", "bot", "report", "--format", "table"],
            env=self.env(),
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
