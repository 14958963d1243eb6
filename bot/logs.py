"""Structured logs without patient data.

Log records carry consult references (RAD-42), never patient references or free text. bolt
logs the whole request body when a signature check fails; `PhiFilter` strips request bodies
and payload dumps from every record before it is written, and exceptions are written as
their type only (a database error's message quotes the SQL parameters).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
# bolt/slack_sdk messages that embed bodies, payloads, events or error texts: keep the
# words before the first such field, or before the first dict/list dump.
_BODY_MARKERS = re.compile(
    r"(body|payload|request|response|text|blocks|args|params|event|error|exception)\s*[:=(]"
    r"|[{\[]",
    re.I,
)
_SAFE_EXTRA = {
    "ref",
    "service",
    "actor",
    "outbox_id",
    "method",
    "error",
    "retry_after",
    "channel",
    "status",
    "count",
    "phase",
    "ladder_level",
    "path",
    "event",
    "attempts",
    "seconds",
    "user",
}


class PhiFilter(logging.Filter):
    """Cuts third-party log messages before any body or payload dump; drops unsafe extras."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("careloop"):
            message = record.getMessage()
            match = _BODY_MARKERS.search(message)
            if match:
                record.msg = message[: match.start()].rstrip(" (:,") + " [details withheld]"
                record.args = None
            if record.exc_info and record.levelno < logging.ERROR:
                record.exc_info = None
        for key in list(record.__dict__):
            if key not in _STANDARD and key not in _SAFE_EXTRA:
                del record.__dict__[key]
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and safe extras."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _SAFE_EXTRA:
            if key in record.__dict__:
                data[key] = record.__dict__[key]
        if record.exc_info:
            data["exception"] = exception_name(record.exc_info)
        return json.dumps(data, default=str)


class TextFormatter(logging.Formatter):
    """Readable single lines with safe extras appended as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{k}={record.__dict__[k]}" for k in sorted(_SAFE_EXTRA) if k in record.__dict__
        )
        base = f"{record.levelname:7} {record.name}: {record.getMessage()}"
        if record.exc_info:
            extras += f" exception={exception_name(record.exc_info)}"
        return f"{base} {extras}".rstrip()


def exception_name(exc_info: Any) -> str:
    """The exception's type, never its message: database errors quote the SQL parameters
    (patient, question) and other messages may quote user text."""
    exc_type = exc_info[0] if isinstance(exc_info, tuple) else type(exc_info)
    if exc_type is None:
        return ""
    return f"{exc_type.__module__}.{exc_type.__qualname__}"


def setup_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Send every log record through the PHI filter to stderr."""
    # Neither format writes where a call came from or which thread or process made it:
    # not gathering those makes each record cheaper (the logging HOWTO's "Optimization").
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(PhiFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("apscheduler", "alembic", "slack_sdk.web.base_client", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
