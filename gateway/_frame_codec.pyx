# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Compiled twin of ``frame_codec.py`` (which documents the format): the same
bytes for the same columns, the same columns back.  The common frame is
packed with memcpy and C loops; anything else goes through marshal exactly
as the pure twin does."""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.dict cimport PyDict_GetItem, PyDict_SetItem
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_FromDouble
from cpython.ref cimport PyObject
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from cpython.ref cimport Py_INCREF
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport uint8_t, uint16_t
from libc.string cimport memcpy, memset

import marshal
import sys

if sys.byteorder != "little":  # the binary64 fields are copied as they lie in memory
    raise ImportError("the compiled frame codec needs a little-endian machine; the pure twin is used")

IMPLEMENTATION = "cython"

cdef int FORMAT_MARSHAL = 0
cdef int FORMAT_COLUMNS = 1
cdef int FORMAT_COLUMNS_CALIBRATED = 2
cdef int FORMAT_MARSHAL_CALIBRATED = 3
cdef int NONE_INDEX = 0xFF
cdef object _dumps = marshal.dumps
cdef object _loads = marshal.loads


cdef bytes _marshalled(tuple channels, tuple times, tuple values, tuple units, bytes quality, tuple reasons,
                       tuple calibrations):
    if calibrations is None:
        return b"\x00" + _dumps((channels, times, values, units, quality, reasons), 0)  # frame_codec.py: why 0
    return b"\x03" + _dumps((channels, times, values, units, quality, reasons, calibrations), 0)


cdef inline void _put_le16(uint8_t* out, Py_ssize_t value) noexcept:
    out[0] = value & 0xFF
    out[1] = (value >> 8) & 0xFF


cdef inline void _put_double(uint8_t* out, double value) noexcept:
    # binary64, little-endian (x86-64 and ARM64 are little-endian already)
    memcpy(out, &value, 8)


def pack(channels, times, values, units, quality, reasons, calibrations=None):
    cdef tuple c = tuple(channels), t = tuple(times), v = tuple(values), u = tuple(units), r = tuple(reasons)
    cdef tuple a = tuple(calibrations) if calibrations is not None else None
    cdef bytes q = bytes(quality)
    cdef Py_ssize_t n = len(c), i, k, size, at, found_at
    cdef dict names
    cdef list order
    cdef PyObject* found
    cdef bytes encoded
    if n >= 65536:
        return _marshalled(c, t, v, u, q, r, a)
    for i in range(n):
        if type(t[i]) is not float:
            return _marshalled(c, t, v, u, q, r, a)
        value = v[i]
        if value is not None and type(value) is not float:
            return _marshalled(c, t, v, u, q, r, a)
    # the distinct names, in order of first use; index[i] per name of the
    # three columns.  The opener gives equal names as one object, so a
    # pointer comparison with the few known names usually finds it.
    names = {}
    order = []
    cdef PyObject* known[255]
    cdef int columns = 3 if a is None else 4
    cdef uint8_t* index = <uint8_t*> PyMem_Malloc(columns * n + 1)
    cdef int j
    if index == NULL:
        raise MemoryError()
    size = 4
    try:
        k = 0
        for j in range(columns):
            column = (c, u, r, a)[j]
            for i in range(n):
                name = (<tuple> column)[i]
                if name is None:
                    index[j * n + i] = NONE_INDEX
                    continue
                found_at = -1
                for at in range(k):
                    if known[at] == <PyObject*> name:
                        found_at = at
                        break
                if found_at < 0:
                    if type(name) is not str:
                        return _marshalled(c, t, v, u, q, r, a)
                    found = PyDict_GetItem(names, name)
                    if found != NULL:
                        found_at = <Py_ssize_t> <object> found
                    else:
                        if k >= NONE_INDEX - 1:
                            return _marshalled(c, t, v, u, q, r, a)
                        encoded = (<str> name).encode("utf-8")
                        if PyBytes_GET_SIZE(encoded) > 65535:
                            return _marshalled(c, t, v, u, q, r, a)
                        names[name] = k
                        order.append(encoded)
                        known[k] = <PyObject*> name
                        found_at = k
                        k += 1
                        size += 2 + PyBytes_GET_SIZE(encoded)
                index[j * n + i] = <uint8_t> found_at
        return _columns(n, k, size, order, index, t, v, q, a is not None)
    finally:
        PyMem_Free(index)


cdef bytes _columns(Py_ssize_t n, Py_ssize_t k, Py_ssize_t size, list order, const uint8_t* index, tuple t,
                    tuple v, bytes q, bint calibrated):
    cdef bytes out, encoded
    cdef uint8_t* p
    cdef Py_ssize_t at, i, length
    size += 4 * n + (n + 7) // 8 + 16 * n + (n if calibrated else 0)
    out = PyBytes_FromStringAndSize(NULL, size)
    p = <uint8_t*> PyBytes_AS_STRING(out)
    p[0] = FORMAT_COLUMNS_CALIBRATED if calibrated else FORMAT_COLUMNS
    _put_le16(p + 1, n)
    p[3] = <uint8_t> k
    at = 4
    for encoded in order:
        length = PyBytes_GET_SIZE(encoded)
        _put_le16(p + at, length)
        memcpy(p + at + 2, PyBytes_AS_STRING(encoded), length)
        at += 2 + length
    memcpy(p + at, index, 3 * n)
    at += 3 * n
    memcpy(p + at, PyBytes_AS_STRING(q), n)
    at += n
    memset(p + at, 0, (n + 7) // 8)
    for i in range(n):
        if v[i] is None:
            p[at + (i >> 3)] |= 1 << (i & 7)
    at += (n + 7) // 8
    for i in range(n):
        _put_double(p + at + 8 * i, PyFloat_AS_DOUBLE(t[i]))
    at += 8 * n
    for i in range(n):
        value = v[i]
        _put_double(p + at + 8 * i, 0.0 if value is None else PyFloat_AS_DOUBLE(value))
    if calibrated:  # after the values: the calibration column's indexes (frame_codec.py, format 2)
        memcpy(p + at + 8 * n, index + 3 * n, n)
    return out


cdef tuple _names_tuple(const uint8_t* p, Py_ssize_t n, list names):
    cdef tuple out = PyTuple_New(n)
    cdef Py_ssize_t i
    cdef int index
    for i in range(n):
        index = p[i]
        item = None if index == NONE_INDEX else names[index]
        Py_INCREF(item)
        PyTuple_SET_ITEM(out, i, item)
    return out


def unpack(blob):
    cdef bytes data = bytes(blob)
    cdef const uint8_t* p = <const uint8_t*> PyBytes_AS_STRING(data)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(data), n, k, at, i, length
    cdef list names = []
    cdef double value
    cdef tuple times, values
    if size == 0:
        raise ValueError("empty processed-frame record")
    if p[0] == FORMAT_MARSHAL or p[0] == FORMAT_MARSHAL_CALIBRATED:
        return _loads(data[1:])
    if p[0] != FORMAT_COLUMNS and p[0] != FORMAT_COLUMNS_CALIBRATED:
        raise ValueError(f"unknown processed-frame format {p[0]}")
    cdef bint calibrated = p[0] == FORMAT_COLUMNS_CALIBRATED
    n = p[1] | (p[2] << 8)
    k = p[3]
    at = 4
    for i in range(k):
        length = p[at] | (p[at + 1] << 8)
        names.append(PyUnicode_DecodeUTF8(<const char*> p + at + 2, length, NULL))
        at += 2 + length
    if at + 4 * n + (n + 7) // 8 + 16 * n + (n if calibrated else 0) != size:
        raise ValueError("processed-frame record has the wrong length")
    channels = _names_tuple(p + at, n, names)
    units = _names_tuple(p + at + n, n, names)
    reasons = _names_tuple(p + at + 2 * n, n, names)
    at += 3 * n
    quality = PyBytes_FromStringAndSize(<const char*> p + at, n)
    at += n
    cdef const uint8_t* missing = p + at
    at += (n + 7) // 8
    times = PyTuple_New(n)
    for i in range(n):
        memcpy(&value, p + at + 8 * i, 8)
        item = PyFloat_FromDouble(value)
        Py_INCREF(item)
        PyTuple_SET_ITEM(times, i, item)
    at += 8 * n
    values = PyTuple_New(n)
    for i in range(n):
        if missing[i >> 3] >> (i & 7) & 1:
            item = None
        else:
            memcpy(&value, p + at + 8 * i, 8)
            item = PyFloat_FromDouble(value)
        Py_INCREF(item)
        PyTuple_SET_ITEM(values, i, item)
    if calibrated:
        return channels, times, values, units, quality, reasons, _names_tuple(p + at + 8 * n, n, names)
    return channels, times, values, units, quality, reasons
