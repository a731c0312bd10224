# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled twin of ``reference.py``: the protocol's reference codec
(cbor.decode, cose.parse, Mac0.verify, resolve.resolve, cose.create) ported
check for check, message for message.

The CBOR items it builds are the objects the reference builds (lists,
dicts, ``cbor.Tag``; Python ints, floats, text, bytes), and every test on
them uses Python's own semantics (``isinstance``, ``==``, dict look-ups), so
the two judge every input alike -- a key ``2.0`` is the label ``2`` in both.
What is compiled is the byte reading, the loops and the MAC structure; the
MAC itself is OpenSSL's, through ``_hashlib``.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_FromStringAndSize, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.dict cimport PyDict_Contains, PyDict_GetItem, PyDict_SetItem
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.list cimport PyList_Append
from cpython.long cimport PyLong_FromUnsignedLongLong
from cpython.ref cimport Py_INCREF, Py_XDECREF, PyObject
from cpython.unicode cimport (PyUnicode_1BYTE_KIND, PyUnicode_DATA, PyUnicode_DecodeASCII, PyUnicode_DecodeUTF8,
                              PyUnicode_GET_LENGTH, PyUnicode_KIND)
from libc.math cimport isfinite, ldexp
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy, memset

import hmac as _hmac

from smemet.protocol import cbor as _cbor
from smemet.protocol import messages as _messages
from smemet.protocol import resolve as _resolve
from smemet.protocol.errors import error as _error

from .. import quality as _codes
from ..spine import OpenedFrame
from .header import Header

try:
    from _hashlib import compare_digest as _compare_digest, hmac_new as _hmac_new
except ImportError:  # a Python without OpenSSL's HMAC: the stdlib's
    _compare_digest = _hmac.compare_digest

    def _hmac_new(key, digestmod):
        return _hmac.new(key, digestmod=digestmod)

IMPLEMENTATION = "cython"

_Tag = _cbor.Tag
_node_name = _messages.node_name

cdef int MAX_DEPTH = 16
cdef Py_ssize_t MAX_FRAME = 1024
cdef int MAC_LEN = 8
cdef int MAX_KID = 32
cdef object CT_SENML = _messages.CT_SENML
cdef object CT_STATUS = _messages.CT_STATUS
cdef object CT_ACK = _messages.CT_ACK
cdef tuple NODE_TO_GATEWAY = (CT_SENML, CT_STATUS)

# header labels (cose.py) as the objects dict look-ups use
cdef object H_ALG = 1
cdef object H_CRIT = 2
cdef object H_CONTENT_TYPE = 3
cdef object H_KID = 4
cdef object H_PARTIAL_IV = 6
cdef object H_AGE_MS = -65537
cdef object H_AGE_FLOOR = -65538
cdef object ALG_HMAC_256_64 = 4

# SenML labels (resolve.py)
cdef object L_BVER = _resolve.BVER
cdef object L_BN = _resolve.BN
cdef object L_BT = _resolve.BT
cdef object L_BU = _resolve.BU
cdef object L_BV = _resolve.BV
cdef object L_N = _resolve.N
cdef object L_U = _resolve.U
cdef object L_V = _resolve.V
cdef object L_VS = _resolve.VS
cdef object L_VB = _resolve.VB
cdef object L_VD = _resolve.VD
cdef object L_S = _resolve.S
cdef object L_T = _resolve.T
cdef object L_Q = _resolve.Q
cdef tuple KNOWN_LABELS = _resolve._KNOWN_LABELS
cdef tuple VALUE_LABELS = (L_V, L_VS, L_VB, L_VD, L_S)
cdef object SENML_VERSION = _resolve.SENML_VERSION
cdef object RELATIVE_LIMIT = _resolve.RELATIVE_LIMIT
cdef object ZERO = 0
cdef str EMPTY = ""
cdef str NON_FINITE = "non-finite"
cdef unsigned char Q_GOOD = _codes.GOOD
cdef unsigned char Q_UNCERTAIN = _codes.UNCERTAIN
cdef unsigned char Q_BAD = _codes.BAD

# resolve._NAME_CHARS: the first 62 may start a name
cdef unsigned char NAME_FIRST[128]
cdef unsigned char NAME_CHAR[128]


cdef void _init_names():
    cdef int i
    for i in range(128):
        NAME_FIRST[i] = 0
        NAME_CHAR[i] = 0
    for i, ch in enumerate(_resolve._NAME_CHARS):
        NAME_CHAR[ord(ch)] = 1
        if i < 62:
            NAME_FIRST[ord(ch)] = 1


_init_names()


cdef inline object _malformed(str message):
    return _error("malformed", message)


# ---------------------------------------------------------------- CBOR (cbor.decode)

