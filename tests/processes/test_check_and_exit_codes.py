"""What an operator sees from real `python -m bot` processes: `check` line by line against
a fake Slack (all scopes, too few, a refused token), `serve` refusing a refused token and
starting while Slack is unreachable, and for every bad input one line, the setting named,
exit 2 (3 for a database that cannot be reached) and never a traceback."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.dev.fakeslack import FakeSlack
from bot.slack.scopes import BOT_SCOPES
from tests.procs import REPO, TOKEN, Procs, bot_env, wait_until, write_catalogue

UNREACHABLE_DB = "postgresql://careloop:secret@127.0.0.1:9/careloop"  # nothing listens


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    with Procs(tmp_path) as running:
        yield running


@pytest.fixture
def catalogue(tmp_path: Path) -> Path:
    return write_catalogue(tmp_path / "consult.toml")


def one_line(result: Any, code: int) -> str:
    """The single stderr line of a refused command (exit `code`, no traceback)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == code, result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    assert len(lines) == 1, result.stderr
    return lines[0]


def check(procs: Procs, env: dict[str, str], *args: str) -> tuple[int, list[str]]:
    result = procs.run(["-m", "bot", "check", *args], env)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result.returncode, result.stdout.splitlines()


# ---------------------------------------------------------------------------- check
def test_check_passes_with_a_token_granted_every_scope(
    db_url: str, slack: FakeSlack, procs: Procs, catalogue: Path
):
    code, lines = check(procs, bot_env(db_url, slack.url, catalogue))
    assert code == 0, lines
    assert [line.split()[0] for line in lines] == ["ok"] * 5, lines
    assert [line.split()[1] for line in lines] == [
        "environment",
        "catalogue:",
        "database:",
        "slack",
        "slack",
    ], lines
    assert f"all {len(BOT_SCOPES)} granted" in lines[-1]
    assert slack.calls_to("auth.test")[0].token == TOKEN


def test_check_names_the_scopes_the_token_lacks(
    db_url: str, slack: FakeSlack, procs: Procs, catalogue: Path
):
    slack.grant([s for s in BOT_SCOPES if s not in ("files:write", "im:history")])
    code, lines = check(procs, bot_env(db_url, slack.url, catalogue))
    assert code == 2, lines
    failed = [line for line in lines if line.startswith("FAIL")]
    assert len(failed) == 1 and failed[0].startswith("FAIL  slack scopes:"), lines
    assert "im:history, files:write" in failed[0] and "reinstall" in failed[0]


@pytest.mark.parametrize("error", ["invalid_auth", "token_revoked", "account_inactive"])
def test_check_fails_on_a_token_slack_refuses(
    error: str, db_url: str, slack: FakeSlack, procs: Procs, catalogue: Path
):
    slack.fail("auth.test", error=error, times=None)
    code, lines = check(procs, bot_env(db_url, slack.url, catalogue))
    assert code == 2, lines
    assert lines[-1].startswith("FAIL  slack token:") and error in lines[-1], lines
    assert "SLACK_BOT_TOKEN" in lines[-1] and "OAuth & Permissions" in lines[-1]


def test_check_without_slack_needs_no_token_and_reports_an_old_schema(
    tmp_path: Path, procs: Procs, catalogue: Path
):
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")  # a database nobody migrated
    env = bot_env(f"sqlite:///{empty}", None, catalogue, SLACK_BOT_TOKEN=None)
    code, lines = check(procs, env, "--no-slack")
    assert code == 2, lines
    assert lines[:2] == ["ok    environment", f"ok    catalogue: {catalogue}, 1 services"]
    assert lines[2].startswith("FAIL  database: schema at empty") and "migrate" in lines[2]
    assert len(lines) == 3  # no Slack line


def test_check_reports_a_database_that_cannot_be_reached(
    slack: FakeSlack, procs: Procs, catalogue: Path
):
    code, lines = check(procs, bot_env(UNREACHABLE_DB, slack.url, catalogue))
    assert code == 2
    db_line = next(line for line in lines if line.split()[1] == "database:")
    assert db_line.startswith("FAIL  database: cannot be reached") and "secret" not in db_line


