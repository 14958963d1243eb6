"""What the in-process benches share: timing a loop in wall-clock and CPU seconds, with an
optional cProfile around it, and printing that profile."""

from __future__ import annotations

import cProfile
import pstats
import time
from collections.abc import Callable


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
