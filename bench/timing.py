"""What the in-process benches share: timing a loop in wall-clock and CPU seconds, with an
optional cProfile around it, printing the time per operation and that profile; and the CPU
time of a local PostgreSQL's backends for the bench's database."""

from __future__ import annotations

import cProfile
import os
import pstats
import time
from collections.abc import Callable
from pathlib import Path

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
        out = {}
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out
