"""What the in-process benches share: timing a loop in wall-clock and CPU seconds, with an
optional cProfile around it, printing the time per operation and that profile; and the CPU
time of a local PostgreSQL's backends for the bench's database; the WSGI environ of a
request as Slack sends it, for the benches that call the app in process."""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text


def timed(loop: Callable[[], None], profile: bool) -> tuple[float, float, cProfile.Profile | None]:
    """Run `loop` once; (wall seconds, CPU seconds, the profile when `profile`)."""
    prof = cProfile.Profile() if profile else None
    wall, cpu = time.perf_counter(), time.process_time()
    if prof:
        prof.enable()
    loop()
    if prof:
        prof.disable()
    return time.perf_counter() - wall, time.process_time() - cpu, prof


def print_profile(prof: cProfile.Profile | None, sort: str, lines: int) -> None:
    """The `lines` first entries of the profile by `sort`, if one was taken."""
    if prof:
        pstats.Stats(prof).sort_stats(sort).print_stats(lines)


def measure(
    label: str, count: int, unit: str, loop: Callable[[], None], profile: bool = False,
    sort: str = "cumulative", lines: int = 40,
) -> None:  # fmt: skip
    """Time `loop`, which makes `count` operations, and print `label`, the wall and CPU
    milliseconds per `unit`, then the profile when `profile`."""
    wall, cpu, prof = timed(loop, profile)
    print(f"{label}: {wall / count * 1000:.2f} ms wall, {cpu / count * 1000:.2f} ms CPU per {unit}")
    print_profile(prof, sort, lines)


def backend_cpu(engine: Engine) -> dict[int, float]:
    """CPU seconds so far (user + system) of each PostgreSQL backend connected to
    `engine`'s database, by process id (from /proc: the server must be local)."""
    with engine.connect() as conn:
        pids = conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        ).scalars()
        return {pid: cpu for pid in pids if (cpu := process_cpu(pid)) is not None}


def process_cpu(pid: int | str) -> float | None:
    """CPU seconds so far (user + system) of process `pid`, from /proc; None once gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def slack_environ(body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """The WSGI environ of Slack's POST of `body` to /slack/events, with `headers`
    (Content-Type, the signature headers) as HTTP_* keys."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/slack/events",
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "CONTENT_TYPE": headers["Content-Type"],
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
    }
    for name, value in headers.items():
        if name != "Content-Type":
            environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ
