"""Store-and-forward: a power-loss-safe ring buffer of frames on flash.

Frames live in numbered segment files (``NNNNNNNN.seg``) that are only ever
appended to.  Each record is::

    magic 0xA5 | type (1 frame, 2 ack) | length u16 | seq u64 | built_ms u64
    | payload (length bytes) | crc32 u32 over everything before it

written as three writes (header, payload, crc), so a power cut can tear a
record anywhere; the CRC makes a torn record invalid and the recovery scan at
boot stops reading a segment at its first invalid record (counted in
``torn``; such a record was never ACKed, so it was never counted as stored).
Every boot starts a fresh segment, so a torn tail is never appended after.

A frame leaves the store only when ``ack(seq)`` is called (after the caller
verified the ACK's MAC): an ACK record is appended, and the oldest segments
are deleted once every frame in them is acknowledged.  The store is bounded by
``max_bytes``; when a new frame does not fit the policy decides: ``drop-oldest``
deletes the oldest segment (its unacknowledged frames are counted in
``dropped``), ``stop`` refuses the new frame (counted in ``dropped``).

RAM: the index of pending frames is three typed arrays (seq, segment,
offset: 14 bytes a frame), oldest first; length and build time are read
back from the record header when a frame is sent.  Frames ACKed out of
order leave a hole (seq -1) that is squeezed out as the head moves on.
"""

import os
import struct
import binascii
from array import array

from micropython import const

from node import fsutil

_MAGIC = const(0xA5)
_T_FRAME = const(1)
_T_ACK = const(2)
_HEADER = "<BBHQQ"
_HEADER_LEN = const(20)
_CRC_LEN = const(4)
_MAX_PAYLOAD = const(1100)
_CHUNK = const(64)  # recovery checks payload CRCs through a small buffer

POLICIES = ("drop-oldest", "stop")


