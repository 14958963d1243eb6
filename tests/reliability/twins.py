"""Two independent bots (own engine, dispatcher and caches: two gunicorn workers or hosts)
on one PostgreSQL database and one fake Slack, and a way to run the same job in both at
the same moment. Import `twin` into a test module that defines (or imports) `bot`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from tests.harness import Bot, start_bot

T = TypeVar("T")


@pytest.fixture
def twin(db_url: str, bot: Bot, postgres_only: None) -> Iterator[Bot]:
    """A second bot with the same catalogue and clock, on the same database and fake Slack."""
    other = start_bot(db_url, bot.slack, catalogue=bot.services.catalogue, clock=bot.clock)
    yield other
    other.stop()


def both_at_once(first: Bot, second: Bot, job: Callable[[Bot], T]) -> list[T]:
    """`job` run in both bots, released by one barrier; what each returned (in the order
    they finished), once both bots' outboxes are delivered."""
    barrier = threading.Barrier(2)
    done: list[T] = []

    def run(b: Bot) -> None:
        barrier.wait()
        done.append(job(b))

    threads = [threading.Thread(target=run, args=(b,)) for b in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(done) == 2, "a job did not finish"
    first.settle()
    second.settle()
    return done
