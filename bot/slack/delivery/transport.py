"""The Slack Web API as delivery uses it: one `Call`, made on the delivery client, and how
its failures are read. A timeout or a dropped connection is `Unclear` (Slack may have acted);
HTTP 429 and 5xx answers, and the errors in `RETRYABLE_ERRORS`, are worth retrying after a
`backoff` or the `retry_after` Slack asked for; any other error answer is a refusal.
`MeteredClient` counts every call by method and outcome (`bot.metrics`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot import metrics

RETRYABLE_ERRORS = {
    "ratelimited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
    "team_added_to_org",
}
MAX_BACKOFF = 60.0


class Unclear(Exception):
    """Slack may or may not have acted (timeout, dropped connection)."""


@dataclass
class Call:
    """One Web API call the dispatcher will make. `look_also`: other users whose direct
    messages an earlier attempt may have reached (a covered DM whose cover changed since),
    searched too before the call is made again."""

    method: str
    args: dict[str, Any]
    look_also: tuple[str, ...] = ()


class MeteredClient(WebClient):
    """A WebClient that counts each Web API call by method and outcome, and the seconds of
    Retry-After Slack asked for."""

    def api_call(self, api_method: str, **kwargs: Any) -> Any:  # type: ignore[override]
        try:
            response = super().api_call(api_method, **kwargs)
        except SlackApiError as exc:
            status, error = answer_of(exc)
            if rate_limited(status, error):
                outcome = "ratelimited"
                metrics.add(
                    metrics.RETRY_AFTER, api_method, amount=retry_after(exc.response.headers)
                )
            else:
                outcome = "server_error" if status >= 500 else "error"
            metrics.add(metrics.SLACK_CALLS, api_method, outcome)
            raise
        except Exception:
            metrics.add(metrics.SLACK_CALLS, api_method, "unclear")
            raise
        metrics.add(metrics.SLACK_CALLS, api_method, "ok")
        return response


def send(client: WebClient, call: Call) -> dict[str, Any]:
    """Make `call`; its answer's data. Raises SlackApiError for an error answer and
    Unclear when no answer came."""
    try:
        if call.method == "files.upload_v2":
            args = dict(call.args)
            channel = dm_channel(client, args.pop("user"))
            response = client.files_upload_v2(channel=channel, **args)
        else:
            response = client.api_call(call.method, json=call.args)
    except (TimeoutError, URLError, ConnectionError, OSError) as exc:
        raise Unclear(type(exc).__name__) from exc
    return dict(response.data) if isinstance(response.data, dict) else {}


def dm_channel(client: WebClient, user: str) -> str:
    """The id of the direct-message channel with `user`."""
    return str(client.conversations_open(users=user)["channel"]["id"])


def permalink(client: WebClient, channel: str, ts: str) -> str | None:
    """The link to message `ts` in `channel`; None when Slack would not say."""
    try:
        return client.chat_getPermalink(channel=channel, message_ts=ts).get("permalink")
    except (SlackApiError, OSError, TimeoutError, URLError):
        return None


def answer_of(exc: SlackApiError) -> tuple[int, str]:
    """(HTTP status, Slack's error code or "") of an error answer."""
    data = exc.response.data
    error = str((data or {}).get("error", "")) if isinstance(data, dict) else ""
    return exc.response.status_code, error


def rate_limited(status: int, error: str) -> bool:
    """Slack said: too many calls, come back after Retry-After."""
    return status == 429 or error == "ratelimited"


def transient(status: int, error: str) -> bool:
    """Worth asking again later. A 5xx may come from a proxy after Slack acted, so a call
    answered so is as unclear as a timeout."""
    return status == 429 or status >= 500 or error in RETRYABLE_ERRORS


def retry_after(headers: Any) -> float:
    """Seconds from a Retry-After header (1 when missing or unreadable)."""
    try:
        for key, value in (headers or {}).items():
            if key.lower() == "retry-after":
                raw = value[0] if isinstance(value, list) else value
                return float(raw)
    except (TypeError, ValueError):
        pass
    return 1.0


def backoff(attempts: int) -> float:
    """Seconds before the next attempt after `attempts` unclear ones: doubling, capped."""
    return min(2.0 ** max(attempts - 1, 0), MAX_BACKOFF)
