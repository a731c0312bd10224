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
"""

import os
import struct
import binascii

from micropython import const

from node import fsutil

_MAGIC = const(0xA5)
_T_FRAME = const(1)
_T_ACK = const(2)
_HEADER = "<BBHQQ"
_HEADER_LEN = const(20)
_CRC_LEN = const(4)
_MAX_PAYLOAD = const(1100)

POLICIES = ("drop-oldest", "stop")


class FrameStore:
    def __init__(self, path, max_bytes=65536, segment_bytes=4096, policy="drop-oldest"):
        self.path = path
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.policy = policy
        self.dropped = 0  # frames lost to the full-store policy (since boot)
        self.torn = 0  # invalid records found by the recovery scan
        self._header = bytearray(_HEADER_LEN)
        self._crc = bytearray(_CRC_LEN)
        self._buf = bytearray(_MAX_PAYLOAD)
        # Pending frames, oldest first: parallel lists, no object per frame.
        self._seqs = []
        self._segs = []
        self._offs = []
        self._lens = []
        self._built = []
        self._seg_sizes = {}  # segment number -> bytes on flash
        self._seg_pending = {}  # segment number -> unacknowledged frames in it
        self._file = None
        self.highest_seq = -1  # highest seq in any record on flash (frames and ACKs)
        fsutil.makedirs(path)
        self._recover()
        self.boot_segment = self._open_segment()

    # -------------------------------------------------------------- recovery

    def _segment_numbers(self):
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
        acked = set()
        for number in self._segment_numbers():
            size = 0
            with open(self._name(number), "rb") as f:
                while True:
                    kind, seq, length, built = self._read_record(f)
                    if kind is None:
                        break
                    if seq > self.highest_seq:
                        self.highest_seq = seq
                    if kind == _T_FRAME:
                        self._index(seq, number, size, length, built)
                    elif kind == _T_ACK:
                        acked.add(seq)
                    size += _HEADER_LEN + length + _CRC_LEN
                if kind is None and length:  # bytes after the last valid record
                    self.torn += 1
            self._seg_sizes[number] = size
            self._seg_pending.setdefault(number, 0)
        if acked:
            i = 0
            while i < len(self._seqs):
                if self._seqs[i] in acked:
                    self._unindex(i)
                else:
                    i += 1
        self._trim()

    def _read_record(self, f):
        """(kind, seq, length, built) of the next valid record, or
        (None, 0, leftover, 0) at the end (leftover > 0: torn)."""
        header = self._header
        got = f.readinto(header)
        if not got:
            return None, 0, 0, 0
        if got < _HEADER_LEN or header[0] != _MAGIC:
            return None, 0, 1, 0
        _, kind, length, seq, built = struct.unpack(_HEADER, header)
        if length > _MAX_PAYLOAD or kind not in (_T_FRAME, _T_ACK):
            return None, 0, 1, 0
        mv = memoryview(self._buf)
        if f.readinto(mv[:length]) != length if length else False:
            return None, 0, 1, 0
        if f.readinto(self._crc) != _CRC_LEN:
            return None, 0, 1, 0
        crc = binascii.crc32(mv[:length], binascii.crc32(header))
        if crc != struct.unpack("<I", self._crc)[0]:
            return None, 0, 1, 0
        return kind, seq, length, built

    def _index(self, seq, seg, off, length, built):
        # Appends are in sequence order, so this is almost always the end.
        i = len(self._seqs)
        while i and self._seqs[i - 1] > seq:
            i -= 1
        if i and self._seqs[i - 1] == seq:
            return  # a duplicate record: keep the first copy
        self._seqs.insert(i, seq)
        self._segs.insert(i, seg)
        self._offs.insert(i, off)
        self._lens.insert(i, length)
        self._built.insert(i, built)
        self._seg_pending[seg] = self._seg_pending.get(seg, 0) + 1

    def _unindex(self, i):
        seg = self._segs[i]
        self._seg_pending[seg] -= 1
        for lst in (self._seqs, self._segs, self._offs, self._lens, self._built):
            lst.pop(i)

    # -------------------------------------------------------------- segments

    def _open_segment(self):
        numbers = self._segment_numbers()
        number = numbers[-1] + 1 if numbers else 1
        if self._file:
            self._file.close()
        self._file = open(self._name(number), "ab")
        self._active = number
        self._seg_sizes[number] = 0
        self._seg_pending[number] = 0
        return number

    def _delete_segment(self, number):
        fsutil.remove(self._name(number))
        self._seg_sizes.pop(number, None)
        lost = self._seg_pending.pop(number, 0)
        if lost:
            i = 0
            while i < len(self._seqs):
                if self._segs[i] == number:
                    for lst in (self._seqs, self._segs, self._offs, self._lens, self._built):
                        lst.pop(i)
                else:
                    i += 1
        return lost

    def _trim(self):
        """Delete the oldest segments while every frame in them is ACKed."""
        for number in sorted(self._seg_sizes):
            if number == getattr(self, "_active", None) or self._seg_pending.get(number, 0):
                break
            self._delete_segment(number)

    def _write(self, kind, seq, built, payload):
        length = len(payload) if payload else 0
        header = self._header
        struct.pack_into(_HEADER, header, 0, _MAGIC, kind, length, seq, built)
        crc = binascii.crc32(header)
        if length:
            crc = binascii.crc32(payload, crc)
        struct.pack_into("<I", self._crc, 0, crc)
        offset = self._seg_sizes[self._active]
        f = self._file
        f.write(header)
        if length:
            f.write(payload)
        f.write(self._crc)  # the commit: the record is valid only once this lands
        f.flush()
        self._seg_sizes[self._active] = offset + _HEADER_LEN + length + _CRC_LEN
        return offset

    # -------------------------------------------------------------- public

    @property
    def depth(self):
        return len(self._seqs)

    @property
    def bytes(self):
        total = 0
        for size in self._seg_sizes.values():
            total += size
        return total

    def append(self, seq, frame, built_ms=0):
        """Store a frame durably.  False when the ``stop`` policy refused it."""
        need = _HEADER_LEN + len(frame) + _CRC_LEN
        if len(frame) > _MAX_PAYLOAD:
            raise ValueError("frame of %d bytes is larger than the store's records" % len(frame))
        if self._seg_sizes[self._active] + need > self.segment_bytes and self._seg_sizes[self._active]:
            self._open_segment()
        while self.bytes + need > self.max_bytes:
            oldest = min(self._seg_sizes)
            if self.policy == "stop" or oldest == self._active:
                self.dropped += 1
                return False
            self.dropped += self._delete_segment(oldest)
        offset = self._write(_T_FRAME, seq, built_ms, frame)
        if seq > self.highest_seq:
            self.highest_seq = seq
        self._index(seq, self._active, offset, len(frame), built_ms)
        return True

    def ack(self, seq):
        """Remove a frame the gateway acknowledged (MAC-verified).  Returns
        False when the store does not hold it (already acked or dropped)."""
        seqs = self._seqs
        for i in range(len(seqs)):
            if seqs[i] == seq:
                self._write(_T_ACK, seq, 0, None)
                self._unindex(i)
                self._trim()
                if not self._seqs and self._seg_sizes[self._active] >= self.segment_bytes:
                    self._open_segment()  # let the fully-acked active segment go
                    self._trim()
                return True
        return False

    def pending(self, limit=None):
        """Sequence numbers waiting for an ACK, oldest first."""
        return self._seqs[:limit] if limit else list(self._seqs)

    def oldest(self):
        return self._seqs[0] if self._seqs else None

    def max_seq(self):
        return self._seqs[-1] if self._seqs else None

    def read(self, seq):
        """(frame bytes, built_ms, built_this_boot) of a pending frame."""
        seqs = self._seqs
        for i in range(len(seqs)):
            if seqs[i] == seq:
                seg = self._segs[i]
                with open(self._name(seg), "rb") as f:
                    f.seek(self._offs[i] + _HEADER_LEN)
                    frame = f.read(self._lens[i])
                return frame, self._built[i], seg >= self.boot_segment
        raise KeyError(seq)

    def close(self):
        if self._file:
            self._file.close()
            self._file = None