class FrameStore:
    def __init__(self, path, max_bytes=65536, segment_bytes=4096, policy="drop-oldest"):
        self.path = path
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.policy = policy
        self.dropped = 0  # frames lost to the full-store policy (since boot)
        self.torn = 0  # invalid records found by the recovery scan
        self.depth = 0  # frames waiting for an ACK
        self.bytes = 0  # bytes of all segments on flash
        self._header = bytearray(_HEADER_LEN)
        self._crc = bytearray(_CHUNK)
        self._seqs = array("q")
        self._segs = array("L")
        self._offs = array("H")  # < segment_bytes <= 64 KiB
        self._head = 0  # index of the oldest entry still in use
        self._n = 0  # entries in use (the arrays never shrink)
        self._sizes = {}  # segment number -> bytes on flash
        self._pending = {}  # segment number -> unacknowledged frames in it
        self._file = None
        self._active = None
        self.highest_seq = -1  # highest seq in any record on flash (frames and ACKs)
        fsutil.makedirs(path)
        self._recover()
        self.boot_segment = self._open_segment()

    # -------------------------------------------------------------- recovery

    def _numbers(self):
        numbers = []
        for name in os.listdir(self.path):
            if name.endswith(".seg") and len(name) == 12:
                try:
                    numbers.append(int(name[:8]))
                except ValueError:
                    pass
        numbers.sort()
        return numbers

    def _name(self, number):
        return "%s/%08d.seg" % (self.path, number)

    def _recover(self):
        acked = []
        for number in self._numbers():
            size = 0
            with open(self._name(number), "rb") as f:
                while True:
                    kind, seq, length = self._next_record(f)
                    if not kind:
                        break
                    if seq > self.highest_seq:
                        self.highest_seq = seq
                    if kind == _T_FRAME:
                        self._index(seq, number, size)
                    else:
                        acked.append(seq)
                    size += _HEADER_LEN + length + _CRC_LEN
            if length:  # bytes after the last valid record
                self.torn += 1
            self._sizes[number] = size
            self.bytes += size
            self._pending.setdefault(number, 0)
        for seq in acked:
            i = self._find(seq)
            if i >= 0:
                self._unindex(i)
        self._trim()
        self._squeeze()

    def _next_record(self, f):
        """(kind, seq, length) of the next valid record, or (0, 0, leftover)
        at the end (leftover > 0: torn)."""
        header = self._header
        got = f.readinto(header)
        if not got:
            return 0, 0, 0
        if got < _HEADER_LEN or header[0] != _MAGIC:
            return 0, 0, 1
        _, kind, length, seq, _ = struct.unpack(_HEADER, header)
        if length > _MAX_PAYLOAD or kind not in (_T_FRAME, _T_ACK):
            return 0, 0, 1
        crc = binascii.crc32(header)
        chunk = self._crc
        left = length
        while left:
            n = f.readinto(memoryview(chunk)[:min(left, _CHUNK)])
            if not n:
                return 0, 0, 1
            crc = binascii.crc32(memoryview(chunk)[:n], crc)
            left -= n
        if f.readinto(memoryview(chunk)[:_CRC_LEN]) != _CRC_LEN or crc != struct.unpack_from("<I", chunk)[0]:
            return 0, 0, 1
        return kind, seq, length

    # -------------------------------------------------------------- index

    def _index(self, seq, seg, off):
        n = self._n
        if n == len(self._seqs):
            self._seqs.append(seq)
            self._segs.append(seg)
            self._offs.append(off)
        else:
            self._seqs[n] = seq
            self._segs[n] = seg
            self._offs[n] = off
        seqs = self._seqs
        i = n
        while i > self._head and seqs[i - 1] >= seq:  # numbers only grow: this loop is for damaged flash
            if seqs[i - 1] == seq:  # a duplicate record: keep the first copy
                for j in range(i, n):
                    self._move(j + 1, j)
                return
            self._move(i - 1, i)
            i -= 1
        if i != n:
            seqs[i] = seq
            self._segs[i] = seg
            self._offs[i] = off
        self._n = n + 1
        self.depth += 1
        self._pending[seg] = self._pending.get(seg, 0) + 1

    def _move(self, src, dst):
        self._seqs[dst] = self._seqs[src]
        self._segs[dst] = self._segs[src]
        self._offs[dst] = self._offs[src]

    def _find(self, seq):
        seqs = self._seqs
        for i in range(self._head, self._n):
            if seqs[i] == seq:
                return i
        return -1

    def _unindex(self, i):
        self._pending[self._segs[i]] -= 1
        self._seqs[i] = -1
        self.depth -= 1
        while self._head < self._n and self._seqs[self._head] < 0:
            self._head += 1

    def _squeeze(self):
        """Move the entries in use to the front once the head has passed
        half of them (amortised: no allocation, no per-ACK shifting)."""
        head = self._head
        if head >= 16 and 2 * head >= self._n:
            n = self._n - head
            for j in range(n):
                self._move(head + j, j)
            self._head = 0
            self._n = n

    # -------------------------------------------------------------- segments

    def _open_segment(self):
        numbers = self._numbers()
        number = numbers[-1] + 1 if numbers else 1
        if self._file:
            self._file.close()
        self._file = open(self._name(number), "ab")
        self._active = number
        self._sizes[number] = 0
        self._pending[number] = 0
        return number

    def _delete_segment(self, number):
        fsutil.remove(self._name(number))
        self.bytes -= self._sizes.pop(number, 0)
        lost = self._pending.get(number, 0)
        if lost:
            for i in range(self._head, self._n):
                if self._segs[i] == number and self._seqs[i] >= 0:
                    self._unindex(i)
        self._pending.pop(number, 0)
        return lost

    def _trim(self):
        """Delete the oldest segments while every frame in them is ACKed."""
        for number in sorted(self._sizes):
            if number == self._active or self._pending.get(number, 0):
                break
            self._delete_segment(number)

    def _write(self, kind, seq, built, payload):
        length = len(payload) if payload else 0
        header = self._header
        struct.pack_into(_HEADER, header, 0, _MAGIC, kind, length, seq, built)
        crc = binascii.crc32(header)
        if length:
            crc = binascii.crc32(payload, crc)
        crcbuf = memoryview(self._crc)[:_CRC_LEN]
        struct.pack_into("<I", crcbuf, 0, crc)
        offset = self._sizes[self._active]
        f = self._file
        f.write(header)
        if length:
            f.write(payload)
        f.write(crcbuf)  # the commit: the record is valid only once this lands
        f.flush()
        size = _HEADER_LEN + length + _CRC_LEN
        self._sizes[self._active] = offset + size
        self.bytes += size
        return offset

    # -------------------------------------------------------------- public

    def append(self, seq, frame, built_ms=0):
        """Store a frame durably.  False when the ``stop`` policy refused it."""
        need = _HEADER_LEN + len(frame) + _CRC_LEN
        if len(frame) > _MAX_PAYLOAD:
            raise ValueError("frame of %d bytes is larger than the store's records" % len(frame))
        if self._sizes[self._active] + need > self.segment_bytes and self._sizes[self._active]:
            self._open_segment()
        while self.bytes + need > self.max_bytes:
            oldest = min(self._sizes)
            if self.policy == "stop" or oldest == self._active:
                self.dropped += 1
                return False
            self.dropped += self._delete_segment(oldest)
        offset = self._write(_T_FRAME, seq, built_ms, frame)
        if seq > self.highest_seq:
            self.highest_seq = seq
        self._index(seq, self._active, offset)
        self._squeeze()
        return True

    def ack(self, seq):
        """Remove a frame the gateway acknowledged (MAC-verified).  Returns
        False when the store does not hold it (already acked or dropped)."""
        i = self._find(seq) if seq >= 0 else -1
        if i < 0:
            return False
        self._write(_T_ACK, seq, 0, None)
        self._unindex(i)
        self._trim()
        if not self.depth and self._sizes[self._active] >= self.segment_bytes:
            self._open_segment()  # let the fully-acked active segment go
            self._trim()
        self._squeeze()
        return True

    def pending(self, limit=None):
        """Sequence numbers waiting for an ACK, oldest first."""
        out = []
        seqs = self._seqs
        for i in range(self._head, self._n):
            if limit and len(out) >= limit:
                break
            if seqs[i] >= 0:
                out.append(seqs[i])
        return out

    def oldest(self):
        return self._seqs[self._head] if self.depth else None

    def read(self, seq):
        """(frame bytes, built_ms, built_this_boot) of a pending frame."""
        i = self._find(seq) if seq >= 0 else -1
        if i < 0:
            raise KeyError(seq)
        seg = self._segs[i]
        with open(self._name(seg), "rb") as f:
            f.seek(self._offs[i])
            f.readinto(self._header)
            _, _, length, _, built = struct.unpack(_HEADER, self._header)
            frame = f.read(length)
        return frame, built, seg >= self.boot_segment

    def close(self):
        if self._file:
            self._file.close()
            self._file = None
