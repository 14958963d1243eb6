"""The fake Slack's file upload, as ``files_upload_v2`` does it: ask for an upload URL
(``files.getUploadURLExternal``), POST the bytes there, then ``files.completeUploadExternal``."""

from __future__ import annotations

from bot.dev.fakeslack.calls import Outcome
from bot.dev.fakeslack.wire import file_bytes
from bot.dev.fakeslack.workspace import ApiError, Json, Workspace


def files_get_upload_url_external(ws: Workspace, args: Json) -> Json:
    filename, length = args.get("filename"), args.get("length")
    if not filename or length in (None, ""):
        raise ApiError("invalid_arguments")
    file_id = f"F{next(ws.ids):08d}"
    ws.pending_files[file_id] = {
        "filename": str(filename),
        "length": int(length),
        "bytes": None,
    }
    return {"upload_url": f"{ws.base}/upload/{file_id}", "file_id": file_id}


def files_complete_upload_external(ws: Workspace, args: Json) -> Json:
    files = args.get("files")
    if not isinstance(files, list) or not files:
        raise ApiError("invalid_arguments")
    done: list[Json] = []
    for f in files:
        pending = ws.pending_files.get(str(f.get("id")))
        if pending is None or pending["bytes"] is None:
            raise ApiError("file_not_found")
        done.append({"id": f["id"], "title": f.get("title") or pending["filename"], **pending})
    out = []
    for f in done:
        ws.pending_files.pop(f["id"], None)
        ws.uploads.append(
            {
                "file_id": f["id"],
                "filename": f["filename"],
                "title": f["title"],
                "bytes": f["bytes"],
                "channel_id": args.get("channel_id"),
                "initial_comment": args.get("initial_comment"),
                "thread_ts": args.get("thread_ts"),
            }
        )
        out.append(
            {"id": f["id"], "name": f["filename"], "title": f["title"], "size": len(f["bytes"])}
        )
    return {"files": out}


def receive_upload(ws: Workspace, file_id: str, content_type: str, body: bytes) -> Outcome:
    """The bytes POSTed to the ``upload_url`` of `file_id` (404 for an unknown file)."""
    pending = ws.pending_files.get(file_id)
    if pending is None:
        return Outcome(404, b"file not found")
    data = file_bytes(content_type, body)
    pending["bytes"] = data
    return Outcome(200, f"OK - {len(data)}".encode())
