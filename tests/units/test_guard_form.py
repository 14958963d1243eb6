"""`bot.guard.form_fields` reads a form body's fields exactly as `parse_qs` does."""

from __future__ import annotations

import random
from urllib.parse import parse_qs, urlencode

from bot.guard import form_fields

WANTED = frozenset({"payload", "command", "user_id"})

BODIES = [
    "",
    "&&",
    "command",
    "command=",
    "command=%2Fconsult&user_id=U1&text=a+b%26c",
    "user_id=U1&user_id=U2",  # the last value wins, as parse_qs's [-1]
    "user%5Fid=U3&payload=%7B%22type%22%3A+%22x%22%7D",  # encoded names
    "pay+load=x&payload=%ZZ&command=%E2%82%AC",  # '+' in a name, a bad escape, UTF-8
    "payload=%FF%FE&user_id=",  # invalid UTF-8 is replaced, as parse_qs does
    "a=1;command=x&=y&=",
    urlencode({"command": "/consult", "user_id": "U 1", "text": "MRN 1: é & = ?"}),
]


def expected(body: str) -> dict[str, str]:
    parsed = parse_qs(body, keep_blank_values=True)
    return {k: v[-1] for k, v in parsed.items() if k in WANTED}


def test_form_fields_reads_the_fields_parse_qs_reads():
    for body in BODIES:
        assert form_fields(body, WANTED) == expected(body), body


def test_form_fields_on_random_bodies():
    rng = random.Random(15)
    alphabet = ["&", "=", "+", "%", "%2", "%41", "%5F", "payload", "command", "user_id", "_", "x"]
    for _ in range(3000):
        body = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        assert form_fields(body, WANTED) == expected(body), body
