"""The fake Slack's Web API methods for the bot's identity, messages, conversations and
users: ``auth.test``, ``chat.*``, ``conversations.*``, ``users.info``."""

from __future__ import annotations

import copy

from bot.dev.fakeslack.workspace import (
    BOT_ID,
    BOT_USER_ID,
    TEAM_ID,
    TEAM_URL,
    ApiError,
    Json,
    Workspace,
    dm_channel,
    paginate,
    truthy,
    ts_key,
)


def auth_test(ws: Workspace, args: Json) -> Json:
    return {
        "url": TEAM_URL,
        "team": "CareLoop Test",
        "user": "careloop",
        "team_id": TEAM_ID,
        "user_id": BOT_USER_ID,
        "bot_id": BOT_ID,
        "is_enterprise_install": False,
    }


def apps_connections_open(ws: Workspace, args: Json) -> Json:
    raise ApiError("not_allowed_token_type")


def chat_post_message(ws: Workspace, args: Json) -> Json:
    channel = args.get("channel")
    if not channel:
        raise ApiError("channel_not_found")
    text, blocks = args.get("text"), args.get("blocks")
    if not text and not blocks and not args.get("attachments"):
        raise ApiError("no_text")
    if blocks is not None and not isinstance(blocks, list):
        raise ApiError("invalid_blocks")
    metadata = args.get("metadata")
    if metadata is not None and not (
        isinstance(metadata, dict)
        and isinstance(metadata.get("event_type"), str)
        and isinstance(metadata.get("event_payload", {}), dict)
    ):
        raise ApiError("invalid_metadata_format")
    msg = ws.store(str(channel), text, blocks, args.get("thread_ts"), metadata, BOT_USER_ID)
    return {
        "channel": msg["channel"],
        "ts": msg["ts"],
        "message": ws.api_message(msg, with_metadata=True),
    }


def chat_update(ws: Workspace, args: Json) -> Json:
    channel, ts = str(args.get("channel") or ""), str(args.get("ts") or "")
    msg = ws.index.get((ws.resolve(channel), ts))
    if msg is None:
        raise ApiError("message_not_found")
    if "blocks" in args:
        if not isinstance(args["blocks"], list):
            raise ApiError("invalid_blocks")
        msg["blocks"] = list(args["blocks"])
    if "text" in args:
        msg["text"] = "" if args["text"] is None else str(args["text"])
    if isinstance(args.get("metadata"), dict):
        msg["metadata"] = args["metadata"]
    return {
        "channel": msg["channel"],
        "ts": msg["ts"],
        "text": msg["text"],
        "message": ws.api_message(msg, with_metadata=True),
    }


def chat_post_ephemeral(ws: Workspace, args: Json) -> Json:
    if not args.get("channel"):
        raise ApiError("channel_not_found")
    if not args.get("user"):
        raise ApiError("user_not_in_channel")
    ws.ephemerals.append(copy.deepcopy(args))
    return {"message_ts": ws.next_ts()}


def chat_get_permalink(ws: Workspace, args: Json) -> Json:
    channel = ws.resolve(str(args.get("channel") or ""))
    ts = str(args.get("message_ts") or "")
    if not channel or not ts:
        raise ApiError("invalid_arguments")
    link = f"{TEAM_URL}archives/{channel}/p{ts.replace('.', '')}"
    msg = ws.index.get((channel, ts))
    if msg is not None and msg["thread_ts"]:
        link += f"?thread_ts={msg['thread_ts']}&cid={channel}"
    return {"channel": channel, "permalink": link}


def conversations_history(ws: Workspace, args: Json) -> Json:
    channel = ws.resolve(str(args.get("channel") or ""))
    if not channel:
        raise ApiError("channel_not_found")
    inclusive = truthy(args.get("inclusive", False))
    oldest = ts_key(args["oldest"]) if args.get("oldest") else None
    latest = ts_key(args["latest"]) if args.get("latest") else None

    def in_range(ts: str) -> bool:
        key = ts_key(ts)
        if oldest is not None and (key < oldest or (key == oldest and not inclusive)):
            return False
        if latest is not None and (key > latest or (key == latest and not inclusive)):
            return False
        return True

    top = [
        m
        for m in ws.messages.get(channel, [])
        if (not m["thread_ts"] or m["thread_ts"] == m["ts"]) and in_range(m["ts"])
    ]
    top.sort(key=lambda m: ts_key(m["ts"]), reverse=True)
    page, has_more, cursor = paginate(top, args, default_limit=100)
    meta = truthy(args.get("include_all_metadata", False))
    return {
        "messages": [ws.api_message(m, with_metadata=meta) for m in page],
        "has_more": has_more,
        "pin_count": 0,
        "response_metadata": {"next_cursor": cursor},
    }


def conversations_replies(ws: Workspace, args: Json) -> Json:
    channel = ws.resolve(str(args.get("channel") or ""))
    ts = str(args.get("ts") or "")
    parent = ws.index.get((channel, ts))
    if parent is None:
        raise ApiError("thread_not_found")
    root = parent["thread_ts"] or parent["ts"]
    msgs = [m for m in ws.messages.get(channel, []) if root in (m["ts"], m["thread_ts"])]
    page, has_more, cursor = paginate(msgs, args, default_limit=1000)
    meta = truthy(args.get("include_all_metadata", False))
    return {
        "messages": [ws.api_message(m, with_metadata=meta) for m in page],
        "has_more": has_more,
        "response_metadata": {"next_cursor": cursor},
    }


def conversations_members(ws: Workspace, args: Json) -> Json:
    members = ws.members.get(str(args.get("channel") or ""), [])
    page, _, cursor = paginate(members, args, default_limit=100)
    return {"members": list(page), "response_metadata": {"next_cursor": cursor}}


def conversations_open(ws: Workspace, args: Json) -> Json:
    raw = args.get("users") or ""
    users = raw if isinstance(raw, list) else [u for u in str(raw).split(",") if u]
    if args.get("channel"):
        return {"channel": {"id": str(args["channel"])}}
    if not users:
        raise ApiError("users_list_not_supplied")
    if len(users) == 1:
        channel = dm_channel(users[0])
        return {"channel": {"id": channel, "is_im": True, "user": users[0]}}
    return {"channel": {"id": "G" + "-".join(sorted(users)), "is_mpim": True}}


def conversations_info(ws: Workspace, args: Json) -> Json:
    channel = str(args.get("channel") or "")
    if not channel:
        raise ApiError("channel_not_found")
    return {
        "channel": {
            "id": channel,
            "name": channel.lower(),
            "is_im": channel.startswith("D"),
            "is_member": True,
            "is_archived": False,
        }
    }


def users_info(ws: Workspace, args: Json) -> Json:
    user = str(args.get("user") or "")
    if not user:
        raise ApiError("user_not_found")
    info: Json = {
        "id": user,
        "team_id": TEAM_ID,
        "name": user.lower(),
        "real_name": f"User {user}",
        "deleted": False,
        "is_bot": user == BOT_USER_ID,
        "tz": "UTC",
        "tz_label": "Coordinated Universal Time",
        "tz_offset": 0,
        "profile": {"real_name": f"User {user}", "display_name": user.lower()},
    }
    info.update(copy.deepcopy(ws.users.get(user, {})))
    return {"user": info}


def users_lookup_by_email(ws: Workspace, args: Json) -> Json:
    """The user with this e-mail, set with `FakeSlack.set_email`."""
    user = ws.emails.get(str(args.get("email") or "").lower())
    if user is None:
        raise ApiError("users_not_found")
    return {"user": {"id": user, "team_id": TEAM_ID, "profile": {"email": args.get("email")}}}
