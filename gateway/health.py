"""``GET /healthz`` beside the metrics: is the gateway healthy, and if not,
why -- for an uptime check, a load balancer, ``smemet nodes`` and a person
with curl.

The document is built on the event loop once a second (by the maintenance
round, from ``status.GatewayStatus``) and served from the metrics thread as
it stands; a document older than ``STALE_AFTER`` means the event loop is
stuck, which is itself the worst health there is.

    status    "ok" | "degraded" (200) | "failing" (503)
    problems  one line each, what is wrong and what it means
    version, gateway, started_at, uptime_s, implementation
    storage   full (the alarm), reason, refused_frames, bytes, max_bytes,
              disk_free_bytes, frames, measurements, processing_lag_frames
    ingest    paused, backlog_frames
    keys      nodes (loaded), loaded_at, file_changed (edited since: reload!)
    routes    per sink: name, kind, connected, down_for_s, last_error,
              lag_measurements, lag_seconds

"failing" is storage full (frames are refused) or a stuck event loop;
"degraded" is a route down, ingest paused by back-pressure or a key file
changed but not loaded.
"""

from __future__ import annotations

import json
import time

from .storage import disk_space, size_text

STALE_AFTER = 10.0  # seconds without a fresh document: the event loop is stuck


def document(status, now: float | None = None) -> dict:
    """The health document of a running gateway (``status.GatewayStatus``)."""
    now = time.time() if now is None else now
    stats = status.outbox()
    disk = disk_space(status.outbox_directory)
    problems: list[str] = []
    if status.storage_full:
        problems.append(f"outbox full, frames refused (nodes keep them): {status.storage_full_reason}")
    if status.ingest_paused:
        problems.append(f"ingest paused: {status.backlog_frames} frames wait for processing (back-pressure)")
    keys = status.keys()
    if keys.file_changed:
        problems.append("the key file changed since the gateway loaded it: reload it "
                        "(systemctl reload smemet-gateway) so new nodes are known")
    routes = []
    for sink in status.sinks():
        routes.append({
            "name": sink.name, "kind": sink.kind, "connected": sink.connected,
            "down_for_s": None if sink.down_for is None else round(sink.down_for, 1),
            "last_error": sink.last_error, "lag_measurements": sink.lag_measurements,
            "lag_seconds": round(sink.lag_seconds, 3),
        })
        if not sink.connected and sink.down_for is not None:
            problems.append(f"{sink.kind} {sink.name} down for {sink.down_for:.0f} s"
                            + (f": {sink.last_error}" if sink.last_error else ""))
    state = "failing" if status.storage_full else ("degraded" if problems else "ok")
    return {
        "status": state,
        "problems": problems,
        "version": status.version,
        "gateway": status.gateway_id,
        "started_at": status.started_at,
        "uptime_s": round(status.uptime, 1),
        "implementation": status.native,
        "storage": {
            "full": status.storage_full,
            "reason": status.storage_full_reason,
            "refused_frames": status.frames_refused,
            "bytes": stats.bytes,
            "max_bytes": stats.max_bytes,
            "disk_free_bytes": None if disk is None else disk.free,
            "frames": stats.frames,
            "measurements": stats.measurements,
            "processing_lag_frames": max(0, stats.last_frame_id - stats.processed_frame_id),
        },
        "ingest": {"paused": status.ingest_paused, "backlog_frames": status.backlog_frames},
        "keys": {"nodes": keys.nodes, "loaded_at": keys.loaded_at, "file_changed": keys.file_changed},
        "routes": routes,
        "built_at": now,
    }


class HealthBoard:
    """The newest document, handed from the event loop to the HTTP thread."""

    def __init__(self) -> None:
        self._document: dict | None = None
        self._built = 0.0  # monotonic

    def update(self, document: dict) -> None:
        self._document, self._built = document, time.monotonic()  # one reference swap: safe across threads

    def response(self) -> tuple[int, bytes]:
        """(HTTP status, JSON body)."""
        document, age = self._document, time.monotonic() - self._built
        if document is None:
            document = {"status": "failing", "problems": ["the gateway is starting"]}
        elif age > STALE_AFTER:
            document = dict(document, status="failing",
                            problems=[f"the gateway's event loop has not answered for {age:.0f} s (stuck?)",
                                      *document["problems"]])
        code = 503 if document["status"] == "failing" else 200
        return code, json.dumps(document, separators=(",", ":")).encode()


def summary(document: dict) -> str:
    """One line for people: "ok", or the status and its first problem."""
    storage = document.get("storage") or {}
    if document.get("status") == "ok":
        used = storage.get("bytes")
        return "ok" + (f" (outbox {size_text(used)})" if used is not None else "")
    problems = document.get("problems") or []
    return f"{document.get('status')}: {problems[0] if problems else 'no detail'}"