cdef class _Reader:
    cdef bytes data
    cdef const uint8_t* buf
    cdef Py_ssize_t pos, size

    def __cinit__(self, bytes data):
        self.data = data
        self.buf = <const uint8_t*> PyBytes_AS_STRING(data)
        self.size = PyBytes_GET_SIZE(data)
        self.pos = 0

    cdef inline Py_ssize_t skip(self, uint64_t n) except -1:
        cdef Py_ssize_t start = self.pos
        if n > <uint64_t> (self.size - start):
            raise _malformed("CBOR truncated")
        self.pos = start + <Py_ssize_t> n
        return start

    cdef uint64_t argument(self, int info) except? 0xFFFFFFFFFFFFFFFF:
        cdef Py_ssize_t start, i
        cdef uint64_t value = 0
        if info < 24:
            return info
        if info > 27:
            if info == 31:
                raise _malformed("CBOR indefinite length is not allowed")
            raise _malformed("CBOR reserved additional information %d" % info)
        start = self.skip(1 << (info - 24))
        for i in range(start, self.pos):
            value = (value << 8) | self.buf[i]
        return value

    cdef object item(self, int depth):
        cdef int initial, major, info
        cdef uint64_t n
        cdef Py_ssize_t start, i
        cdef list result
        cdef dict mapping
        if depth > MAX_DEPTH:
            raise _malformed("CBOR nested too deep")
        initial = self.buf[self.skip(1)]
        major = initial >> 5
        info = initial & 0x1F
        if major == 7:
            return self.simple(info)
        n = self.argument(info)
        if major == 0:
            return PyLong_FromUnsignedLongLong(n)
        if major == 1:
            return -1 - PyLong_FromUnsignedLongLong(n)
        if major == 2:
            start = self.skip(n)
            return PyBytes_FromStringAndSize(<const char*> self.buf + start, <Py_ssize_t> n)
        if major == 3:
            start = self.skip(n)
            try:
                return PyUnicode_DecodeUTF8(<const char*> self.buf + start, <Py_ssize_t> n, NULL)
            except UnicodeError:
                raise _malformed("CBOR text string is not UTF-8")
        if major == 4:
            if n > <uint64_t> (self.size - self.pos):  # each item needs at least a byte
                raise _malformed("CBOR truncated")
            result = [None] * <Py_ssize_t> n
            for i in range(<Py_ssize_t> n):
                result[i] = self.item(depth + 1)
            return result
        if major == 5:
            if n > <uint64_t> ((self.size - self.pos) // 2):  # 2 * n > remaining, without overflow
                raise _malformed("CBOR truncated")
            mapping = {}
            for i in range(<Py_ssize_t> n):
                key = self.item(depth + 1)
                if isinstance(key, list) or isinstance(key, dict) or isinstance(key, _Tag):
                    raise _malformed("CBOR map key must be a scalar")
                if PyDict_Contains(mapping, key):
                    raise _malformed("CBOR map has a duplicate key")
                PyDict_SetItem(mapping, key, self.item(depth + 1))
            return mapping
        return _Tag(PyLong_FromUnsignedLongLong(n), self.item(depth + 1))  # major 6

    cdef object simple(self, int info):
        cdef Py_ssize_t start
        cdef uint32_t bits32
        cdef uint64_t bits64
        cdef float single
        cdef double double_
        if info == 20:
            return False
        if info == 21:
            return True
        if info == 22:
            return None
        if info == 25:
            return _half_to_float(<uint16_t> self.argument(25))
        if info == 26:
            start = self.skip(4)
            bits32 = ((<uint32_t> self.buf[start] << 24) | (<uint32_t> self.buf[start + 1] << 16)
                      | (<uint32_t> self.buf[start + 2] << 8) | self.buf[start + 3])
            memcpy(&single, &bits32, 4)
            return <double> single
        if info == 27:
            start = self.skip(8)
            bits64 = 0
            for i in range(8):
                bits64 = (bits64 << 8) | self.buf[start + i]
            memcpy(&double_, &bits64, 8)
            return double_
        raise _malformed("CBOR simple value %d is not used by this protocol" % info)


cdef object _half_to_float(uint16_t h):
    """cbor.half_to_float, in the same arithmetic."""
    cdef int exponent = (h >> 10) & 0x1F
    cdef int mantissa = h & 0x3FF
    cdef double value
    if exponent == 0:
        value = mantissa * 5.960464477539063e-08
    elif exponent == 31:
        value = float("inf") if mantissa == 0 else float("nan")
    else:
        value = (mantissa + 1024) * ldexp(1.0, exponent - 25)
    return -value if h & 0x8000 else value


cdef object _decode(bytes data):
    """cbor.decode: exactly one item filling ``data``."""
    cdef _Reader reader = _Reader(data)
    value = reader.item(0)
    if reader.pos != reader.size:
        raise _malformed("CBOR has %d trailing bytes" % (reader.size - reader.pos))
    return value


def decode_cbor(bytes data):
    """``cbor.decode`` (for the twin tests)."""
    return _decode(data)


# ---------------------------------------------------------------- COSE_Mac0 (cose.parse)

def read_header(frame):
    """cose.parse: size and structure; raises oversize, malformed,
    unsupported-algorithm."""
    cdef bytes data = bytes(frame)
    if PyBytes_GET_SIZE(data) > MAX_FRAME:
        raise _error("oversize", "frame of %d bytes exceeds the %d-byte limit" % (PyBytes_GET_SIZE(data), MAX_FRAME))
    header = _plain_header(data)
    if header is not None:
        return header
    return _generic_header(data)


cdef inline bint _bstr(const uint8_t* buf, Py_ssize_t size, Py_ssize_t* pos, Py_ssize_t* start,
                       Py_ssize_t* length) noexcept:
    """A byte string item at ``pos``: its content's span."""
    cdef int major, info
    cdef uint64_t n
    if not _head(buf, size, pos, &major, &info, &n) or major != 2 or n > <uint64_t> (size - pos[0]):
        return False
    start[0] = pos[0]
    length[0] = <Py_ssize_t> n
    pos[0] += <Py_ssize_t> n
    return True


cdef inline bint _uint(const uint8_t* buf, Py_ssize_t size, Py_ssize_t* pos, uint64_t* value) noexcept:
    cdef int major, info
    return _head(buf, size, pos, &major, &info, value) and major == 0


cdef object _plain_header(bytes data):
    """The header of an ordinary frame -- tag 17, the four protected labels
    alg 4 / content type / kid / Partial IV and nothing else, an unprotected
    map of at most the age and its lower-bound flag -- read straight from the
    bytes; None for anything else (the generic route judges it, exactly as
    cose.parse does)."""
    cdef const uint8_t* buf = <const uint8_t*> PyBytes_AS_STRING(data)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(data), pos = 2, p_start, p_len, inner, inner_end
    cdef Py_ssize_t kid_start = 0, kid_len = -1, piv_start = 0, piv_len = -1, payload_start, payload_len
    cdef Py_ssize_t tag_start, tag_len, k
    cdef int major, info, entries
    cdef uint64_t label, value, content_type = 0, age = 0, seq = 0
    cdef bint has_ct = False, has_alg = False, has_age = False, age_floor = False
    if size < 2 or buf[0] != 0xD1 or buf[1] != 0x84:
        return None
    if not _bstr(buf, size, &pos, &p_start, &p_len) or p_len < 1:
        return None
    # the protected map: exactly {1: 4, 3: ct, 4: kid, 6: piv}, any order, no duplicates
    inner = p_start
    inner_end = p_start + p_len
    if not _head(buf, inner_end, &inner, &major, &info, &value) or major != 5 or value != 4:
        return None
    for entries in range(4):
        if not _uint(buf, inner_end, &inner, &label):
            return None
        if label == 1 and not has_alg:
            if not _uint(buf, inner_end, &inner, &value) or value != 4:
                return None
            has_alg = True
        elif label == 3 and not has_ct:
            if not _uint(buf, inner_end, &inner, &content_type):
                return None
            has_ct = True
        elif label == 4 and kid_len < 0:
            if not _bstr(buf, inner_end, &inner, &kid_start, &kid_len) or not 1 <= kid_len <= MAX_KID:
                return None
        elif label == 6 and piv_len < 0:
            if not _bstr(buf, inner_end, &inner, &piv_start, &piv_len) or not 1 <= piv_len <= 5:
                return None
            if piv_len > 1 and buf[piv_start] == 0:
                return None
        else:
            return None
    if inner != inner_end:
        return None
    # the unprotected map: {}, {-65537: age} or {-65537: age, -65538: true/false}
    if not _head(buf, size, &pos, &major, &info, &value) or major != 5 or value > 2:
        return None
    entries = <int> value
    for k in range(entries):
        if not _head(buf, size, &pos, &major, &info, &label) or major != 1:
            return None
        if label == 65536 and k == 0:  # -65537: the age in ms
            if not _uint(buf, size, &pos, &age):
                return None
            has_age = True
        elif label == 65537 and k == 1:  # -65538: the age is a lower bound
            if pos >= size or (buf[pos] != 0xF5 and buf[pos] != 0xF4):
                return None
            age_floor = buf[pos] == 0xF5
            pos += 1
        else:
            return None
    if not _bstr(buf, size, &pos, &payload_start, &payload_len):
        return None
    if not _bstr(buf, size, &pos, &tag_start, &tag_len) or tag_len != MAC_LEN or pos != size:
        return None
    for k in range(piv_len):
        seq = (seq << 8) | buf[piv_start + k]
    return Header(
        PyBytes_FromStringAndSize(<const char*> buf + kid_start, kid_len),
        PyLong_FromUnsignedLongLong(seq),
        PyLong_FromUnsignedLongLong(content_type),
        PyBytes_FromStringAndSize(<const char*> buf + p_start, p_len),
        PyBytes_FromStringAndSize(<const char*> buf + payload_start, payload_len),
        PyBytes_FromStringAndSize(<const char*> buf + tag_start, tag_len),
        PyLong_FromUnsignedLongLong(age) if has_age else None,
        has_age and age_floor,
    )


cdef object _generic_header(bytes data):
    """cose.parse on the decoded items, check for check."""
    item = _decode(data)
    if not isinstance(item, _Tag) or item.tag != 17:
        raise _malformed("not a tagged COSE_Mac0 (CBOR tag 17)")
    parts = item.value
    if not isinstance(parts, list) or len(parts) != 4:
        raise _malformed("COSE_Mac0 must be an array of 4 items")
    protected, unprotected, payload, tag = parts
    if not isinstance(protected, bytes) or not isinstance(unprotected, dict):
        raise _malformed("COSE_Mac0 headers must be a bstr and a map")
    if not isinstance(payload, bytes):
        raise _malformed("COSE_Mac0 payload must be attached (bstr)")
    header = _decode(protected) if protected else {}
    if not isinstance(header, dict):
        raise _malformed("protected header is not a map")
    for label in unprotected:
        if label in header:
            raise _malformed("header label %r is both protected and unprotected" % (label,))
    if H_CRIT in header:
        raise _malformed("critical header parameters are not supported")
    alg = header.get(H_ALG)
    if alg != ALG_HMAC_256_64:
        raise _error("unsupported-algorithm", "algorithm %r is not HMAC 256/64 (4)" % (alg,))
    if not isinstance(tag, bytes) or len(tag) != MAC_LEN:
        raise _malformed("MAC tag must be %d bytes" % MAC_LEN)
    kid = header.get(H_KID)
    if not isinstance(kid, bytes) or not 1 <= len(kid) <= MAX_KID:
        raise _malformed("kid (node id) missing or not 1..%d bytes" % MAX_KID)
    piv = header.get(H_PARTIAL_IV)
    if not isinstance(piv, bytes) or not 1 <= len(piv) <= 5 or (len(piv) > 1 and (<bytes> piv)[0] == 0):
        raise _malformed("Partial IV missing or not a minimal 1..5 byte sequence number")
    content_type = header.get(H_CONTENT_TYPE)
    if not isinstance(content_type, int) or content_type < 0:
        raise _malformed("content type missing or not an unsigned integer")
    age = unprotected.get(H_AGE_MS)
    age_ms = age if isinstance(age, int) and age >= 0 else None
    age_floor = age_ms is not None and unprotected.get(H_AGE_FLOOR) is True
    return Header(kid, int.from_bytes(piv, "big"), content_type, protected, payload, tag, age_ms, age_floor)


# ---------------------------------------------------------------- MAC (Mac0.verify, cose.create)

cdef inline Py_ssize_t _head_size(uint64_t n) noexcept:
    if n < 24:
        return 1
    if n < 0x100:
        return 2
    if n < 0x10000:
        return 3
    if n < 0x100000000:
        return 5
    return 9


cdef inline Py_ssize_t _put_head(unsigned char* out, int major, uint64_t n) noexcept:
    """cbor.write_head into ``out`` (9 bytes of room); returns bytes written."""
    cdef unsigned char mt = major << 5
    cdef int size, k
    if n < 24:
        out[0] = mt | <unsigned char> n
        return 1
    if n < 0x100:
        out[0] = mt | 24
        size = 1
    elif n < 0x10000:
        out[0] = mt | 25
        size = 2
    elif n < 0x100000000:
        out[0] = mt | 26
        size = 4
    else:
        out[0] = mt | 27
        size = 8
    for k in range(size):
        out[size - k] = (n >> (8 * k)) & 0xFF
    return size + 1


# HMAC objects keyed once per node key: a MAC is then a copy of the keyed
# state and two updates, not a key setup per frame (half the MAC's cost).
cdef dict _keyed = {}
cdef Py_ssize_t _KEYED_LIMIT = 65536


cdef object _keyed_hmac(bytes key):
    keyed = _keyed.get(key)
    if keyed is None:
        if len(_keyed) >= _KEYED_LIMIT:
            _keyed.clear()
        keyed = _keyed[key] = _hmac_new(key, digestmod="sha256")
    return keyed.copy()


cdef bytes _tag_of(bytes key, bytes protected, bytes payload):
    """cose.compute_tag: HMAC-SHA-256 over ["MAC0", protected, h'', payload],
    first 8 bytes; the payload is hashed where it lies, not copied."""
    cdef Py_ssize_t n_protected = PyBytes_GET_SIZE(protected), n_payload = PyBytes_GET_SIZE(payload)
    cdef bytes prefix = PyBytes_FromStringAndSize(NULL, 6 + _head_size(n_protected) + n_protected + 1
                                                  + _head_size(n_payload))
    cdef unsigned char* out = <unsigned char*> PyBytes_AS_STRING(prefix)
    cdef Py_ssize_t at = 6
    memcpy(out, b"\x84\x64MAC0", 6)
    at += _put_head(out + at, 2, n_protected)
    memcpy(out + at, PyBytes_AS_STRING(protected), n_protected)
    at += n_protected
    out[at] = 0x40
    at += 1
    at += _put_head(out + at, 2, n_payload)
    mac = _keyed_hmac(key)
    mac.update(prefix)
    mac.update(payload)
    return mac.digest()[:MAC_LEN]


def authenticate(header, key_for):
    """The node's key, the MAC, the content type (reference.authenticate)."""
    kid = header.kid
    key = key_for(kid)
    if key is None:
        raise _error("unknown-node", "node %r is not registered" % (_node_name(kid),))
    if not _compare_digest(_tag_of(bytes(key), header.protected, header.payload), header.tag):
        raise _of_node(_error("bad-mac", "MAC does not verify with this node's key"), kid)
    if header.content_type not in NODE_TO_GATEWAY:
        raise _of_node(_error("unknown-content-type", "content type %d is not a node message" % header.content_type),
                       kid)


cdef object _of_node(exc, kid):
    exc.node = _node_name(kid)
    return exc


def seal_ack(bytes key, bytes kid, ack_seq, seqs, time_ms, status):
    """cose.create(key, kid, ack_seq, CT_ACK, encode_ack(seqs, time_ms, status))."""
    cdef unsigned char head[9]
    cdef Py_ssize_t n
    cdef bytearray payload = bytearray()
    cdef bytearray protected = bytearray()
    cdef bytearray frame
    cdef uint64_t value
    if len(seqs) > _messages_max_ack_seqs():
        raise ValueError("an ACK names at most %d frames" % _messages_max_ack_seqs())
    payload.append(0xA3)  # {1: seqs, 2: time_ms, 3: status}: keys in encoded order
    payload.append(0x01)
    n = _put_head(head, 4, len(seqs))
    payload.extend(head[:n])
    for seq in seqs:
        _append_int(payload, seq)
    payload.append(0x02)
    _append_int(payload, time_ms)
    payload.append(0x03)
    _append_int(payload, status)
    piv = _partial_iv(ack_seq)
    protected.extend(b"\xa4\x01\x04\x03")  # {1: 4, 3: CT_ACK, 4: kid, 6: piv}
    _append_int(protected, CT_ACK)
    protected.append(0x04)
    n = _put_head(head, 2, len(kid))
    protected.extend(head[:n])
    protected.extend(kid)
    protected.append(0x06)
    n = _put_head(head, 2, len(piv))
    protected.extend(head[:n])
    protected.extend(piv)
    protected_bytes = bytes(protected)
    payload_bytes = bytes(payload)
    tag = _tag_of(key, protected_bytes, payload_bytes)
    frame = bytearray(b"\xd1\x84")
    for part in (protected_bytes, None, payload_bytes, tag):
        if part is None:
            frame.append(0xA0)  # no unprotected header
            continue
        n = _put_head(head, 2, len(part))
        frame.extend(head[:n])
        frame.extend(part)
    if len(frame) > MAX_FRAME:
        raise ValueError("frame of %d bytes exceeds %d" % (len(frame), MAX_FRAME))
    return bytes(frame)


cdef inline int _messages_max_ack_seqs():
    return 64  # gateway_side.MAX_ACK_SEQS (the twin test compares the frames)


cdef int _append_int(bytearray out, value) except -1:
    """cbor.write_int (an integer item, either sign)."""
    cdef unsigned char head[9]
    cdef Py_ssize_t n
    if not isinstance(value, int):
        raise TypeError("ACK fields are integers, not %r" % (value,))
    if value >= 0:
        if value >= 0x10000000000000000:
            raise ValueError("integer out of CBOR range")
        n = _put_head(head, 0, <uint64_t> value)
    else:
        if -1 - value >= 0x10000000000000000:
            raise ValueError("integer out of CBOR range")
        n = _put_head(head, 1, <uint64_t> (-1 - value))
    out.extend(head[:n])
    return 0


cdef bytes _partial_iv(seq):
    """cose.partial_iv: minimal big-endian bytes (0 is one zero byte)."""
    if seq < 0 or seq > 0xFFFFFFFFFF:
        raise ValueError("sequence number out of range")
    length = 1
    while seq >> (8 * length):
        length += 1
    return seq.to_bytes(length, "big")


# ---------------------------------------------------------------- SenML (resolve.resolve)

cdef inline bint _is_number(x):
    return (isinstance(x, int) and not isinstance(x, bool)) or isinstance(x, float)


cdef object INF = float("inf")
cdef object MINUS_INF = float("-inf")


cdef inline bint _finite(x):
    """resolve._finite: ``x is not None and x == x and x != inf and x != -inf``."""
    if isinstance(x, float):
        return isfinite(PyFloat_AS_DOUBLE(x))
    if isinstance(x, int):
        return True
    return x is not None and x == x and x != INF and x != MINUS_INF


cdef int _check_name(str name) except -1:
    cdef Py_ssize_t i, n = len(name)
    cdef Py_UCS4 ch
    if n == 0 or name[0] > 127 or not NAME_FIRST[<int> name[0]]:
        raise _error("invalid-senml", "record name %r must start with a letter or digit" % (name,))
    for i in range(n):
        ch = name[i]
        if ch > 127 or not NAME_CHAR[<int> ch]:
            raise _error("invalid-senml", "record name %r has a character SenML does not allow" % (name,))
    return 0


cdef inline object _get(dict entry, object key, object default):
    cdef PyObject* found = PyDict_GetItem(entry, key)
    return default if found == NULL else <object> found


cdef int _resolve_into(pack, reference_time, bint faults, doubt, list names, list units, list values, list times,
                       bytearray quality, list reasons) except -1:
    """resolve.resolve, appending each record to the columns."""
    cdef dict entry
    cdef unsigned char q, q_code
    cdef int present
    if not isinstance(pack, list):
        raise _error("invalid-senml", "SenML pack must be an array of records")
    if not pack:
        raise _error("invalid-senml", "SenML pack is empty")
    bn = EMPTY
    bt = ZERO
    bu = None
    bv = ZERO
    for item in <list> pack:
        if not isinstance(item, dict):
            raise _error("invalid-senml", "SenML record must be a map")
        entry = <dict> item
        for label in entry:
            if label not in KNOWN_LABELS:
                if isinstance(label, str) and (<str> label).endswith("_"):
                    raise _error("must-understand",
                                 "record has must-understand label %r this gateway does not know" % (label,))
                if not isinstance(label, (int, str)):
                    raise _error("invalid-senml", "SenML label %r is neither integer nor text" % (label,))
        version = _get(entry, L_BVER, SENML_VERSION)
        if not isinstance(version, int) or version > SENML_VERSION:
            raise _error("must-understand", "SenML version %r is newer than %d" % (version, SENML_VERSION))
        if PyDict_Contains(entry, L_BN):
            bn = entry[L_BN]
            if not isinstance(bn, str):
                raise _error("invalid-senml", "base name must be text")
        if PyDict_Contains(entry, L_BT):
            bt = entry[L_BT]
            if not _is_number(bt) or not _finite(bt):
                raise _error("invalid-senml", "base time must be a finite number")
        if PyDict_Contains(entry, L_BU):
            bu = entry[L_BU]
            if not isinstance(bu, str):
                raise _error("invalid-senml", "base unit must be text")
        if PyDict_Contains(entry, L_BV):
            bv = entry[L_BV]
            if not _is_number(bv):
                raise _error("invalid-senml", "base value must be a number")
        name = _get(entry, L_N, EMPTY)
        if not isinstance(name, str):
            raise _error("invalid-senml", "name must be text")
        name = bn + name
        _check_name(name)
        unit = _get(entry, L_U, bu)
        if unit is not None and not isinstance(unit, str):
            raise _error("invalid-senml", "unit must be text")
        t = _get(entry, L_T, ZERO)
        if not _is_number(t) or not _finite(t):
            raise _error("invalid-senml", "time must be a finite number")
        time = bt + t
        relative = time < RELATIVE_LIMIT
        if relative:
            time = reference_time + time
        present = 0
        label = None
        for candidate in VALUE_LABELS:
            if PyDict_Contains(entry, candidate):
                present += 1
                if label is None:
                    label = candidate
        if present != 1:
            raise _error("invalid-senml", "record %r must carry exactly one value" % (name,))
        value = entry[label]
        q = Q_GOOD
        reason = None
        if label is L_V or label is L_S:
            if not _is_number(value):
                raise _error("invalid-senml", "numeric value of %r is not a number" % (name,))
            value = bv + value
            if not _finite(value):
                value = None
                q = Q_BAD
                reason = NON_FINITE
            elif PyDict_Contains(entry, L_Q):
                reason = entry[L_Q]
                if not isinstance(reason, str):
                    raise _error("invalid-senml", "quality of %r must be text" % (name,))
                q = Q_UNCERTAIN
        elif label is L_VS:
            if not isinstance(value, str):
                raise _error("invalid-senml", "string value of %r is not text" % (name,))
            if faults:
                reason = value
                value = None
                q = Q_BAD
                unit = None
        elif label is L_VB:
            if not isinstance(value, bool):
                raise _error("invalid-senml", "boolean value of %r is not a boolean" % (name,))
        elif not isinstance(value, bytes):
            raise _error("invalid-senml", "data value of %r is not a byte string" % (name,))
        if relative and doubt and q == Q_GOOD:
            q = Q_UNCERTAIN
            reason = doubt
        PyList_Append(names, name)
        PyList_Append(units, unit)
        PyList_Append(values, value)
        PyList_Append(times, time)
        quality.append(q)
        PyList_Append(reasons, reason)
    return 0


# ---------------------------------------------------------------- SenML, straight from the bytes
#
# Most packs are plain: an array of maps with integer labels (and "q"),
# scalar values, ASCII text.  For those the pack is resolved straight from
# the bytes into the columns, without a dict per record -- the dicts cost more
# than everything else together.  ``_plain_pack`` proves a payload is such a
# pack and well-formed CBOR; ``_resolve_plain`` then resolves it and gives
# up (returns 0) at anything the reference would judge less simply, such as
# a SenML error.  Every other payload, and every one given up on, takes the
# generic route above: a dict per record, checked exactly as resolve.py does.
# The twin tests hold the two routes to the same results.

from libc.stdint cimport int64_t

cdef enum:
    LABEL_SLOTS = 16  # labels -6..8 at label + 6, "q" at 15
    SLOT_Q = 15
    K_ABSENT = 0
    K_INT = 1
    K_FLOAT = 2
    K_TEXT = 3
    K_BYTES = 4
    K_TRUE = 5
    K_FALSE = 6
    K_NULL = 7

cdef int S_BVER = -1 + 6
cdef int S_BN = -2 + 6
cdef int S_BT = -3 + 6
cdef int S_BU = -4 + 6
cdef int S_BV = -5 + 6
cdef int S_N = 0 + 6
cdef int S_U = 1 + 6
cdef int S_V = 2 + 6
cdef int S_VS = 3 + 6
cdef int S_VB = 4 + 6
cdef int S_S = 5 + 6
cdef int S_T = 6 + 6
cdef int S_VD = 8 + 6


cdef int64_t RELATIVE_LIMIT_C = 268435456  # resolve.RELATIVE_LIMIT
cdef int VALUE_SLOTS[5]
VALUE_SLOTS[:] = [S_V, S_VS, S_VB, S_VD, S_S]


cdef struct Scalar:
    int kind
    int64_t i
    double d
    Py_ssize_t start  # text and bytes: where in the payload
    Py_ssize_t length


cdef inline bint _head(const uint8_t* buf, Py_ssize_t size, Py_ssize_t* pos, int* major, int* info,
                       uint64_t* argument) noexcept:
    """One item head at ``pos``; False when truncated or not a definite head."""
    cdef Py_ssize_t at = pos[0], k, extra
    cdef uint64_t value
    if at >= size:
        return False
    major[0] = buf[at] >> 5
    info[0] = buf[at] & 0x1F
    at += 1
    if info[0] < 24:
        argument[0] = info[0]
    elif info[0] <= 27:
        extra = 1 << (info[0] - 24)
        if extra > size - at:
            return False
        value = 0
        for k in range(extra):
            value = (value << 8) | buf[at + k]
        argument[0] = value
        at += extra
    else:
        return False
    pos[0] = at
    return True


cdef inline bint _ascii(const uint8_t* buf, Py_ssize_t start, Py_ssize_t length) noexcept:
    cdef Py_ssize_t k
    for k in range(start, start + length):
        if buf[k] >= 0x80:
            return False
    return True


cdef bint _scalar(const uint8_t* buf, Py_ssize_t size, Py_ssize_t* pos, Scalar* out) noexcept:
    """A plain scalar at ``pos`` (int within int64, float, ASCII text,
    bytes, true/false/null); False for anything else."""
    cdef int major, info
    cdef uint64_t argument
    cdef uint32_t bits32
    cdef float single
    cdef double double_
    cdef Py_ssize_t at
    if not _head(buf, size, pos, &major, &info, &argument):
        return False
    if major == 0:
        if argument > <uint64_t> 0x7FFFFFFFFFFFFFFF:
            return False
        out.kind = K_INT
        out.i = <int64_t> argument
        return True
    if major == 1:
        if argument > <uint64_t> 0x7FFFFFFFFFFFFFFF:
            return False
        out.kind = K_INT
        out.i = -1 - <int64_t> argument
        return True
    if major == 2 or major == 3:
        at = pos[0]
        if argument > <uint64_t> (size - at):
            return False
        if major == 3 and not _ascii(buf, at, <Py_ssize_t> argument):
            return False
        out.kind = K_BYTES if major == 2 else K_TEXT
        out.start = at
        out.length = <Py_ssize_t> argument
        pos[0] = at + out.length
        return True
    if major != 7:
        return False
    if info == 20:
        out.kind = K_FALSE
    elif info == 21:
        out.kind = K_TRUE
    elif info == 22:
        out.kind = K_NULL
    elif info == 25:
        out.kind = K_FLOAT
        out.d = PyFloat_AS_DOUBLE(_half_to_float(<uint16_t> argument))
    elif info == 26:
        bits32 = <uint32_t> argument
        memcpy(&single, &bits32, 4)
        out.kind = K_FLOAT
        out.d = <double> single
    elif info == 27:
        memcpy(&double_, &argument, 8)
        out.kind = K_FLOAT
        out.d = double_
    else:
        return False
    return True


cdef bint _record(const uint8_t* buf, Py_ssize_t size, Py_ssize_t* pos, Scalar* labels) noexcept:
    """One plain record (a map of distinct labels -6..8 or "q" to plain
    scalars) into ``labels``; False for anything else."""
    cdef int major, info, slot
    cdef uint64_t count, argument
    cdef Py_ssize_t k
    cdef Scalar key
    if not _head(buf, size, pos, &major, &info, &count) or major != 5:
        return False
    for k in range(LABEL_SLOTS):
        labels[k].kind = K_ABSENT
    for k in range(<Py_ssize_t> count):
        if not _scalar(buf, size, pos, &key):
            return False
        if key.kind == K_INT and -6 <= key.i <= 8 and key.i != 7:  # 7 (ut) is a label resolve never reads
            slot = <int> key.i + 6
        elif key.kind == K_TEXT and key.length == 1 and buf[key.start] == 113:  # "q"
            slot = SLOT_Q
        else:
            return False
        if labels[slot].kind != K_ABSENT:
            return False  # a duplicate: the generic route reports it
        if not _scalar(buf, size, pos, &labels[slot]):
            return False
        if labels[slot].kind == K_ABSENT:
            return False
    return True


cdef bint _plain_pack(const uint8_t* buf, Py_ssize_t size) noexcept:
    """Whether the payload is exactly one array of plain records."""
    cdef Py_ssize_t pos = 0, k
    cdef int major, info
    cdef uint64_t count
    cdef Scalar labels[LABEL_SLOTS]
    if not _head(buf, size, &pos, &major, &info, &count) or major != 4 or count == 0:
        return False
    if count > <uint64_t> (size - pos):
        return False
    for k in range(<Py_ssize_t> count):
        if not _record(buf, size, &pos, labels):
            return False
    return pos == size


# Names and units repeat frame after frame: the same str object is given out
# again for the same ASCII text, from a small direct-mapped cache, so a frame
# allocates no text for them and every later look-up keyed by them (chains,
# writers) finds its hash already computed and often the very object.
cdef enum:
    TEXT_CACHE = 1024

cdef PyObject* _texts[TEXT_CACHE]
memset(_texts, 0, sizeof(_texts))


cdef object _ascii_text(const char* data, Py_ssize_t n):
    """The str of ASCII ``data``: a cached object when the same text came before."""
    cdef uint64_t h = 14695981039346656037ULL  # FNV-1a
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ <uint8_t> data[i]) * 1099511628211ULL
    cdef Py_ssize_t slot = h & (TEXT_CACHE - 1)
    cdef PyObject* cached = _texts[slot]
    if cached != NULL and PyUnicode_GET_LENGTH(<object> cached) == n \
            and PyUnicode_KIND(<object> cached) == PyUnicode_1BYTE_KIND \
            and memcmp(PyUnicode_DATA(<object> cached), data, n) == 0:
        return <object> cached
    text = PyUnicode_DecodeASCII(data, n, NULL)
    Py_INCREF(text)
    Py_XDECREF(cached)
    _texts[slot] = <PyObject*> text
    return text


