"""Process settings from the environment (and `.env`), read once with pydantic-settings."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every environment variable CareLoop reads; `.env.example` documents each one."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    slack_bot_token: str = Field(..., alias="SLACK_BOT_TOKEN")
    slack_signing_secret: str | None = Field(None, alias="SLACK_SIGNING_SECRET")
    slack_app_token: str | None = Field(None, alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field("https://slack.com/api/", alias="SLACK_API_URL")
    database_url: str = Field("sqlite:///consults.db", alias="DATABASE_URL")
    consult_config: str = Field("consult.toml", alias="CONSULT_CONFIG")
    port: int = Field(3000, alias="PORT")
    host: str = Field("0.0.0.0", alias="HOST")
    web_concurrency: int | None = Field(None, alias="WEB_CONCURRENCY")
    web_threads: int = Field(8, alias="WEB_THREADS")
    log_level: str = Field("INFO", alias="LOG_LEVEL")
    log_format: str = Field("json", alias="LOG_FORMAT")
    slack_timeout: float = Field(10.0, alias="SLACK_TIMEOUT")
    max_body_bytes: int = Field(512 * 1024, alias="MAX_BODY_BYTES")
    health_port: int | None = Field(None, ge=1, le=65535, alias="HEALTH_PORT")
    # /readyz fails while the oldest undelivered outbox message is older than this (0: off).
    ready_outbox_max_age: float = Field(300.0, ge=0, alias="READY_OUTBOX_MAX_AGE")

    @field_validator(
        "web_concurrency",
        "slack_signing_secret",
        "slack_app_token",
        "health_port",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `.env.example` lists every variable; an empty line there means "not set".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("slack_api_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"

    @field_validator("log_format")
    @classmethod
    def _format(cls, value: str) -> str:
        if value not in ("json", "text"):
            raise ValueError("LOG_FORMAT must be json or text")
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def workers(self) -> int:
        """HTTP worker processes: SQLite takes one writer process; PostgreSQL two (2 cores)."""
        if self.web_concurrency:
            return self.web_concurrency
        return 1 if self.is_sqlite else 2
