"""A gunicorn worker, once started, has its start-up objects frozen out of the cyclic
garbage collector (`bot.server.freeze_startup_objects`): a full collection then walks only
what was made since, instead of stalling every thread of the worker for ~100 ms."""

from __future__ import annotations

import gc
from types import SimpleNamespace

from bot import server


class Runtime:
    def __init__(self) -> None:
        self.started = False

    def start(self) -> None:
        self.started = True


def test_a_started_worker_freezes_what_it_was_built_with() -> None:
    built = [object() for _ in range(10)]  # tracked containers: lists of objects
    held = [[item] for item in built]
    runtime = Runtime()
    worker = SimpleNamespace(wsgi=SimpleNamespace(runtime=runtime))
    gc.unfreeze()
    try:
        assert gc.get_freeze_count() == 0
        server._start_worker(worker)
        assert runtime.started
        frozen = gc.get_freeze_count()
        assert frozen >= len(held)
        assert all(gc.is_tracked(h) for h in held)
        # Frozen objects are left out of collections: the generations hold none of them.
        assert not any(h is obj for obj in gc.get_objects() for h in held[:1])
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0
    assert any(held[0] is obj for obj in gc.get_objects())
