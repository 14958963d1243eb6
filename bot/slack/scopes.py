"""The bot token scopes CareLoop's code calls for, each with the reason: the one list that
`manifest.yml` requests (a test keeps them equal) and `python -m bot check` compares with
the scopes Slack says the token has (the `x-oauth-scopes` header of `auth.test`)."""

from __future__ import annotations

BOT_SCOPES: dict[str, str] = {
    "commands": "/consult",
    "chat:write": "channel posts, thread replies, DMs, chat.update, ephemeral notices",
    "channels:history": "thread replies (message.channels) and the duplicate-post check",
    "groups:history": "the same in private service channels",
    "im:history": "the duplicate-post check in DMs",
    "im:write": "conversations.open for DMs and the digest chart",
    "channels:read": "conversations.members (who may acknowledge or answer)",
    "groups:read": "the same in private channels",
    "files:write": "the weekly digest chart",
    "users:read": "required with users:read.email",
    "users:read.email": "users.lookupByEmail: on-call schedule attendees",
}


def missing_scopes(granted: str | None) -> list[str] | None:
    """The needed scopes absent from an `x-oauth-scopes` header value, in `BOT_SCOPES`
    order; None when Slack did not say which scopes the token has."""
    if granted is None:
        return None
    have = {scope.strip() for scope in granted.split(",") if scope.strip()}
    return [scope for scope in BOT_SCOPES if scope not in have]
