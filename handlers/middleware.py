"""What every CareLoop request shares, written once: the exactly-once key of the request
(bolt middleware, put in the context), and the audited refusal (a wrapper around the
consult call: `Refused` becomes a value the listener shows, after it is audited)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from bot.domain.lifecycle import Refused
from bot.services import Services

T = TypeVar("T")

_KEY = "careloop_key"


def request_key(body: dict[str, Any], context: dict[str, Any], next: Callable[[], Any]) -> Any:  # noqa: A002
    """Middleware: store the request's exactly-once key in the context (see `key_of`)."""
    context[_KEY] = key_of(body)
    return next()


def key_of(body: dict[str, Any]) -> str | None:
    """One key per request, the same on Slack's replays: a command's trigger id, a click's
    action id with its trigger id (or action_ts), a form's view id; None for anything else."""
    if body.get("command"):
        trigger = body.get("trigger_id")
        return f"cmd:{trigger}" if trigger else None
    if body.get("type") == "block_actions":
        action = (body.get("actions") or [{}])[0]
        click = body.get("trigger_id") or action.get("action_ts")
        return f"act:{action.get('action_id')}:{click}"
    if body.get("type") == "view_submission":
        return f"view:{(body.get('view') or {}).get('id')}"
    return None


def request_key_of(context: dict[str, Any]) -> str | None:
    """The key `request_key` stored for this request."""
    return context.get(_KEY)


def audited(
    svc: Services, call: Callable[[], T], *, user: str, action: str, ref: str | None
) -> T | Refused:
    """Run `call`; when the consult refuses, the refusal is audited and returned."""
    try:
        return call()
    except Refused as refusal:
        svc.consults.audit_refusal(user=user, action=action, reason=str(refusal), ref=ref)
        return refusal


def refusal_notice(refusal: Refused) -> str:
    """What the person reads when the consult refused what they asked."""
    return f":no_entry: {refusal}"
