"""The buttons and the consult forms are one bolt listener each (`handlers.common.one_of`):
its constraint matches exactly their ids, so every other id still reaches the listeners
after it (the service picker, "hand off all", the unknown-button and unknown-form notices)."""

from __future__ import annotations

import re

from handlers.actions import BUTTONS
from handlers.common import one_of
from handlers.views import REF_VIEWS


def _bolt_matches(pattern: re.Pattern[str], text: str) -> bool:
    return re.search(pattern, text) is not None  # how bolt applies a pattern constraint


def test_one_of_matches_exactly_the_ids():
    for table in (BUTTONS, REF_VIEWS):
        pattern = one_of(str(i) for i in table)
        for i in table:
            assert _bolt_matches(pattern, str(i))
            assert not _bolt_matches(pattern, str(i) + "x")
            assert not _bolt_matches(pattern, "x" + str(i))
            assert not _bolt_matches(pattern, str(i) + "\n")
    assert not _bolt_matches(one_of(["a.b"]), "axb")  # ids are escaped
    assert not _bolt_matches(one_of(str(i) for i in BUTTONS), "consult_service_select")
