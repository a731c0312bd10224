# The compiled twin of linkhash.py: one link of a route's hash chain.
#
# Why compiled: a json route hashes twice per measurement, and through
# Python's hashlib (OpenSSL 3.0's EVP interface) every SHA-256 call costs
# ~0.9 us of set-up whatever the length -- EVP and even the one-shot SHA256()
# fetch the algorithm from a provider per call.  OpenSSL's low-level
# SHA256_Init/Update/Final do not (same SHA-NI code): a link costs 0.4 us here
# instead of 2.4 us (measured, bench/bench_ledger.py).  They are deprecated
# in OpenSSL 3 but kept; should a later OpenSSL drop them, this module no
# longer builds and the pure twin runs (native.py says so at start).

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.string cimport memcpy

cdef extern from "openssl/sha.h":
    ctypedef struct SHA256_CTX:
        pass
    int SHA256_Init(SHA256_CTX *c) nogil
    int SHA256_Update(SHA256_CTX *c, const void *data, size_t n) nogil
    int SHA256_Final(unsigned char *md, SHA256_CTX *c) nogil

IMPLEMENTATION = "cython"
PREV_FIELD = b',"link_prev":"'
cdef const char *_HEX = b"0123456789abcdef"


cdef inline void _sha256(const unsigned char *data, size_t n, unsigned char *out) noexcept nogil:
    cdef SHA256_CTX ctx
    SHA256_Init(&ctx)
    SHA256_Update(&ctx, data, n)
    SHA256_Final(out, &ctx)


def link_hash(bytes prev not None, unsigned long long seq, bytes payload not None) -> bytes:
    """Link ``seq`` (0 <= seq < 2**64) after link ``prev`` (32 bytes), for
    ``payload`` as published."""
    cdef unsigned char block[72]  # link n-1 || n (8 bytes, big-endian) || SHA-256(payload)
    cdef unsigned char link[32]
    cdef const unsigned char *p = prev
    cdef int i
    if len(prev) != 32:
        raise ValueError(f"a link is 32 bytes, not {len(prev)}")
    for i in range(32):
        block[i] = p[i]
    for i in range(8):
        block[32 + i] = (seq >> (56 - 8 * i)) & 0xFF
    _sha256(<const unsigned char *>payload, len(payload), block + 40)
    _sha256(block, 72, link)
    return <bytes>link[:32]


def linked(bytes payload not None, Py_ssize_t cut, bytes stamp not None, unsigned long long seq,
           bytes prev not None, bytes tail not None):
    """A route message with its link fields, and its link (see linkhash.py):
    one buffer written once, both hashes over it, no intermediate objects."""
    cdef char digits[20]
    cdef int ndigits = 0, i
    cdef unsigned long long rest = seq
    cdef Py_ssize_t body, size
    cdef unsigned char block[72]
    cdef unsigned char link[32]
    cdef const unsigned char *p
    cdef char *w
    if not 0 <= cut <= len(payload):
        raise ValueError(f"cannot cut {cut} bytes off a payload of {len(payload)}")
    if len(prev) != 32:
        raise ValueError(f"a link is 32 bytes, not {len(prev)}")
    while True:  # the decimal digits, last first
        digits[ndigits] = <char>(48 + rest % 10)
        ndigits += 1
        rest //= 10
        if rest == 0:
            break
    body = len(payload) - cut
    size = body + len(stamp) + ndigits + len(PREV_FIELD) + 64 + len(tail)
    stamped = PyBytes_FromStringAndSize(NULL, size)
    w = PyBytes_AS_STRING(stamped)
    memcpy(w, PyBytes_AS_STRING(payload), body)
    w += body
    memcpy(w, PyBytes_AS_STRING(stamp), len(stamp))
    w += len(stamp)
    for i in range(ndigits):
        w[i] = digits[ndigits - 1 - i]
    w += ndigits
    memcpy(w, PyBytes_AS_STRING(PREV_FIELD), len(PREV_FIELD))
    w += len(PREV_FIELD)
    p = prev
    for i in range(32):
        w[2 * i] = _HEX[p[i] >> 4]
        w[2 * i + 1] = _HEX[p[i] & 15]
        block[i] = p[i]
    w += 64
    memcpy(w, PyBytes_AS_STRING(tail), len(tail))
    for i in range(8):
        block[32 + i] = (seq >> (56 - 8 * i)) & 0xFF
    _sha256(<const unsigned char *>PyBytes_AS_STRING(stamped), size, block + 40)
    _sha256(block, 72, link)
    return stamped, <bytes>link[:32]
