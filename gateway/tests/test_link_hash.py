"""The link hash (ledger/_linkhash.pyx and its pure twin linkhash.py)
against the chain's definition, computed here with hashlib alone:

    link n = SHA-256( link n-1 || n as 8 bytes, big-endian || SHA-256(payload n) )

One suite on both twins, so they cannot drift apart."""

from __future__ import annotations

import hashlib
import os

import pytest

from smemet.gateway.ledger import chain


def defined(prev: bytes, seq: int, payload: bytes) -> bytes:
    return hashlib.sha256(prev + seq.to_bytes(8, "big") + hashlib.sha256(payload).digest()).digest()


@pytest.fixture(params=["cython", "pure"])
def backend(request):
    try:
        return chain.load(request.param)
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("the link hash was not compiled: the build must compile it under CI (libssl-dev)")
        pytest.skip("the link hash was not compiled (it needs OpenSSL's headers, libssl-dev)")


@pytest.mark.parametrize("size", [0, 1, 31, 55, 56, 63, 64, 65, 119, 120, 260, 1000, 70_000])
def test_every_payload_length_as_defined(backend, size):
    # the SHA-256 padding edges (55/56, 63/64/65 bytes in a block) and a payload many blocks long
    payload = bytes((i * 37 + size) % 256 for i in range(size))
    prev = hashlib.sha256(b"prev %d" % size).digest()
    assert backend.link_hash(prev, 17, payload) == defined(prev, 17, payload)


@pytest.mark.parametrize("seq", [0, 1, 255, 256, 2**32 + 5, 2**63, 2**64 - 1])
def test_every_number_big_endian_as_defined(backend, seq):
    assert backend.link_hash(chain.GENESIS, seq, b'{"v":1}') == defined(chain.GENESIS, seq, b'{"v":1}')


def test_a_chain_of_links_as_defined(backend):
    prev = expected = chain.GENESIS
    for n in range(1, 200):
        payload = b'{"link_seq":%d,"link_prev":"%s"}' % (n, prev.hex().encode())
        prev, expected = backend.link_hash(prev, n, payload), defined(expected, n, payload)
        assert prev == expected, n


def test_mistakes_raise_the_same_errors(backend):
    with pytest.raises(ValueError, match="a link is 32 bytes, not 31"):
        backend.link_hash(bytes(31), 1, b"x")
    with pytest.raises(OverflowError):
        backend.link_hash(bytes(32), -1, b"x")
    with pytest.raises(OverflowError):
        backend.link_hash(bytes(32), 2**64, b"x")


def test_the_chain_runs_the_compiled_twin_when_built():
    try:
        chain.load("cython")
    except ImportError:
        pytest.skip("the link hash was not compiled")
    if os.environ.get("SMEMET_PUREPYTHON") == "1":
        pytest.skip("SMEMET_PUREPYTHON=1 forces the pure twin")
    assert chain.link_hash is chain.load("cython").link_hash


def test_linked_stamps_the_link_fields_and_links_as_defined(backend):
    prev = hashlib.sha256(b"link 41").digest()
    for payload, cut, tail in [(b'{"node":"n1","value":1.5}', 1, b'"}'), (b'[{"n":"a","v":1},{"n":"b","v":2}]', 2, b'"}]')]:
        for seq in (0, 7, 42, 10**6, 2**64 - 1):
            stamped, link = backend.linked(payload, cut, b',"agreement":"A","link_seq":', seq, prev, tail)
            expected = payload[:-cut] + b',"agreement":"A","link_seq":%d,"link_prev":"%s' % (seq, prev.hex().encode()) + tail
            assert stamped == expected
            assert link == defined(prev, seq, expected)


def test_linked_mistakes(backend):
    with pytest.raises(ValueError, match="cannot cut 3 bytes off a payload of 2"):
        backend.linked(b"{}", 3, b"", 1, bytes(32), b"")
    with pytest.raises(ValueError, match="a link is 32 bytes, not 5"):
        backend.linked(b"{}", 1, b"", 1, bytes(5), b"")
    with pytest.raises(OverflowError):
        backend.linked(b"{}", 1, b"", -1, bytes(32), b"")
