"""The fake Slack's Web API methods for modals and App Home: ``views.open``,
``views.push``, ``views.update`` and ``views.publish``."""

from __future__ import annotations

import copy

from bot.dev.fakeslack.workspace import ApiError, Json, Workspace


def views_open(ws: Workspace, args: Json) -> Json:
    ws.use_trigger(args)
    view = ws.new_view(args.get("view"))
    ws.record_view_call("views.open", args)
    return {"view": copy.deepcopy(view)}


def views_push(ws: Workspace, args: Json) -> Json:
    ws.use_trigger(args)
    view = ws.new_view(args.get("view"))
    ws.record_view_call("views.push", args)
    return {"view": copy.deepcopy(view)}


def views_update(ws: Workspace, args: Json) -> Json:
    view_id = args.get("view_id")
    if not view_id and args.get("external_id"):
        wanted = args["external_id"]
        view_id = next((v["id"] for v in ws.views.values() if v["external_id"] == wanted), None)
    current = ws.views.get(str(view_id)) if view_id else None
    if current is None:
        raise ApiError("not_found")
    if args.get("hash") and args["hash"] != current["hash"]:
        raise ApiError("hash_conflict")
    keep = {k: current[k] for k in ("root_view_id", "previous_view_id")}
    view = ws.new_view(args.get("view"), view_id=current["id"])
    view.update(keep)
    ws.record_view_call("views.update", args)
    return {"view": copy.deepcopy(view)}


def views_publish(ws: Workspace, args: Json) -> Json:
    user = str(args.get("user_id") or "")
    if not user:
        raise ApiError("invalid_arguments")
    current_id = ws.home.get(user)
    if current_id and args.get("hash") and args["hash"] != ws.views[current_id]["hash"]:
        raise ApiError("hash_conflict")
    view = ws.new_view(args.get("view"), view_id=current_id)
    ws.home[user] = view["id"]
    ws.record_view_call("views.publish", args)
    return {"view": copy.deepcopy(view)}
