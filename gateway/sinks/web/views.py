"""The JSON documents of the console's API (``/api/v1/...``), built from the
gateway's status, the console's in-memory state and the sampled activity.
The page renders exactly these documents, so scripts see what the page
shows; their schemas are in ``schema/`` and docs/web-console.md.

Nothing secret is in any of them: no node key, no route password or user
name, no console password hash -- only names, figures and states.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ...binary32 import as_printed
from ...spine import QUALITY_NAMES
from . import reasons
from .activity import Activity
from .config import WebConfig
from .console import ConsoleState, NodeView

LATE_PERIODS = 3  # a node is "late" (amber) past this many of its usual periods without a frame...
SILENT_PERIODS = 10  # ..."silent" (red) past this many
STATES = ("ok", "late", "silent", "waiting")
_STATE_RANK = {"silent": 0, "late": 1, "waiting": 2, "ok": 3}  # worst first
SORT_KEYS = ("state", "node", "age", "fw", "uptime", "reset_cause", "store_depth", "rejects", "link")
MAX_LIMIT = 500
ROWS_TTL = 0.25  # seconds the node rows of one update are shared (every document, every open page)


class BadQuery(ValueError):
    """A query parameter is wrong; ``str()`` says which and what is valid."""


@dataclass(frozen=True, slots=True)
class NodeQuery:
    """Filter, sort and page of the node list (server-side: 1,000 nodes stay usable)."""

    text: str = ""  # substring of the node id, firmware, peer or reset cause (case-insensitive)
    states: tuple[str, ...] = ()  # empty: every state
    sort: str = "state"
    descending: bool = False
    offset: int = 0
    limit: int = 50

    @classmethod
    def parse(cls, query) -> NodeQuery:
        """From URL query parameters (a mapping of str -> str)."""
        states = tuple(s for s in query.get("state", "").split(",") if s)
        for state in states:
            if state not in STATES:
                raise BadQuery(f"state must be one or more of {', '.join(STATES)} (comma-separated), not {state!r}")
        sort = query.get("sort", "state")
        if sort not in SORT_KEYS:
            raise BadQuery(f"sort must be one of {', '.join(SORT_KEYS)}, not {sort!r}")
        order = query.get("order", "asc")
        if order not in ("asc", "desc"):
            raise BadQuery(f"order must be asc or desc, not {order!r}")
        return cls(query.get("q", "").strip()[:200], states, sort, order == "desc",
                   _integer(query, "offset", 0, 0, 10**9), _integer(query, "limit", 50, 1, MAX_LIMIT))


def _integer(query, key: str, default: int, low: int, high: int) -> int:
    raw = query.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadQuery(f"{key} must be an integer {low}..{high}, not {raw!r}") from None
    if not low <= value <= high:
        raise BadQuery(f"{key} must be an integer {low}..{high}, not {value}")
    return value


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


class Views:
    def __init__(self, config: WebConfig, status, console: ConsoleState, activity: Activity) -> None:
        self.config = config
        self.status = status
        self.console = console
        self.activity = activity
        self._rows: tuple[float, list[dict]] | None = None
        self._shared: dict[str, tuple[float, dict]] = {}

    def _once_per_update(self, name: str, build) -> dict:
        """The document ``name``, built at most once per ROWS_TTL for every
        open page (the gateway's figures take a few SQLite reads)."""
        cached, clock = self._shared.get(name), time.monotonic()
        if cached is not None and clock - cached[0] < ROWS_TTL:
            return cached[1]
        document = build()
        self._shared[name] = (clock, document)
        return document

    # -- gateway --------------------------------------------------------

    def gateway(self) -> dict:
        return self._once_per_update("gateway", self._gateway)

    def _gateway(self) -> dict:
        status, now = self.status, time.time()
        stats = status.outbox()
        rates = self.activity.rates()
        window, recent = self.activity.recent_rejects()
        rows = self._node_rows(now)
        counts = {state: 0 for state in STATES}
        for row in rows:
            counts[row["state"]] += 1
        sinks = self._sinks()
        return {
            "now": now,
            "id": status.gateway_id,
            "version": status.version,
            "started_at": status.started_at,
            "uptime_s": round(status.uptime, 1),
            "implementation": status.native,
            "storage": {
                "frames": stats.frames,
                "measurements": stats.measurements,
                "bytes": stats.bytes,
                "max_bytes": stats.max_bytes,
                "room_bytes": max(0, stats.max_bytes - stats.bytes),
                "used_fraction": round(stats.bytes / stats.max_bytes, 4) if stats.max_bytes else None,
                "full": status.storage_full,
                "full_reason": status.storage_full_reason,
                "processing_lag_frames": max(0, stats.last_frame_id - stats.processed_frame_id),
            },
            "ingest": {
                "frames_per_s": round(rates.frames_per_s, 1),
                "measurements_per_s": round(rates.measurements_per_s, 1),
                "rejects_per_s": round(rates.rejects_per_s, 2),
                "paused": status.ingest_paused,
                "backlog_frames": status.backlog_frames,
            },
            "rejects": {"window_s": round(window, 1), "recent": recent, "since_start": status.rejects()},
            "nodes": {"total": len(rows), **counts},
            "routes": {"total": len(sinks), "connected": sum(1 for s in sinks if s.connected)},
            "console": {"refresh_s": self.config.refresh, "history_s": self.config.history,
                        "login": self.config.login_required, "channels": self.console.channel_count,
                        "channels_not_kept": self.console.channels_dropped},
        }

    # -- nodes ----------------------------------------------------------

    def nodes(self, query: NodeQuery) -> dict:
        now = time.time()
        rows = self._node_rows(now)
        counts = {state: 0 for state in STATES}
        for row in rows:
            counts[row["state"]] += 1
        matched = [row for row in rows if _matches(row, query)]
        matched.sort(key=_sort_key(query.sort), reverse=query.descending)
        page = matched[query.offset:query.offset + query.limit]
        return {"now": now, "total": len(rows), "matched": len(matched), "offset": query.offset,
                "limit": query.limit, "counts": counts, "nodes": page}

    def node(self, name: str) -> dict | None:
        now = time.time()
        row = next((r for r in self._node_rows(now) if r["node"] == name), None)
        if row is None:
            return None
        view = self.console.node(name)
        since = now - self.config.history
        channels = []
        if view is not None:
            calibration = self.status.calibration(name)  # once per document: the book's statuses cover every sensor
            for channel in sorted(view.channels):
                channels.append(self._channel(name, view.channels[channel], now, since, calibration.get(channel)))
        rejects = [{"reason": reason, "count": n, "title": reasons.reject(reason).title,
                    "check": reasons.reject(reason).check} for reason, n in sorted(row["rejects"].items())]
        return {
            "now": now,
            "node": row,
            "health": dict(view.health) if view is not None else {},
            "health_time": view.health_time if view is not None else None,
            "channels": channels,
            "rejects": rejects,
            "checks": reasons.waiting_checks(row["rejects"]) if row["state"] == "waiting" else [],
        }

    def _channel(self, node: str, view, now: float, since: float, calibration: dict | None = None) -> dict:
        times, values, quality = view.ring.points(since)
        chain = self.status.chain(node, view.channel)
        value = view.value
        if not chain:  # unprocessed: the node's binary32 reading, printed at its own precision (binary32.py)
            value = as_printed(value) if type(value) is float else value
            values = [as_printed(v) if type(v) is float else v for v in values]
        return {
            "channel": view.channel,
            "value": value,
            "unit": view.unit,
            "quality": view.quality_name,
            "reason": view.reason,
            "time": view.time,
            "age_s": round(now - view.time, 1),
            "id": view.id,
            "seq": view.seq,
            "chain": [_step(step) for step in chain],
            "calibration": view.calibration,
            "calibration_status": calibration,
            "history": {"t": [round(t, 3) for t in times], "v": values, "q": [QUALITY_NAMES[q] for q in quality]},
        }

    def _node_rows(self, now: float) -> list[dict]:
        """One row per node: registered, seen by admission, or seen in the
        data (replayed from before a restart, Modbus devices).  Built once
        per update and shared by its documents and pages (do not change them)."""
        cached, clock = self._rows, time.monotonic()
        if cached is not None and clock - cached[0] < ROWS_TTL:
            return cached[1]
        rows = self._build_rows(now)
        self._rows = (clock, rows)
        return rows

    def _build_rows(self, now: float) -> list[dict]:
        status, console, activity = self.status, self.console, self.activity
        known = {n.node: n for n in status.nodes()}
        modbus = {d.name: d for d in status.modbus_devices()}
        names = set(known) | set(console.nodes) | set(modbus)
        rows = []
        for name in names:
            node = known.get(name)
            view = console.nodes.get(name)
            device = modbus.get(name)
            rows.append(self._row(name, node, view, device, activity.period(name), now))
        return rows

    def _row(self, name: str, node, view: NodeView | None, device, period: float | None, now: float) -> dict:
        last_seen = node.last_seen if node is not None else None
        if view is not None and view.last_received is not None and (last_seen is None or view.last_received > last_seen):
            last_seen = view.last_received  # replayed from the outbox: frames from before a restart
        if device is not None and device.last_poll is not None:
            last_seen = max(last_seen or 0.0, device.last_poll)
            period = device.period
        expected = period if period is not None else self.config.expected_period
        age = None if last_seen is None else max(0.0, now - last_seen)
        if age is None:
            heard = (node is not None and node.ever_committed) or device is not None
            state = "silent" if heard and device is None else "waiting"
        elif age > SILENT_PERIODS * expected:
            state = "silent"
        elif age > LATE_PERIODS * expected:
            state = "late"
        else:
            state = "ok"
        health = view.health if view is not None else {}
        uptime = health.get("uptime")
        if isinstance(uptime, (int, float)) and view.health_time is not None and state in ("ok", "late"):
            uptime = uptime + max(0.0, now - view.health_time)  # estimated now from the last report
        depth = health.get("store_depth")
        if device is not None:
            link = {"kind": "modbus", "peer": device.address}
        elif node is not None and node.link is not None:
            link = {"kind": node.link, "peer": node.peer}
        else:
            link = {"kind": None, "peer": None}
        worst = view.worst_quality() if view is not None else None
        return {
            "node": name,
            "registered": bool(node is not None and node.registered),
            "state": state,
            "last_seen": last_seen,
            "age_s": _round(age, 1),
            "period_s": _round(expected, 2),
            "period_learnt": period is not None,
            "fw": _text(health.get("fw")),
            "uptime_s": _round(uptime if isinstance(uptime, (int, float)) else None, 0),
            "reset_cause": _text(health.get("reset_cause")),
            "store_depth": int(depth) if isinstance(depth, (int, float)) and not isinstance(depth, bool) else None,
            "clock_synced": node.clock_synced if node is not None else None,
            "rejects": dict(node.rejects) if node is not None else {},
            "link": link,
            "channels": len(view.channels) if view is not None else 0,
            "quality": QUALITY_NAMES[worst] if worst is not None else None,
        }

    # -- routes, rejects, Modbus --------------------------------------------

    def _sinks(self) -> list:
        """Every output but the console itself (it is the page being looked at)."""
        return [sink for sink in self.status.sinks() if sink.kind != "web"]

    def routes(self) -> dict:
        return self._once_per_update("routes", self._routes)

    def _routes(self) -> dict:
        now = time.time()
        since = now - self.config.history
        out = []
        for sink in self._sinks():
            times, seconds, measurements = self.activity.lag_history(sink.name, since)
            out.append({
                "name": sink.name,
                "kind": sink.kind,
                "description": sink.description,
                "state": "connected" if sink.connected else "disconnected",
                "connected": sink.connected,
                "durable": sink.durable,
                "down_for_s": _round(sink.down_for, 1),
                "last_error": sink.last_error,
                "lag_measurements": sink.lag_measurements,
                "lag_frames": sink.lag_frames,
                "lag_seconds": round(sink.lag_seconds, 3),
                "cursor": sink.cursor,
                "messages_sent": sink.messages_sent,
                "messages_confirmed": sink.messages_confirmed,
                "receives": {"include": list(sink.include), "exclude": list(sink.exclude), "kinds": list(sink.kinds)},
                "lag_history": {"t": [round(t, 3) for t in times], "seconds": seconds, "measurements": measurements},
            })
        return {"now": now, "routes": out}

    def rejects(self) -> dict:
        status = self.status
        window, recent = self.activity.recent_rejects()

        def listed(counts: dict[str, int]) -> list[dict]:
            return [{"reason": reason, "count": n, "title": reasons.reject(reason).title,
                     "check": reasons.reject(reason).check}
                    for reason, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]

        per_node = {node.node: dict(node.rejects) for node in status.nodes() if node.rejects}
        return {"now": time.time(), "window_s": round(window, 1), "recent": listed(recent),
                "since_start": listed(status.rejects()), "per_node": per_node}

    def modbus(self) -> dict:
        return self._once_per_update("modbus", self._modbus)

    def _modbus(self) -> dict:
        devices = []
        for device in self.status.modbus_devices():
            devices.append({
                "name": device.name, "transport": device.transport, "address": device.address, "unit": device.unit,
                "period_s": device.period, "state": device.state, "polls": device.polls,
                "consecutive_failures": device.consecutive_failures, "last_poll": device.last_poll,
                "last_ok": device.last_ok, "last_error": device.last_error, "last_error_at": device.last_error_at,
                "held": device.held,
            })
        return {"now": time.time(), "devices": devices}

    def health(self) -> tuple[int, dict]:
        """(HTTP status, body) for /healthz: 503 when storage is full (the
        gateway refuses frames), else 200 with what is degraded."""
        status = self.status
        problems = []
        if status.storage_full:
            problems.append("storage full: frames are refused")
        if status.ingest_paused:
            problems.append("ingest paused: processing is behind")
        down = sum(1 for sink in self._sinks() if not sink.connected)
        if down:
            problems.append(f"{down} route(s) disconnected")
        silent = sum(1 for row in self._node_rows(time.time()) if row["state"] == "silent")
        if silent:
            problems.append(f"{silent} node(s) silent")
        state = "failing" if status.storage_full else ("degraded" if problems else "ok")
        return (503 if state == "failing" else 200), {"status": state, "problems": problems}


def _text(value) -> str | None:
    return None if value is None else str(value)


def _step(step: dict) -> dict:
    """A processing step for display: its type and parameters (no secrets
    live in steps)."""
    kind = step.get("type", "?")
    return {"type": kind, "parameters": {k: v for k, v in step.items() if k != "type"}}


def _matches(row: dict, query: NodeQuery) -> bool:
    if query.states and row["state"] not in query.states:
        return False
    if query.text:
        needle = query.text.lower()
        haystack = " ".join(str(x) for x in (row["node"], row["fw"], row["link"]["peer"], row["reset_cause"])
                            if x is not None).lower()
        return needle in haystack
    return True


def _sort_key(sort: str):
    missing_last = float("inf")
    keys = {
        "state": lambda r: (_STATE_RANK[r["state"]], r["node"]),
        "node": lambda r: r["node"],
        "age": lambda r: (r["age_s"] if r["age_s"] is not None else missing_last, r["node"]),
        "fw": lambda r: (r["fw"] or "", r["node"]),
        "uptime": lambda r: (r["uptime_s"] if r["uptime_s"] is not None else missing_last, r["node"]),
        "reset_cause": lambda r: (r["reset_cause"] or "", r["node"]),
        "store_depth": lambda r: (r["store_depth"] if r["store_depth"] is not None else -1, r["node"]),
        "rejects": lambda r: (sum(r["rejects"].values()), r["node"]),
        "link": lambda r: (r["link"]["kind"] or "", r["link"]["peer"] or "", r["node"]),
    }
    return keys[sort]
