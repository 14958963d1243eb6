"""`python -m bot demo`: the clinical day runs end to end, prints what people saw,
exits 0 when every step happened, names the step otherwise, and leaves nothing behind unless
asked to; plus the plain-text rendering of Block Kit it relies on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bot.dev.demo import run_demo
from bot.dev.demo.cast import CAST, NOVAK, PEOPLE
from bot.dev.demo.catalogue import demo_catalogue
from bot.dev.demo.day import Demo
from bot.dev.plain import mrkdwn_to_plain, to_plain_text
from bot.domain.catalogue_load import parse_catalogue
from bot.slack.ids import ActionId
from tests.harness import use_postgres

ROOT = Path(__file__).resolve().parents[2]


def run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DATABASE_"))}
    environ.update(TMPDIR=str(tmp_path), PYTHONIOENCODING="utf-8", **env)
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
    )


# The demo always plays on a SQLite database of its own, whatever the suite's database: its
# whole-day runs belong to the SQLite run of the suite only.
sqlite_run_only = pytest.mark.skipif(
    use_postgres(), reason="the demo plays on its own SQLite database: run in the SQLite run"
)


@pytest.mark.slow
@sqlite_run_only
def test_demo_plays_the_day_and_cleans_up(tmp_path: Path):
    done = run(["demo", "--speed", "2"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for expected in (
        "[Acknowledge]",  # buttons rendered
        "#radiology › RAD-1 thread",
        "DM to Dr Ahmed",
        "👀 @Dr Chen acknowledged RAD-1",
        "@Dr Singh PATH-1 has not been acknowledged",  # nudge mentions the on-call
        "Escalated — @Dr Patel",
        "DM to Dr Moreau (pathology lead)",
        "PATH-1 is still waiting; escalated to @Dr Patel",
        "needs information for CARD-1",
        "the answer clock is running again",
        "handed off 1 consult(s) to you",
        "CARD-2 is cancelled",
        "your rating of RAD-1 was recorded",
        "RAD-1 is closed",
        "CRIT-1 has not been received",  # the critical result, escalated
        "DM to Dr Walsh (house supervisor)",
        "CRIT-1 acknowledged by @Dr Brown",  # then read back
        "📋 Follow-up FU-1 is yours",  # what is owed to the patient
        "The answer to CARD-3 is in",  # the owner told when the answer arrives
        "FU-1 done: Reached the patient",
        "(updated) card",
        "The lead's report",
        "CareLoop consults created",  # the report's own header
        "checks passed",
    ):
        assert expected in out, expected
    assert "<@U" not in out and "<!date" not in out and "&gt;" not in out
    assert "[1/10]" in done.stderr and "[10/10]" in done.stderr
    assert not list(tmp_path.glob("careloop-demo-*")), "the demo left its directory behind"


@pytest.mark.slow
@sqlite_run_only
def test_demo_json_and_keep_leave_a_database_to_report_on(tmp_path: Path):
    done = run(["demo", "--speed", "2", "--json", "--keep"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(done.stdout)
    assert doc["ok"] is True and doc["failed_step"] is None
    assert doc["steps"] and all(step["ok"] for step in doc["steps"])
    names = {step["name"] for step in doc["steps"]}
    assert {"escalation DM to the backup (Dr Patel)", "feedback recorded"} <= names
    entry = doc["transcript"][1]
    assert set(entry) >= {"time", "where", "who", "text"}
    assert any("[Acknowledge]" in e["text"] for e in doc["transcript"])
    assert doc["seconds"] < 60

    database = Path(doc["database"])
    assert database.exists() and database.parent.parent == tmp_path
    assert str(database) in done.stderr  # told where it is, and how to report on it
    assert "python -m bot report" in done.stderr
    report = run(
        ["report", "--format", "json"],
        tmp_path,
        DATABASE_URL=f"sqlite:///{database}",
        CONSULT_CONFIG=str(database.parent / "consult-demo.toml"),
        SLACK_BOT_TOKEN="xoxb-careloop-demo",
    )
    assert report.returncode == 0, report.stderr
    figures = {s["service"]: s for s in json.loads(report.stdout)["services"]}
    assert figures["radiology"]["consults"] == 2
    assert figures["pathology"]["escalated"] == 1


def test_a_missing_effect_fails_naming_the_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    def play(self: Demo) -> None:
        with self.scene(1):
            self.expect("card RAD-9 posted in #radiology", lambda: False, timeout=0.2)

    monkeypatch.setattr(Demo, "play", play)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert run_demo(speed=2, as_json=False, keep=False) == 1
    captured = capsys.readouterr()
    assert "demo failed at step 'card RAD-9 posted in #radiology'" in captured.err
    assert "failed: card RAD-9 posted in #radiology." in captured.out
    assert not list(tmp_path.glob("careloop-demo-*"))


def test_speed_is_checked():
    assert run_demo(speed=0, as_json=False, keep=False) == 2
    assert run_demo(speed=1000, as_json=False, keep=False) == 2


@pytest.mark.parametrize("speed", [0.5, 1, 2, 5])
def test_demo_catalogue_is_valid_at_any_speed(speed: float):
    catalogue = parse_catalogue(demo_catalogue(speed), "demo.toml")
    assert {s.key for s in catalogue.services} == {"radiology", "pathology", "cardiology"}
    radiology = catalogue.service("rad")
    assert radiology is not None and radiology.backup and radiology.leads
    assert [f.key for f in radiology.intake] == ["accession"]


# ------------------------------------------------------------------ plain-text rendering
def test_mrkdwn_becomes_what_a_person_reads():
    text = (
        ":eyes: <@U1> acknowledged *<https://x.slack.com/archives/C1/p1|RAD-1>* in <#C9> "
        "by <!date^1700000000^{time}|2023-11-14 22:13 UTC> — `code`, _note_, <!here>"
    )
    out = mrkdwn_to_plain(
        text, names={"U1": "Dr Chen"}, channels={"C9": "radiology"}, when=lambda e: "09:05"
    )
    assert out == "👀 @Dr Chen acknowledged RAD-1 in #radiology by 09:05 — code, note, @here"
    assert mrkdwn_to_plain("<!date^1700000000^{time}|22:13 UTC>") == "22:13 UTC"
    assert mrkdwn_to_plain("<@U2>") == "@U2"


def test_escaped_user_text_is_shown_not_interpreted():
    out = mrkdwn_to_plain("&gt; see &lt;@U999&gt; &amp; &lt;!channel&gt; 2*3*4 snake_case_x")
    assert out == "> see <@U999> & <!channel> 2*3*4 snake_case_x"


def test_blocks_render_with_buttons_fields_and_inputs():
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "*RAD-1* · *Stat*"}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": "*Patient*\nMRN 1"},
                {"type": "mrkdwn", "text": "*On call*\n<@U1>"},
                {"type": "mrkdwn", "text": "*Assigned to*\nnobody"},
            ],
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "Opened soon"}]},
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "text": {"type": "plain_text", "text": "Acknowledge"},
                    "action_id": ActionId.ACKNOWLEDGE,
                },
                {
                    "type": "button",
                    "text": {"type": "plain_text", "text": "Answer"},
                    "action_id": ActionId.ANSWER,
                },
            ],
        },
        {
            "type": "input",
            "label": {"type": "plain_text", "text": "Note"},
            "element": {"type": "plain_text_input", "action_id": "value"},
            "optional": True,
        },
    ]
    assert to_plain_text("fallback", blocks, names={"U1": "Dr Chen"}) == "\n".join(
        [
            "RAD-1 · Stat",
            "Patient: MRN 1   On call: @Dr Chen",
            "Assigned to: nobody",
            "Opened soon",
            "[Acknowledge] [Answer]",
            "Note (optional): ____",
        ]
    )
    assert to_plain_text("*RAD-1* was <https://x|answered>", None) == "RAD-1 was answered"


def test_the_roster_gives_every_person_an_id_a_name_and_a_role():
    assert len(CAST) == len(PEOPLE) == 14
    assert all(p.id.startswith("U") and p.name.startswith("Dr ") and p.role for p in CAST)
    assert NOVAK.role == "radiology, night shift" and PEOPLE["UCARDOBI"].name == "Dr Obi"