cdef inline object _text(const uint8_t* buf, const Scalar* item):
    return _ascii_text(<const char*> buf + item.start, item.length)


cdef inline bint _numeric(const Scalar* item) noexcept:
    return item.kind == K_INT or item.kind == K_FLOAT


cdef inline bint _add(const Scalar* a, const Scalar* b, Scalar* out) noexcept:
    """``a + b`` with Python's result type (int + int is an int); False on
    an int64 overflow (the generic route adds arbitrary integers)."""
    if a.kind == K_INT and b.kind == K_INT:
        if __builtin_add_overflow(a.i, b.i, &out.i):
            return False
        out.kind = K_INT
        return True
    out.kind = K_FLOAT
    out.d = (<double> a.i if a.kind == K_INT else a.d) + (<double> b.i if b.kind == K_INT else b.d)
    return True


cdef inline object _number(const Scalar* item):
    if item.kind == K_INT:
        return item.i
    return item.d


cdef inline bint _is_finite(const Scalar* item) noexcept:
    return item.kind == K_INT or isfinite(item.d)


cdef extern from *:
    """
    #define __pyx_add_overflow(a, b, r) __builtin_add_overflow(a, b, r)
    """
    bint __builtin_add_overflow "__pyx_add_overflow"(int64_t a, int64_t b, int64_t* r) noexcept nogil


