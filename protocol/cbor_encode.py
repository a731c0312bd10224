"""Deterministic CBOR encoding of any value in the subset SPEC.md uses
(RFC 8949 §4.2): the gateway's and tools' encoder.  ``cbor.encode`` is this
function; it is a module of its own so a node, which writes its frames with
the ``cbor.write_*`` helpers, never loads it."""

from .cbor import Tag, write_bytes, write_float, write_head, write_int, write_text

_MAX_DEPTH = 16  # as the decoder allows


def _write(out, obj, depth):
    if depth > _MAX_DEPTH:
        raise ValueError("nesting too deep")
    if obj is True:
        out.append(0xF5)
    elif obj is False:
        out.append(0xF4)
    elif obj is None:
        out.append(0xF6)
    elif isinstance(obj, int):
        write_int(out, obj)
    elif isinstance(obj, float):
        write_float(out, obj)
    elif isinstance(obj, str):
        write_text(out, obj)
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        write_bytes(out, bytes(obj))
    elif isinstance(obj, (list, tuple)):
        write_head(out, 4, len(obj))
        for item in obj:
            _write(out, item, depth + 1)
    elif isinstance(obj, dict):
        # Deterministic order: bytewise order of the encoded keys (§4.2.1).
        entries = []
        for key in obj:
            kb = bytearray()
            _write(kb, key, depth + 1)
            entries.append((bytes(kb), key))
        entries.sort()
        write_head(out, 5, len(entries))
        for kb, key in entries:
            out.extend(kb)
            _write(out, obj[key], depth + 1)
    elif isinstance(obj, Tag):
        write_head(out, 6, obj.tag)
        _write(out, obj.value, depth + 1)
    else:
        raise TypeError("cannot encode %r as CBOR" % (type(obj),))


def encode(obj):
    """Deterministically encoded CBOR bytes of ``obj``."""
    out = bytearray()
    _write(out, obj, 0)
    return bytes(out)


def encode(obj):
    """Deterministically encoded CBOR bytes of ``obj``."""
    out = bytearray()
    _write(out, obj, 0)
    return bytes(out)
