"""Process settings from the environment (and `.env`), read once with pydantic-settings.

Every problem is one line naming the setting (`ConfigError`, or pydantic's error on the
field): `python -m bot` prints it and exits 2. Secrets may come from files
(`SLACK_BOT_TOKEN_FILE` and the like: Docker/Kubernetes secrets, systemd credentials).
The Slack secrets are required only by the commands that talk to Slack (`require_slack`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from storage.db import normalize_url

DEFAULT_DATABASE_URL = "sqlite:///consults.db"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# The values `.env.example` ships: an unedited copy must not start the bot.
PLACEHOLDERS = {
    "SLACK_BOT_TOKEN": "xoxb-your-bot-token",
    "SLACK_SIGNING_SECRET": "your-signing-secret",
    "SLACK_APP_TOKEN": "xapp-your-app-token",
}
# Field → variable of each secret that may also be read from `<VARIABLE>_FILE`.
SECRETS = {
    "slack_bot_token": "SLACK_BOT_TOKEN",
    "slack_signing_secret": "SLACK_SIGNING_SECRET",
    "slack_app_token": "SLACK_APP_TOKEN",
    "database_url": "DATABASE_URL",
}
_WHY = {
    "SLACK_BOT_TOKEN": "the bot token (xoxb-…) from OAuth & Permissions",
    "SLACK_SIGNING_SECRET": "the signing secret from Basic Information; HTTP mode needs it "
    "(or set SLACK_APP_TOKEN and use `python -m bot socket`)",
    "SLACK_APP_TOKEN": "an app-level token (xapp-…) with connections:write; Socket Mode needs it",
}


class ConfigError(Exception):
    """A configuration problem; `str()` is one line naming the setting and what to do."""


class Settings(BaseSettings):
    """Every environment variable CareLoop reads; `.env.example` documents each one."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    slack_bot_token: str | None = Field(None, alias="SLACK_BOT_TOKEN")
    slack_signing_secret: str | None = Field(None, alias="SLACK_SIGNING_SECRET")
    slack_app_token: str | None = Field(None, alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field("https://slack.com/api/", alias="SLACK_API_URL")
    database_url: str = Field(DEFAULT_DATABASE_URL, alias="DATABASE_URL")
    slack_bot_token_file: str | None = Field(None, alias="SLACK_BOT_TOKEN_FILE")
    slack_signing_secret_file: str | None = Field(None, alias="SLACK_SIGNING_SECRET_FILE")
    slack_app_token_file: str | None = Field(None, alias="SLACK_APP_TOKEN_FILE")
    database_url_file: str | None = Field(None, alias="DATABASE_URL_FILE")
    consult_config: str = Field("consult.toml", alias="CONSULT_CONFIG")
    port: int = Field(3000, ge=0, le=65535, alias="PORT")
    host: str = Field("0.0.0.0", alias="HOST")
    web_concurrency: int | None = Field(None, ge=1, alias="WEB_CONCURRENCY")
    web_threads: int = Field(8, ge=1, alias="WEB_THREADS")
    log_level: str = Field("INFO", alias="LOG_LEVEL")
    log_format: str = Field("json", alias="LOG_FORMAT")
    slack_timeout: float = Field(10.0, gt=0, alias="SLACK_TIMEOUT")
    max_body_bytes: int = Field(512 * 1024, ge=1, alias="MAX_BODY_BYTES")
    health_port: int | None = Field(None, ge=1, le=65535, alias="HEALTH_PORT")
    # /readyz fails while the oldest undelivered outbox message is older than this (0: off).
    ready_outbox_max_age: float = Field(300.0, ge=0, alias="READY_OUTBOX_MAX_AGE")

    @field_validator(
        "web_concurrency",
        "slack_bot_token",
        "slack_signing_secret",
        "slack_app_token",
        "slack_bot_token_file",
        "slack_signing_secret_file",
        "slack_app_token_file",
        "database_url_file",
        "health_port",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `.env.example` lists every variable; an empty line there means "not set".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_url", mode="before")
    @classmethod
    def _empty_is_default(cls, value: object) -> object:
        return DEFAULT_DATABASE_URL if isinstance(value, str) and not value.strip() else value

    @field_validator("slack_api_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"

    @field_validator("log_format")
    @classmethod
    def _format(cls, value: str) -> str:
        if value not in ("json", "text"):
            raise ValueError(f"{value!r} is not json or text")
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.upper() not in LOG_LEVELS:
            raise ValueError(f"{value!r} is not one of {', '.join(LOG_LEVELS)}")
        return value.upper()

    @model_validator(mode="after")
    def _secrets_then_database(self) -> Settings:
        for field, variable in SECRETS.items():
            path = getattr(self, f"{field}_file")
            if path is None:
                continue
            if field in self.model_fields_set and getattr(self, field):
                raise ValueError(f"{variable} and {variable}_FILE are both set: keep one")
            setattr(self, field, read_secret(f"{variable}_FILE", path))
        check_database_url(self.database_url)
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def workers(self) -> int:
        """HTTP worker processes: SQLite takes one writer process; PostgreSQL two (2 cores)."""
        if self.web_concurrency:
            return self.web_concurrency
        return 1 if self.is_sqlite else 2

    def require_slack(self, *variables: str) -> None:
        """ConfigError (one line) naming each of the Slack secrets `variables` this command
        needs that is unset or still the `.env.example` placeholder."""
        for variable in variables:
            value = getattr(self, variable.lower())
            if not value:
                raise ConfigError(
                    f"{variable} is required ({_WHY[variable]}); set it or {variable}_FILE"
                )
            if value == PLACEHOLDERS.get(variable):
                raise ConfigError(
                    f"{variable} is still the .env.example placeholder {value!r}: fill in "
                    f"{_WHY[variable]}"
                )


def read_secret(setting: str, path: str) -> str:
    """A secret file's content without its trailing newline; ValueError naming `setting`."""
    try:
        value = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ValueError(f"{setting}: cannot read {path}: {exc.strerror or exc}") from None
    if not value.strip():
        raise ValueError(f"{setting}: {path} is empty")
    return value


def check_database_url(url: str) -> None:
    """ValueError (naming DATABASE_URL, never showing its password) unless `url` is a
    SQLite or PostgreSQL (psycopg 3) URL."""
    try:
        parsed = make_url(normalize_url(url))
    except (ArgumentError, ValueError):
        raise ValueError(
            "DATABASE_URL is not a database URL: use sqlite:///path/to/file.db or "
            "postgresql://user:password@host:5432/dbname"
        ) from None
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if backend == "sqlite" and driver == "pysqlite":
        return
    if backend == "postgresql" and driver == "psycopg":
        return
    raise ValueError(
        f"DATABASE_URL: {parsed.drivername}:// is not supported: CareLoop runs on "
        "PostgreSQL (postgresql://…, psycopg 3) or SQLite (sqlite:///…)"
    )


def load_settings() -> Settings:
    """The settings from the environment and `.env`; ConfigError (one line naming each bad
    setting) instead of pydantic's multi-line report."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {message}" if where else message)
        raise ConfigError("; ".join(problems)) from None
