"""The Web API methods the fake Slack answers, by name, and how one call is run."""

from __future__ import annotations

from collections.abc import Callable

from bot.dev.fakeslack.calls import Outcome
from bot.dev.fakeslack.chat import (
    apps_connections_open,
    auth_test,
    chat_get_permalink,
    chat_post_ephemeral,
    chat_post_message,
    chat_update,
    conversations_history,
    conversations_info,
    conversations_members,
    conversations_open,
    conversations_replies,
    users_info,
    users_lookup_by_email,
)
from bot.dev.fakeslack.files import files_complete_upload_external, files_get_upload_url_external
from bot.dev.fakeslack.views import views_open, views_publish, views_push, views_update
from bot.dev.fakeslack.workspace import ApiError, Json, Workspace

METHODS: dict[str, Callable[[Workspace, Json], Json]] = {
    "auth.test": auth_test,
    "apps.connections.open": apps_connections_open,
    "chat.postMessage": chat_post_message,
    "chat.update": chat_update,
    "chat.postEphemeral": chat_post_ephemeral,
    "chat.getPermalink": chat_get_permalink,
    "conversations.history": conversations_history,
    "conversations.replies": conversations_replies,
    "conversations.members": conversations_members,
    "conversations.open": conversations_open,
    "conversations.info": conversations_info,
    "users.info": users_info,
    "users.lookupByEmail": users_lookup_by_email,
    "views.open": views_open,
    "views.push": views_push,
    "views.update": views_update,
    "views.publish": views_publish,
    "files.getUploadURLExternal": files_get_upload_url_external,
    "files.completeUploadExternal": files_complete_upload_external,
}


def run_method(workspace: Workspace, method: str, args: Json) -> Outcome:
    """Run the Web API `method` on `workspace`: ``{"ok": true, ...}`` or its error."""
    impl = METHODS.get(method)
    if impl is None:
        return Outcome(200, {"ok": False, "error": "unknown_method"})
    try:
        result = impl(workspace, args)
    except ApiError as exc:
        return Outcome(200, {"ok": False, "error": exc.error})
    return Outcome(200, {"ok": True, **result})
