"""The ``agreement`` table of a route: who shares what with whom, on which
terms, validated into a frozen ``Agreement``.

    [routes.agreement]
    id = "IMT-2026-07"
    version = 2
    parties = [{ name = "Stahlwerk Nord GmbH", role = "provider" },
               { name = "Institut für Metallurgie", role = "recipient" }]
    purpose = "Research on ladle heat losses"
    include = ["furnace-*/tc*"]                   # the channels ("node/channel" patterns)
    exclude = []
    resolution = { period = "1m", aggregates = ["mean", "min", "max", "count"] }   # or "raw"
    delay = "1h"                                  # only measurements older than this
    validity = { from = 2026-03-01T00:00:00Z, until = 2026-09-01T00:00:00Z }
    pseudonyms = { "furnace-1" = "site-A", "furnace-2" = "site-B" }
    fields = ["unit", "reason"]                   # of "unit", "reason", "status"

Every term is part of the version: ``digest()`` covers all of them, and the
gateway refuses to start when the terms of a version it already ran under
changed (``ledger/store.py``: ``record_agreement``).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import re
from dataclasses import dataclass

from ..settings import Table, type_name

AGGREGATES = ("mean", "min", "max", "count")
FIELDS = ("unit", "reason", "status")
DEFAULT_FIELDS = ("unit", "reason")
_KEYS = ("id", "version", "parties", "purpose", "include", "exclude", "resolution", "delay", "validity",
         "pseudonyms", "fields")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$")
_ALIAS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,31}$")  # as a node id (keys.py): safe in topics


@dataclass(frozen=True, slots=True)
class Party:
    name: str
    role: str


@dataclass(frozen=True, slots=True)
class Resolution:
    """``period`` None: raw measurements; else aggregates over aligned periods
    of that many seconds (a period starts at a multiple of it since the Unix
    epoch: 1-minute periods start on the minute), closed when the channel's
    next reading is past the period or ``grace`` seconds after its end
    (plus the delay)."""

    period: float | None = None
    aggregates: tuple[str, ...] = ()
    grace: float = 10.0

    @property
    def raw(self) -> bool:
        return self.period is None


@dataclass(frozen=True, slots=True)
class Agreement:
    id: str
    version: int
    parties: tuple[Party, ...]
    purpose: str
    include: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    resolution: Resolution = Resolution()
    delay: float = 0.0  # seconds
    valid_from: float | None = None  # Unix s
    valid_until: float | None = None
    pseudonyms: tuple[tuple[str, str], ...] = ()  # (node, alias), in file order
    fields: tuple[str, ...] = DEFAULT_FIELDS

    @property
    def kinds(self) -> tuple[str, ...]:
        """The frame kinds this agreement shares (node diagnostics: "status")."""
        return ("data", "status") if "status" in self.fields else ("data",)

    @property
    def aliases(self) -> dict[str, str]:
        return dict(self.pseudonyms)

    def terms(self) -> dict:
        """Everything the parties agreed, as plain data (JSON-ready)."""
        return {
            "id": self.id, "version": self.version,
            "parties": [{"name": p.name, "role": p.role} for p in self.parties],
            "purpose": self.purpose, "include": list(self.include), "exclude": list(self.exclude),
            "resolution": "raw" if self.resolution.raw else {
                "period": self.resolution.period, "aggregates": list(self.resolution.aggregates),
                "grace": self.resolution.grace},
            "delay": self.delay, "valid_from": self.valid_from, "valid_until": self.valid_until,
            "pseudonyms": dict(self.pseudonyms), "fields": list(self.fields),
        }

    def digest(self) -> str:
        text = json.dumps(self.terms(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()

    def state(self, now: float) -> tuple[bool, str]:
        """(in force, why not / until when) at ``now``: deliveries happen from
        ``valid_from`` until ``valid_until`` plus the delay (so the last
        embargoed measurements of a campaign still go out)."""
        if self.valid_from is not None and now < self.valid_from:
            return False, f"not in force before {utc(self.valid_from)}"
        if self.valid_until is not None and now >= self.valid_until + self.delay:
            return False, f"expired: valid until {utc(self.valid_until)}" + (
                f" (+ its {duration_text(self.delay)} delay)" if self.delay else "")
        if self.valid_until is not None:
            return True, f"in force until {utc(self.valid_until)}"
        return True, "in force"


def parse_agreement(raw: object, where: str) -> Agreement:
    table = Table(raw, where, _KEYS)
    table.finish()
    agreement_id = table.text("id")
    if not _ID.match(agreement_id):
        raise table.error("id", f"{agreement_id!r} is not a valid agreement id: 1-64 letters, digits and . _ : / - "
                                "(starting with a letter or digit)")
    version = table.integer("version", low=1)
    parties = _parties(table)
    purpose = table.text("purpose")
    include = table.strings("include", what='node/channel patterns such as ["furnace-*/tc*"]', non_empty=True)
    exclude = table.strings("exclude", (), what='node/channel patterns such as ["furnace-9/*"]')
    resolution = _resolution(table)
    delay = table.duration("delay", 0.0, 0.0, 366 * 86400.0)
    valid_from, valid_until = _validity(table)
    pseudonyms = _pseudonyms(table)
    fields = table.strings("fields", DEFAULT_FIELDS, what=f"field names of {', '.join(FIELDS)}")
    unknown = [f for f in fields if f not in FIELDS]
    if unknown:
        raise table.error("fields", f"{unknown[0]!r} is not a field the gateway can share; choose from "
                                    f"{', '.join(FIELDS)} (measurement values, times and quality always travel)")
    return Agreement(agreement_id, version, parties, purpose, include, exclude, resolution, delay, valid_from,
                     valid_until, pseudonyms, tuple(dict.fromkeys(fields)))


def _parties(table: Table) -> tuple[Party, ...]:
    if not table.has("parties"):
        raise table.missing("parties", 'an array of { name = "...", role = "..." } (provider and recipient)')
    raw = table.get("parties")
    if not isinstance(raw, list) or len(raw) < 2:
        raise table.wrong("parties", 'an array of at least two { name = "...", role = "..." } tables '
                                     "(who provides, who receives)", raw)
    parties = []
    for i, item in enumerate(raw):
        party = Table(item, f"{table.at('parties')}[{i}]", ("name", "role"))
        party.finish()
        parties.append(Party(party.text("name"), party.text("role")))
    names = [p.name for p in parties]
    if len(set(names)) != len(names):
        raise table.error("parties", "names a party twice")
    return tuple(parties)


def _resolution(table: Table) -> Resolution:
    raw = table.get("resolution", "raw")
    if raw == "raw":
        return Resolution()
    if not isinstance(raw, dict):
        raise table.wrong("resolution", '"raw" or a table { period = "1m", aggregates = ["mean", "max"] }', raw)
    sub = Table(raw, table.at("resolution"), ("period", "aggregates", "grace"))
    sub.finish()
    period = sub.duration("period", low=1.0, high=7 * 86400.0)
    if period != int(period):
        raise sub.error("period", f"must be whole seconds, not {period:g}")
    aggregates = sub.strings("aggregates", AGGREGATES, non_empty=True, what=f"aggregates of {', '.join(AGGREGATES)}")
    unknown = [a for a in aggregates if a not in AGGREGATES]
    if unknown:
        raise sub.error("aggregates", f"{unknown[0]!r} is not an aggregate; choose from {', '.join(AGGREGATES)}")
    grace = sub.duration("grace", 10.0, 0.0, 86400.0)
    return Resolution(float(period), tuple(dict.fromkeys(aggregates)), grace)


def _validity(table: Table) -> tuple[float | None, float | None]:
    if not table.has("validity"):
        return None, None
    sub = table.table("validity", ("from", "until"))
    sub.finish()
    start = _instant(sub, "from")
    end = _instant(sub, "until")
    if start is None and end is None:
        raise table.error("validity", "is empty; give from and/or until (e.g. from = 2026-03-01T00:00:00Z)")
    if start is not None and end is not None and not start < end:
        raise sub.error("until", f"{utc(end)} is not after from ({utc(start)})")
    return start, end


def _instant(table: Table, key: str) -> float | None:
    """A TOML offset date-time (or a date, meaning 00:00 UTC), or the same as
    ISO 8601 text, as Unix seconds."""
    if not table.has(key):
        return None
    value = table.get(key)
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise table.wrong(key, "a date-time with its offset such as 2026-03-01T00:00:00Z", value) from None
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            raise table.error(key, f"{value.isoformat()} has no time zone; write it with Z or an offset "
                                   "(2026-03-01T00:00:00Z, 2026-03-01T01:00:00+01:00)")
        return value.timestamp()
    if isinstance(value, datetime.date):
        return datetime.datetime(value.year, value.month, value.day, tzinfo=datetime.timezone.utc).timestamp()
    raise table.error(key, f"must be a date-time such as 2026-03-01T00:00:00Z, not {type_name(value)}")


def _pseudonyms(table: Table) -> tuple[tuple[str, str], ...]:
    raw = table.get("pseudonyms", {})
    if not isinstance(raw, dict):
        raise table.wrong("pseudonyms", 'a table of node = "alias"', raw)
    seen: dict[str, str] = {}
    for node, alias in raw.items():
        if not isinstance(alias, str) or not _ALIAS.match(alias):
            raise table.error(f'pseudonyms."{node}"',
                              f"{alias!r} is not a valid alias: 1-32 letters, digits and . _ : - (as a node id)")
        if alias in seen:
            raise table.error(f'pseudonyms."{node}"',
                              f"alias {alias!r} is already the alias of {seen[alias]!r}; each node needs its own")
        seen[alias] = node
    return tuple(raw.items())


def utc(at: float) -> str:
    moment = datetime.datetime.fromtimestamp(at, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment.microsecond == 0 else moment.isoformat()


def duration_text(seconds: float) -> str:
    """1 h, 15 min, 30 s, 1 d 6 h: how the docs and ``smemet agreements show`` write durations."""
    if seconds <= 0 or not math.isfinite(seconds):
        return "none"
    parts = []
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min"), (1, "s")):
        if seconds >= size:
            count = int(seconds // size)
            seconds -= count * size
            parts.append(f"{count} {unit}")
    if seconds > 1e-9:
        parts.append(f"{seconds:g} s")
    return " ".join(parts)