cdef int _resolve_plain(const uint8_t* buf, Py_ssize_t size, double reference_time, bint faults, doubt,
                        list names, list units, list values, list times, bytearray quality,
                        list reasons) except -1:
    """resolve.resolve over a plain pack (``_plain_pack`` said so): 1 when
    the columns hold every record, 0 when it gave up (the columns are then
    incomplete and the generic route must start over)."""
    cdef Py_ssize_t pos = 0, k, n_len, bn_len = 0
    cdef int major, info, present, value_slot
    cdef uint64_t count
    cdef Scalar labels[LABEL_SLOTS]
    cdef Scalar bt, bv, t, time, value
    cdef Scalar bn  # a text span, or length 0
    cdef char name_buf[256]
    cdef unsigned char q
    cdef bint relative
    cdef int slot, present_slot
    _head(buf, size, &pos, &major, &info, &count)
    bt.kind = K_INT
    bt.i = 0
    bv.kind = K_INT
    bv.i = 0
    bn.start = 0
    bn.length = 0
    bu = None
    for k in range(<Py_ssize_t> count):
        _record(buf, size, &pos, labels)
        if labels[S_BVER].kind != K_ABSENT and (labels[S_BVER].kind != K_INT or labels[S_BVER].i > 10):
            return 0
        if labels[S_BN].kind != K_ABSENT:
            if labels[S_BN].kind != K_TEXT:
                return 0
            bn = labels[S_BN]
        if labels[S_BT].kind != K_ABSENT:
            if not _numeric(&labels[S_BT]) or not _is_finite(&labels[S_BT]):
                return 0
            bt = labels[S_BT]
        if labels[S_BU].kind != K_ABSENT:
            if labels[S_BU].kind != K_TEXT:
                return 0
            bu = _text(buf, &labels[S_BU])
        if labels[S_BV].kind != K_ABSENT:
            if not _numeric(&labels[S_BV]):
                return 0
            bv = labels[S_BV]
        # name = bn + n, checked as resolve._check_name
        n_len = labels[S_N].length if labels[S_N].kind == K_TEXT else 0
        if labels[S_N].kind != K_ABSENT and labels[S_N].kind != K_TEXT:
            return 0
        if bn.length + n_len == 0 or bn.length + n_len > 255:
            return 0
        memcpy(name_buf, buf + bn.start, bn.length)
        memcpy(name_buf + bn.length, buf + labels[S_N].start, n_len)
        n_len += bn.length
        if not NAME_FIRST[<unsigned char> name_buf[0]]:
            return 0
        for present in range(1, n_len):
            if not NAME_CHAR[<unsigned char> name_buf[present]]:
                return 0
        if labels[S_U].kind == K_ABSENT:
            unit = bu
        elif labels[S_U].kind == K_TEXT:
            unit = _text(buf, &labels[S_U])
        elif labels[S_U].kind == K_NULL:
            unit = None
        else:
            return 0
        if labels[S_T].kind == K_ABSENT:
            t.kind = K_INT
            t.i = 0
        elif _numeric(&labels[S_T]) and _is_finite(&labels[S_T]):
            t = labels[S_T]
        else:
            return 0
        if not _add(&bt, &t, &time):
            return 0
        relative = time.i < RELATIVE_LIMIT_C if time.kind == K_INT else time.d < <double> RELATIVE_LIMIT_C
        if relative:
            time_object = reference_time + (<double> time.i if time.kind == K_INT else time.d)
        else:
            time_object = _number(&time)
        present = 0
        value_slot = -1
        for present_slot in range(5):  # resolve's order: v, vs, vb, vd, s
            slot = VALUE_SLOTS[present_slot]
            if labels[slot].kind != K_ABSENT:
                present += 1
                if value_slot < 0:
                    value_slot = slot
        if present != 1:
            return 0
        q = Q_GOOD
        reason = None
        if value_slot == S_V or value_slot == S_S:
            if not _numeric(&labels[value_slot]) or not _add(&bv, &labels[value_slot], &value):
                return 0
            if not _is_finite(&value):
                value_object = None
                q = Q_BAD
                reason = NON_FINITE
            else:
                value_object = _number(&value)
                if labels[SLOT_Q].kind != K_ABSENT:
                    if labels[SLOT_Q].kind != K_TEXT:
                        return 0
                    reason = _text(buf, &labels[SLOT_Q])
                    q = Q_UNCERTAIN
        elif value_slot == S_VS:
            if labels[S_VS].kind != K_TEXT:
                return 0
            value_object = _text(buf, &labels[S_VS])
            if faults:
                reason = value_object
                value_object = None
                q = Q_BAD
                unit = None
        elif value_slot == S_VB:
            if labels[S_VB].kind == K_TRUE:
                value_object = True
            elif labels[S_VB].kind == K_FALSE:
                value_object = False
            else:
                return 0
        else:
            if labels[S_VD].kind != K_BYTES:
                return 0
            value_object = PyBytes_FromStringAndSize(<const char*> buf + labels[S_VD].start, labels[S_VD].length)
        if relative and doubt and q == Q_GOOD:
            q = Q_UNCERTAIN
            reason = doubt
        PyList_Append(names, _ascii_text(name_buf, n_len))
        PyList_Append(units, unit)
        PyList_Append(values, value_object)
        PyList_Append(times, time_object)
        _append_code(quality, q)
        PyList_Append(reasons, reason)
    return 1


