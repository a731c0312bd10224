# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Compiled twin of ``writer.py``: the same payload bytes, written into one
growing buffer per payload.

What it costs goes into numbers: Python's float repr takes 0.3-0.7 µs for
the 17-digit doubles processing produces, twice per measurement.  orjson
(Ryu) writes a whole frame's times, and its values when they are all floats,
in one call each, with the same shortest digits.  Where repr writes an
exponent (below 1e-4 and from 1e16 on in magnitude) orjson's notation
differs, so those few are written with repr instead and the bytes stay
json.dumps's (test_routes_writer.py checks every payload against the
reference).

A reading of an unprocessed channel (``untouched(node, channel)``) that is
exactly a binary32 is written as the shortest decimal that round-trips at
binary32: ``_printed`` is the C twin of binary32.as_printed (snprintf's
correctly rounded %.*g and strtod, as Python's own formatting).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.math cimport fabs, isfinite
from libc.stdio cimport snprintf
from libc.stdlib cimport strtod
from libc.string cimport memchr, memcpy

from json.encoder import encode_basestring_ascii as _json_str

import orjson

from ...spine import KIND_NAMES as _KIND_NAMES, QUALITY_NAMES as _QUALITY_NAMES

IMPLEMENTATION = "cython"

cdef object _dumps = orjson.dumps
cdef object _float_repr = float.__repr__
cdef object _int_repr = int.__repr__
cdef tuple _QUALITY_PART = tuple((',"quality":"%s"' % name).encode() for name in _QUALITY_NAMES)
cdef tuple _QUALITY_TEXT = tuple(('"%s"' % name).encode() for name in _QUALITY_NAMES)
cdef tuple _KIND_TEXT = tuple(('"%s"' % name).encode() for name in _KIND_NAMES)
cdef Py_ssize_t _CACHE_LIMIT = 100_000  # names come from nodes: bounded


class _Unusual(Exception):
    """A row the writer does not handle: the frame goes through the reference."""


cdef struct Buffer:
    char* data
    Py_ssize_t size
    Py_ssize_t room


cdef int _put(Buffer* out, const char* text, Py_ssize_t n) except -1:
    cdef Py_ssize_t need = out.size + n
    cdef char* grown
    if need > out.room:
        grown = <char*> PyMem_Realloc(out.data, 2 * need + 256)
        if grown == NULL:
            raise MemoryError()
        out.data = grown
        out.room = 2 * need + 256
    memcpy(out.data + out.size, text, n)
    out.size = need
    return 0


cdef inline int _put_bytes(Buffer* out, bytes text) except -1:
    return _put(out, PyBytes_AS_STRING(text), PyBytes_GET_SIZE(text))


cdef inline int _put_str(Buffer* out, str text) except -1:
    """Append ASCII text (what encode_basestring_ascii and repr give)."""
    return _put_bytes(out, text.encode("ascii"))


cdef list _number_texts(tuple numbers):
    """The JSON text of each number in ``numbers`` (floats and ints; None
    for a non-finite float: null), as json.dumps writes them."""
    cdef bytes joined = _dumps(numbers)
    cdef const char* data = PyBytes_AS_STRING(joined)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(joined), start = 1, end, k = 0
    cdef list texts = []
    cdef const char* comma
    cdef bytes text
    cdef double x
    while start < size - 1:
        comma = <const char*> memchr(data + start, 44, size - 1 - start)  # ","
        end = (comma - data) if comma != NULL else size - 1
        number = numbers[k]
        if type(number) is float:
            x = fabs(PyFloat_AS_DOUBLE(number))
            if x != 0.0 and (x < 1e-4 or x >= 1e16) and isfinite(x):  # repr writes an exponent here
                text = _float_repr(number).encode("ascii")
            else:
                text = PyBytes_FromStringAndSize(data + start, end - start)
        else:
            text = PyBytes_FromStringAndSize(data + start, end - start)
        texts.append(text)
        start = end + 1
        k += 1
    return texts


cdef double _FLOAT32_MAX = 3.4028234663852886e38
cdef Py_ssize_t _SHORTEST_CACHED = 1 << 16  # readings whose shortest decimal is kept (then forgotten at once)


cdef double _printed(double x):
    """binary32.as_printed: the binary64 whose repr is the shortest decimal
    rounding back to ``x`` in binary32 (``x`` when not exactly a binary32)."""
    cdef char text[40]
    cdef int digits
    cdef double candidate
    if x == 0.0 or not (fabs(x) <= _FLOAT32_MAX) or <double> (<float> x) != x:
        return x
    cdef int low = 1, high = 9
    cdef double best
    snprintf(text, 40, b"%.9g", x)
    best = strtod(text, NULL)
    while low < high:  # by halves, as binary32.as_printed
        digits = (low + high) // 2
        snprintf(text, 40, b"%.*g", digits, x)
        candidate = strtod(text, NULL)
        if <double> (<float> candidate) == x:
            best = candidate
            high = digits
        else:
            low = digits + 1
    return best


cdef inline bint _all_floats(tuple values):
    for value in values:
        if type(value) is not float:
            return False
    return True


cdef class PayloadWriter:
    cdef dict _heads  # (node, channel) -> b'{"n":"node/channel","t":'
    cdef dict _units  # unit -> b',"u":"Cel"'
    cdef dict _json_names  # name -> its JSON string
    cdef object _untouched  # (node, channel) -> True when unprocessed, or None
    cdef dict _singles  # (node, channel) -> untouched
    cdef dict _shortest  # binary32 reading -> its shortest decimal (as the binary64 whose repr it is)

    def __init__(self, untouched=None):
        self._heads = {}
        self._units = {None: b"", "": b""}
        self._json_names = {}
        self._untouched = untouched
        self._singles = {}
        self._shortest = {}

    cdef bint _single(self, str node, object channel) except -1:
        key = (node, channel)
        single = self._singles.get(key)
        if single is None:
            single = bool(self._untouched(node, channel))
            if len(self._singles) < _CACHE_LIMIT:
                self._singles[key] = single
        return <bint> single

    cdef tuple _as_travelled(self, str node, tuple channels, tuple values):
        """The values with each untouched binary32 reading at its own precision."""
        cdef list out = None
        cdef Py_ssize_t i
        cdef double x
        for i in range(len(values)):
            value = values[i]
            if type(value) is float and self._single(node, channels[i]):
                x = PyFloat_AS_DOUBLE(value)
                if x == 0.0 or x != x:  # zeros (a cache would take -0.0 for 0.0) and NaN print as they are
                    continue
                # A converter's readings are quantised (a MAX31856: 1/128 °C), so
                # the same values come again and again; the search for the
                # shortest decimal (up to five snprintf + strtod) is done once each.
                printed = self._shortest.get(value)
                if printed is None:
                    if len(self._shortest) >= _SHORTEST_CACHED:
                        self._shortest.clear()
                    printed = self._shortest[value] = _printed(x)
                if PyFloat_AS_DOUBLE(printed) != x:
                    if out is None:
                        out = list(values)
                    out[i] = printed
        return tuple(out) if out is not None else values

    cdef bytes _head(self, str node, object channel):
        key = (node, channel)
        head = self._heads.get(key)
        if head is None:
            if type(channel) is not str:
                raise _Unusual
            head = ('{"n":' + _json_str(f"{node}/{channel}") + ',"t":').encode("ascii")
            if len(self._heads) < _CACHE_LIMIT:
                self._heads[key] = head
        return <bytes> head

    cdef bytes _unit(self, object unit):
        part = self._units.get(unit)
        if part is None:
            if type(unit) is not str:
                raise _Unusual
            part = (',"u":' + _json_str(unit)).encode("ascii")
            if len(self._units) < _CACHE_LIMIT:
                self._units[unit] = part
        return <bytes> part

    cdef bytes _name(self, object name):
        """A text as a JSON string (cached: node and channel names repeat)."""
        text = self._json_names.get(name)
        if text is None:
            if type(name) is not str:
                raise _Unusual
            text = _json_str(name).encode("ascii")
            if len(self._json_names) < _CACHE_LIMIT:
                self._json_names[name] = text
        return <bytes> text

    def senml_payload(self, frame):
        """One SenML-JSON pack for the frame (payload.senml_payload's bytes)."""
        try:
            return self._senml(frame)
        except (_Unusual, KeyError, TypeError, orjson.JSONEncodeError):
            from .payload import senml_payload

            return senml_payload(list(frame.measurements()), self._untouched)

    def json_payloads(self, frame):
        """One JSON document per measurement (payload.json_payload's bytes)."""
        try:
            return self._json(frame)
        except (_Unusual, KeyError, TypeError, orjson.JSONEncodeError):
            from .payload import json_payload

            return [json_payload(m, self._untouched is not None and bool(self._untouched(m.node, m.channel)))
                    for m in frame.measurements()]

    cdef bytes _value_text(self, object value, bint senml):
        """``,"v":...`` style parts are built by the callers; this gives the
        JSON of a non-float value (json: the "value" field)."""
        kind = type(value)
        if value is None:
            return b"null"
        if kind is bool:
            return b"true" if value else b"false"
        if kind is int:
            return _int_repr(value).encode("ascii")
        if kind is str:
            return _json_str(value).encode("ascii")
        if kind is bytes:
            return b'"' + value.hex().encode("ascii") + b'"'
        if kind is float:
            if not isfinite(PyFloat_AS_DOUBLE(value)):
                return b"null"
            return _float_repr(value).encode("ascii")
        raise _Unusual

    cdef bytes _senml(self, frame):
        cdef str node = frame.node
        seq = frame.seq
        if type(seq) is not int or type(node) is not str:
            raise _Unusual
        cdef tuple channels = tuple(frame.channels), times = tuple(frame.times), values = tuple(frame.values)
        cdef tuple units = tuple(frame.units), reasons = tuple(frame.reasons)
        cdef object calibrations = frame.calibrations  # None for every frame without calibration records
        cdef bytes quality = bytes(frame.quality)
        cdef Py_ssize_t n = len(channels), i
        if self._untouched is not None:
            values = self._as_travelled(node, channels, values)
        cdef list time_texts = _number_texts(times)
        cdef list value_texts = _number_texts(values) if _all_floats(values) else None
        cdef bytes frame_part = b',"node":' + self._name(node) + b',"seq":' + _int_repr(seq).encode("ascii")
        cdef bytes kind_part = b"}" if frame.kind == 0 else b',"kind":' + _KIND_TEXT[frame.kind] + b"}"
        cdef bytes text
        cdef Buffer out
        cdef unsigned char q
        out.data = <char*> PyMem_Malloc(160 * n + 16)
        out.size = 0
        out.room = 160 * n + 16
        if out.data == NULL:
            raise MemoryError()
        try:
            _put(&out, b"[", 1)
            for i in range(n):
                if i:
                    _put(&out, b",", 1)
                _put_bytes(&out, self._head(node, channels[i]))
                _put_bytes(&out, <bytes> time_texts[i])
                _put_bytes(&out, self._unit(units[i]))
                value = values[i]
                if value_texts is not None:
                    text = <bytes> value_texts[i]
                    if text != b"null":  # a non-finite value: no "v"
                        _put(&out, b',"v":', 5)
                        _put_bytes(&out, text)
                elif value is None:
                    pass
                elif type(value) is float:
                    if isfinite(PyFloat_AS_DOUBLE(value)):
                        _put(&out, b',"v":', 5)
                        _put_bytes(&out, _float_repr(value).encode("ascii"))
                elif type(value) is int:
                    _put(&out, b',"v":', 5)
                    _put_bytes(&out, _int_repr(value).encode("ascii"))
                elif type(value) is bool:
                    _put_bytes(&out, b',"vb":true' if value else b',"vb":false')
                elif type(value) is str or type(value) is bytes:
                    _put(&out, b',"vs":', 6)
                    _put_bytes(&out, self._value_text(value, True))
                else:
                    raise _Unusual
                _put_bytes(&out, frame_part)
                q = quality[i]
                reason = reasons[i]
                _put_bytes(&out, <bytes> _QUALITY_PART[q])
                if not (q == 0 and not reason):
                    if reason is None:
                        _put(&out, b',"reason":null', 14)
                    elif type(reason) is str:
                        _put(&out, b',"reason":', 10)
                        _put_bytes(&out, _json_str(reason).encode("ascii"))
                    else:
                        raise _Unusual
                if calibrations is not None and calibrations[i] is not None:  # payload.py: after the reason
                    _put(&out, b',"calibration":', 15)
                    _put_bytes(&out, self._name(calibrations[i]))
                _put_bytes(&out, kind_part)
            _put(&out, b"]", 1)
            return PyBytes_FromStringAndSize(out.data, out.size)
        finally:
            PyMem_Free(out.data)

    cdef list _json(self, frame):
        cdef str node = frame.node
        seq = frame.seq
        if type(seq) is not int or type(node) is not str:
            raise _Unusual
        cdef tuple channels = tuple(frame.channels), times = tuple(frame.times), values = tuple(frame.values)
        cdef tuple units = tuple(frame.units), reasons = tuple(frame.reasons)
        cdef object calibrations = frame.calibrations
        cdef bytes quality = bytes(frame.quality)
        cdef Py_ssize_t n = len(channels), i
        if self._untouched is not None:
            values = self._as_travelled(node, channels, values)
        cdef list time_texts = _number_texts(times)
        cdef list value_texts = _number_texts(values) if _all_floats(values) else None
        cdef bytes head = b'{"node":' + self._name(node) + b',"seq":' + _int_repr(seq).encode("ascii") + b',"channel":'
        cdef bytes tail = b',"kind":' + _KIND_TEXT[frame.kind] + b"}"
        cdef list out = []
        cdef Buffer doc
        doc.data = <char*> PyMem_Malloc(256)
        doc.room = 256
        if doc.data == NULL:
            raise MemoryError()
        try:
            for i in range(n):
                doc.size = 0
                _put_bytes(&doc, head)
                _put_bytes(&doc, self._name(channels[i]))
                _put(&doc, b',"time":', 8)
                _put_bytes(&doc, <bytes> time_texts[i])
                _put(&doc, b',"value":', 9)
                _put_bytes(&doc, <bytes> value_texts[i] if value_texts is not None else self._value_text(values[i], False))
                _put(&doc, b',"unit":', 8)
                unit = units[i]
                _put_bytes(&doc, b"null" if unit is None else self._name(unit))
                _put(&doc, b',"quality":', 11)
                _put_bytes(&doc, <bytes> _QUALITY_TEXT[quality[i]])
                _put(&doc, b',"reason":', 10)
                reason = reasons[i]
                if reason is None:
                    _put(&doc, b"null", 4)
                elif type(reason) is str:
                    _put_bytes(&doc, _json_str(reason).encode("ascii"))
                else:
                    raise _Unusual
                if calibrations is not None and calibrations[i] is not None:
                    _put(&doc, b',"calibration":', 15)
                    _put_bytes(&doc, self._name(calibrations[i]))
                _put_bytes(&doc, tail)
                out.append(PyBytes_FromStringAndSize(doc.data, doc.size))
            return out
        finally:
            PyMem_Free(doc.data)
