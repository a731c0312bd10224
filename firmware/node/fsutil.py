"""Small power-loss-safe file helpers shared by the store, the sequence
counter, the boot counter and the config.

Flash filesystems differ (LittleFS renames atomically, FAT refuses to rename
over an existing file), so small values live in two checksummed slots and
whole files are replaced through a temporary file that a reader also tries.
"""

import os
import binascii


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def makedirs(path):
    if not path or exists(path):
        return
    head = path.rsplit("/", 1)[0] if "/" in path else ""
    if head and head != path:
        makedirs(head)
    os.mkdir(path)


def remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def write_replace(path, data):
    """Replace ``path`` by ``data`` so that a power cut leaves either the old
    or the new content readable (see ``read_replaced``)."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    try:
        os.rename(tmp, path)
    except OSError:  # FAT: no rename over an existing file
        remove(path)
        os.rename(tmp, path)


def read_replaced(path):
    """Content written by ``write_replace``, or None when there is none."""
    for name in (path, path + ".tmp"):
        try:
            with open(name, "rb") as f:
                return f.read()
        except OSError:
            pass
    return None


class Slots:
    """An integer kept in two alternating files, each "value crc32".

    A write goes to the slot not holding the current value, so a torn write
    can only damage the older copy; a reader takes the valid slot with the
    highest generation.
    """

    def __init__(self, path):
        self.paths = (path + ".a", path + ".b")
        self.generation = 0
        self.value = None
        self._slot = 1
        for i in range(2):
            parsed = self._read(self.paths[i])
            if parsed is not None and parsed[0] >= self.generation:
                self.generation, self.value = parsed
                self._slot = i

    @staticmethod
    def _read(path):
        try:
            with open(path, "rb") as f:
                text = f.read()
        except OSError:
            return None
        parts = text.split(b" ")
        if len(parts) != 3:
            return None
        body = parts[0] + b" " + parts[1]
        try:
            if int(parts[2]) != binascii.crc32(body):
                return None
            return int(parts[0]), int(parts[1])
        except ValueError:
            return None

    def write(self, value):
        self.generation += 1
        body = b"%d %d" % (self.generation, value)
        self._slot ^= 1
        with open(self.paths[self._slot], "wb") as f:
            f.write(body + b" %d" % binascii.crc32(body))
        self.value = value
