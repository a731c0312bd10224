"""Resolving SenML-CBOR packs (RFC 8428 §4.6) the way SPEC.md §3 says a
gateway must: absolute names and times, fault and quality rules, and the
rejections (invalid-senml, must-understand)."""

from .errors import error

_INF = float("inf")


def _finite(x):
    return x is not None and x == x and x != _INF and x != -_INF

# RFC 8428 §6 integer labels.  Ascending encoded order of map keys is
# 0..7 (major type 0), then -1..-6 (major type 1), then text keys.
BVER = -1
BN = -2
BT = -3
BU = -4
BV = -5
BS = -6
N = 0
U = 1
V = 2
VS = 3
VB = 4
S = 5
T = 6
UT = 7
VD = 8
Q = "q"  # SME-MET quality label: not must-understand, so plain SenML readers may ignore it

SENML_VERSION = 10
RELATIVE_LIMIT = 268435456  # 2**28: smaller times are relative to "now"

QUALITY_GOOD = "good"
QUALITY_UNCERTAIN = "uncertain"
QUALITY_BAD = "bad"

# Relative times a gateway cannot vouch for (SPEC §3.4): good records with
# such a time become uncertain with one of these reasons.
AGE_LOWER_BOUND = "age-lower-bound"  # the node flagged its age as a lower bound
AGE_OVER_30_DAYS = "age-over-30-days"
MAX_TRUSTED_AGE_MS = 30 * 86400 * 1000


def time_doubt(age_ms, age_floor):
    """The reason relative times of a frame with this age are uncertain, or None."""
    if age_floor:
        return AGE_LOWER_BOUND
    if age_ms is not None and age_ms > MAX_TRUSTED_AGE_MS:
        return AGE_OVER_30_DAYS
    return None


class Record:
    """A resolved SenML record: absolute name and time, unit, value."""

    def __init__(self, name, unit, value, time, quality=QUALITY_GOOD, reason=None):
        self.name = name
        self.unit = unit
        self.value = value
        self.time = time
        self.quality = quality
        self.reason = reason

    def as_dict(self):
        out = {"name": self.name, "unit": self.unit, "value": self.value, "time": self.time}
        if self.quality != QUALITY_GOOD:
            out["quality"] = self.quality
            out["reason"] = self.reason
        return out

    def __repr__(self):
        return "Record(%r)" % (self.as_dict(),)


_NAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-:./_"
_KNOWN_LABELS = (BVER, BN, BT, BU, BV, BS, N, U, V, VS, VB, S, T, UT, VD, Q)


def _is_number(x):
    return (isinstance(x, int) and not isinstance(x, bool)) or isinstance(x, float)


def _check_name(name):
    if not name or name[0] not in _NAME_CHARS[:62]:
        raise error("invalid-senml", "record name %r must start with a letter or digit" % (name,))
    for ch in name:
        if ch not in _NAME_CHARS:
            raise error("invalid-senml", "record name %r has a character SenML does not allow" % (name,))


def resolve(pack, reference_time, faults=True, doubt=None):
    """Resolved records of a decoded SenML-CBOR pack.

    ``reference_time`` (Unix seconds) is "now" for relative times: the time
    the frame was built as the gateway reckons it.  With ``faults`` (data
    packs) a string value on a record is a sensor fault state (SPEC.md §3.5);
    status packs carry ordinary string values.  ``doubt`` (``time_doubt``)
    makes good records with a relative time uncertain for that reason.
    """
    if not isinstance(pack, list):
        raise error("invalid-senml", "SenML pack must be an array of records")
    if not pack:
        raise error("invalid-senml", "SenML pack is empty")
    records = []
    bn = ""
    bt = 0
    bu = None
    bv = 0
    for entry in pack:
        if not isinstance(entry, dict):
            raise error("invalid-senml", "SenML record must be a map")
        for label in entry:
            if label not in _KNOWN_LABELS:
                if isinstance(label, str) and label.endswith("_"):
                    raise error("must-understand", "record has must-understand label %r this gateway does not know" % (label,))
                if not isinstance(label, (int, str)):
                    raise error("invalid-senml", "SenML label %r is neither integer nor text" % (label,))
        version = entry.get(BVER, SENML_VERSION)
        if not isinstance(version, int) or version > SENML_VERSION:
            raise error("must-understand", "SenML version %r is newer than %d" % (version, SENML_VERSION))
        if BN in entry:
            bn = entry[BN]
            if not isinstance(bn, str):
                raise error("invalid-senml", "base name must be text")
        if BT in entry:
            bt = entry[BT]
            if not _is_number(bt) or not _finite(bt):
                raise error("invalid-senml", "base time must be a finite number")
        if BU in entry:
            bu = entry[BU]
            if not isinstance(bu, str):
                raise error("invalid-senml", "base unit must be text")
        if BV in entry:
            bv = entry[BV]
            if not _is_number(bv):
                raise error("invalid-senml", "base value must be a number")
        name = entry.get(N, "")
        if not isinstance(name, str):
            raise error("invalid-senml", "name must be text")
        name = bn + name
        _check_name(name)
        unit = entry.get(U, bu)
        if unit is not None and not isinstance(unit, str):
            raise error("invalid-senml", "unit must be text")
        t = entry.get(T, 0)
        if not _is_number(t) or not _finite(t):
            raise error("invalid-senml", "time must be a finite number")
        time = bt + t
        relative = time < RELATIVE_LIMIT
        if relative:
            time = reference_time + time
        present = [label for label in (V, VS, VB, VD, S) if label in entry]
        if len(present) != 1:
            raise error("invalid-senml", "record %r must carry exactly one value" % (name,))
        label = present[0]
        value = entry[label]
        quality = QUALITY_GOOD
        reason = None
        if label == V or label == S:
            if not _is_number(value):
                raise error("invalid-senml", "numeric value of %r is not a number" % (name,))
            value = bv + value
            if not _finite(value):
                value, quality, reason = None, QUALITY_BAD, "non-finite"
            elif Q in entry:
                reason = entry[Q]
                if not isinstance(reason, str):
                    raise error("invalid-senml", "quality of %r must be text" % (name,))
                quality = QUALITY_UNCERTAIN
        elif label == VS:
            if not isinstance(value, str):
                raise error("invalid-senml", "string value of %r is not text" % (name,))
            if faults:
                value, quality, reason = None, QUALITY_BAD, value
                unit = None
        elif label == VB:
            if not isinstance(value, bool):
                raise error("invalid-senml", "boolean value of %r is not a boolean" % (name,))
        elif not isinstance(value, bytes):
            raise error("invalid-senml", "data value of %r is not a byte string" % (name,))
        if relative and doubt and quality == QUALITY_GOOD:
            quality, reason = QUALITY_UNCERTAIN, doubt
        records.append(Record(name, unit, value, time, quality, reason))
    return records