cdef inline int _append_code(bytearray codes, unsigned char code) except -1:
    cdef Py_ssize_t n = PyByteArray_GET_SIZE(codes)
    PyByteArray_Resize(codes, n + 1)
    PyByteArray_AS_STRING(codes)[n] = <char> code
    return 0




def decode(frame, header, received):
    """The frame's SenML pack as an OpenedFrame (reference.decode)."""
    age_ms = header.age_ms
    reference = received - (age_ms / 1000 if age_ms is not None else 0)
    content_type = header.content_type
    cdef bytes payload = header.payload
    cdef const uint8_t* buf = <const uint8_t*> PyBytes_AS_STRING(payload)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(payload)
    cdef bint faults = content_type == CT_SENML
    doubt = _resolve.time_doubt(age_ms, header.age_floor)
    cdef list names = [], units = [], values = [], times = [], reasons = []
    cdef bytearray quality = bytearray()
    if not (isinstance(reference, float) and _plain_pack(buf, size)
            and _resolve_plain(buf, size, reference, faults, doubt, names, units, values, times, quality, reasons)):
        names, units, values, times, reasons = [], [], [], [], []
        quality = bytearray()
        _resolve_into(_decode(payload), reference, faults, doubt, names, units, values, times, quality, reasons)
    kid = header.kid
    return OpenedFrame(frame, kid, _node_name(kid), header.seq, content_type, received, reference,
                       names, units, values, times, quality, reasons)