# ---------------------------------------------------------------------------- start-up
@pytest.mark.parametrize("error", ["invalid_auth", "token_revoked", "not_authed"])
def test_serve_refuses_to_start_on_a_token_slack_refuses(
    error: str, tmp_path: Path, slack: FakeSlack, procs: Procs, catalogue: Path
):
    slack.fail("auth.test", error=error, times=None)
    db = tmp_path / "never.db"
    line = one_line(
        procs.run(
            ["-m", "bot", "serve"],
            bot_env(f"sqlite:///{db}", slack.url, catalogue, LOG_LEVEL="WARNING"),
        ),
        2,
    )
    assert line.startswith("configuration error: Slack refused SLACK_BOT_TOKEN"), line
    assert error in line and "OAuth & Permissions" in line


def test_socket_refuses_to_start_on_a_token_slack_refuses(
    db_url: str, procs: Procs, catalogue: Path
):
    with FakeSlack(token="xoxb-the-real-one") as slack:
        env = bot_env(
            db_url, slack.url, catalogue, SLACK_APP_TOKEN="xapp-1-test", LOG_LEVEL="WARNING"
        )
        line = one_line(procs.run(["-m", "bot", "socket"], env), 2)
        assert "invalid_auth" in line and "SLACK_BOT_TOKEN" in line, line
        assert not slack.calls_to("apps.connections.open")


def test_serve_starts_while_slack_cannot_be_reached(db_url: str, procs: Procs, catalogue: Path):
    env = bot_env(db_url, "http://127.0.0.1:9/api/", catalogue)
    bot = procs.serve(env)
    bot.wait_healthy()
    assert wait_until(lambda: "Slack not reachable at start-up" in bot.output(), 10)
    assert bot.terminate() == 0
    assert "Traceback" not in bot.output()


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("args", "extra", "expected"),
    [
        (["report"], {"LOG_LEVEL": "LOUD"}, "configuration error: LOG_LEVEL: 'LOUD'"),
        (["serve"], {"DATABASE_URL": "notaurl"}, "configuration error: DATABASE_URL is not"),
        (["migrate"], {"DATABASE_URL": "mysql://u:pw@h/db"}, "DATABASE_URL: mysql:// is not"),
        (["serve"], {"PORT": "http"}, "configuration error: PORT:"),
        (["serve"], {"LOG_FORMAT": "xml"}, "configuration error: LOG_FORMAT:"),
        (["serve"], {"CONSULT_CONFIG": "/nowhere.toml"}, "/nowhere.toml: file not found"),
        (
            ["serve"],
            {"SLACK_BOT_TOKEN_FILE": "/nowhere", "SLACK_BOT_TOKEN": None},
            "SLACK_BOT_TOKEN_FILE: cannot read /nowhere",
        ),
        (["serve"], {"SLACK_BOT_TOKEN_FILE": "/etc/hostname"}, "_FILE are both set: keep one"),
        (["serve"], {"SLACK_SIGNING_SECRET": None}, "SLACK_SIGNING_SECRET is required"),
        (["socket"], {}, "SLACK_APP_TOKEN is required"),
        (["serve", "--port", "x"], {}, "command line: python -m bot serve: argument --port"),
        (["purge"], {}, "command line: python -m bot purge: the following arguments"),
        (["report", "--since", "soon"], {}, "--since:"),
        (["frobnicate"], {}, "command line: python -m bot: argument command"),
    ],
)
def test_each_bad_input_is_one_line_naming_it_and_exits_2(
    args: list[str], extra: dict[str, str | None], expected: str, db_url: str,
    slack: FakeSlack, procs: Procs, catalogue: Path,
):  # fmt: skip
    env = bot_env(db_url, slack.url, catalogue, **extra)
    line = one_line(procs.run(["-m", "bot", *args], env), 2)
    assert expected in line, line
    assert "pw" not in line


