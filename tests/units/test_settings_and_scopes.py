"""Settings as an operator writes them: secrets from files, `.env.example` placeholders
refused, one-line errors naming the setting; and the one list of bot scopes, which the
manifest requests exactly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.settings import PLACEHOLDERS, ConfigError, load_settings
from bot.slack.scopes import BOT_SCOPES, missing_scopes

REPO = Path(__file__).resolve().parents[2]
VARIABLES = ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "DATABASE_URL")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No CareLoop variable from the outside, and no `.env` (cwd is an empty directory)."""
    for name in VARIABLES + tuple(f"{v}_FILE" for v in VARIABLES) + ("LOG_LEVEL", "PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def secret_file(tmp_path: Path, name: str, content: str) -> str:
    path = tmp_path / name
    path.write_text(content)
    return str(path)


def test_the_manifest_requests_exactly_the_scopes_the_code_needs():
    text = (REPO / "manifest.yml").read_text()
    block = text.split("  scopes:\n    bot:\n", 1)[1].split("\nsettings:", 1)[0]
    requested = re.findall(r"^\s+- ([a-z:.]+)", block, re.M)
    assert requested == list(BOT_SCOPES)


def test_the_messages_tab_is_read_only_as_nothing_reads_direct_messages():
    text = (REPO / "manifest.yml").read_text()
    assert re.search(r"^\s+messages_tab_read_only_enabled: true\b", text, re.M)
    assert "message.im" not in text  # no DM listener: the tab must not invite messages


def test_missing_scopes_are_named_in_order_and_unknown_without_a_header():
    granted = ",".join(s for s in BOT_SCOPES if s not in ("im:history", "files:write"))
    assert missing_scopes(granted) == ["im:history", "files:write"]
    assert missing_scopes(",".join(BOT_SCOPES) + ",users:read") == []
    assert missing_scopes(None) is None


@pytest.mark.parametrize("variable", VARIABLES)
def test_each_secret_may_come_from_a_file_without_its_trailing_newline(
    variable: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    value = "sqlite:///from-file.db" if variable == "DATABASE_URL" else "xoxb-from-a-file"
    monkeypatch.setenv(f"{variable}_FILE", secret_file(tmp_path, "secret", value + "\n"))
    assert getattr(load_settings(), variable.lower()) == value


@pytest.mark.parametrize("variable", VARIABLES)
def test_a_secret_set_twice_is_refused_naming_both(
    variable: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    value = "sqlite:///x.db" if variable == "DATABASE_URL" else "xoxb-1"
    monkeypatch.setenv(variable, value)
    monkeypatch.setenv(f"{variable}_FILE", secret_file(tmp_path, "secret", value))
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert str(refused.value) == f"{variable} and {variable}_FILE are both set: keep one"


def test_an_unreadable_or_empty_secret_file_names_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("SLACK_BOT_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=r"^SLACK_BOT_TOKEN_FILE: cannot read .*missing"):
        load_settings()
    monkeypatch.setenv("SLACK_BOT_TOKEN_FILE", secret_file(tmp_path, "empty", "\n"))
    with pytest.raises(ConfigError, match=r"^SLACK_BOT_TOKEN_FILE: .*empty is empty$"):
        load_settings()


def test_env_example_placeholders_are_refused_naming_what_to_fill_in(tmp_path: Path):
    (tmp_path / ".env").write_text((REPO / ".env.example").read_text())
    settings = load_settings()  # commands that never call Slack still run
    for variable in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"):
        assert getattr(settings, variable.lower()) == PLACEHOLDERS[variable]
        with pytest.raises(ConfigError) as refused:
            settings.require_slack(variable)
        assert str(refused.value).startswith(f"{variable} is still the .env.example placeholder")


def test_a_missing_slack_secret_is_required_only_when_asked_for():
    settings = load_settings()
    assert settings.slack_bot_token is None
    with pytest.raises(ConfigError, match=r"^SLACK_BOT_TOKEN is required"):
        settings.require_slack("SLACK_BOT_TOKEN")


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL: 'LOUD' is not one of DEBUG, INFO"),
        ("DATABASE_URL", "notaurl", "DATABASE_URL is not a database URL"),
        ("DATABASE_URL", "mysql://u:pw@db/x", "DATABASE_URL: mysql:// is not supported"),
        ("DATABASE_URL", "postgresql+psycopg2://u:pw@db/x", "postgresql+psycopg2://"),
        ("PORT", "abc", "PORT: Input should be a valid integer"),
    ],
)
def test_bad_values_are_one_line_naming_the_setting(
    variable: str, value: str, expected: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as refused:
        load_settings()
    message = str(refused.value)
    assert expected in message and "\n" not in message
    assert "pw" not in message  # a password in the URL is never echoed