@pytest.mark.parametrize("args", [["report"], ["purge", "--older-than", "365d"], ["migrate"]])
def test_a_database_that_cannot_be_reached_exits_3(args: list[str], procs: Procs, catalogue: Path):
    line = one_line(procs.run(["-m", "bot", *args], bot_env(UNREACHABLE_DB, None, catalogue)), 3)
    assert line.startswith("database error:") and "secret" not in line, line


@pytest.mark.parametrize("args", [["report"], ["purge", "--older-than", "365d"], ["migrate"]])
def test_commands_that_never_call_slack_do_not_ask_for_its_secrets(
    args: list[str], db_url: str, procs: Procs, catalogue: Path
):
    env = bot_env(db_url, None, catalogue, SLACK_BOT_TOKEN=None, SLACK_SIGNING_SECRET=None)
    result = procs.run(["-m", "bot", *args], env)
    assert result.returncode == 0, result.stderr


def test_an_unedited_env_example_is_refused_naming_what_to_fill_in(tmp_path: Path, procs: Procs):
    shutil.copy(REPO / ".env.example", tmp_path / ".env")
    shutil.copy(REPO / "consult.example.toml", tmp_path / "consult.toml")
    env = bot_env(None, None, None, SLACK_BOT_TOKEN=None, SLACK_SIGNING_SECRET=None)
    line = one_line(procs.run(["-m", "bot", "serve"], env), 2)
    assert "SLACK_BOT_TOKEN is still the .env.example placeholder" in line, line
    assert "fill in" in line
    code, lines = check(procs, env)
    assert code == 2 and "SLACK_BOT_TOKEN is still the .env.example placeholder" in lines[0]


def test_secrets_from_files_serve_the_bot(
    tmp_path: Path, db_url: str, slack: FakeSlack, procs: Procs, catalogue: Path
):
    token, url = tmp_path / "token", tmp_path / "db"
    token.write_text(TOKEN + "\n")
    url.write_text(db_url + "\n")
    env = bot_env(None, slack.url, catalogue, SLACK_BOT_TOKEN=None,
                  SLACK_BOT_TOKEN_FILE=str(token), DATABASE_URL_FILE=str(url))  # fmt: skip
    code, lines = check(procs, env)
    assert code == 0, lines
    assert slack.calls_to("auth.test")[0].token == TOKEN  # newline stripped


def test_a_database_migrated_by_a_newer_version_is_one_line_not_a_traceback(
    tmp_path: Path, procs: Procs, catalogue: Path
):
    db = tmp_path / "newer.db"
    with sqlite3.connect(db) as conn:  # what a rolled-back install meets
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        conn.execute("INSERT INTO alembic_version VALUES ('0099_from_the_future')")
    env = bot_env(f"sqlite:///{db}", None, catalogue, LOG_LEVEL="WARNING")
    line = one_line(procs.run(["-m", "bot", "migrate"], env), 2)
    assert "0099_from_the_future, which this version does not know" in line, line
    assert "restore the backup" in line
    code, lines = check(procs, env, "--no-slack")
    assert code == 2 and "0099_from_the_future, which this version does not know" in lines[2]


def test_an_app_token_only_in_dot_env_selects_socket_mode(
    tmp_path: Path, db_url: str, slack: FakeSlack, procs: Procs, catalogue: Path
):
    (tmp_path / ".env").write_text("SLACK_APP_TOKEN=xapp-1-from-dot-env\n")
    env = bot_env(db_url, slack.url, catalogue, SLACK_SIGNING_SECRET=None, LOG_LEVEL="WARNING")
    result = procs.run(["-m", "bot"], env)  # cwd is tmp_path: its .env is read
    assert [c.token for c in slack.calls_to("apps.connections.open")] == ["xapp-1-from-dot-env"]
    assert result.returncode == 2 and "Socket Mode:" in result.stderr, result.stderr
