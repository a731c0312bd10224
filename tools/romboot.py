"""Run the MicroPython unix port as a board with a ROMFS partition::

    python -m smemet.romboot PARTITION [-i] -X heapsize=64K [main.py]

On a board the ROMFS partition is flash: at start the VM mounts the image
in it at ``/rom`` and imports its ``.mpy`` files without copying their
bytecode and constants into the GC heap, and ``vfs.rom_ioctl`` lets
``mpremote romfs query/deploy`` read and rewrite the partition.  The unix
port (``micropython_unix``, a CPython extension that runs the VM in this
process) has neither, so this launcher maps the PARTITION file (a built
``firmware.romfs``, or a sim board's partition, possibly erased) into
memory the process owns, outside the VM's heap; the VM wraps that address
with ``uctypes.bytearray_at`` and mounts a ``vfs.VfsRom`` over it before it
runs the script; at the REPL (no script) it also gets a ``vfs.rom_ioctl``
that reads and writes the partition.  Writes reach the file, so a deployed
image survives a power cycle, as in flash.

Exit codes: the VM's own (``sys.exit(3)`` from the firmware is 3), 2 when
the partition file is missing or cannot be mapped.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys

ADDRESS_ENV = "SMEMET_ROMFS"  # "address:length" of the mapped partition, read by the VM
BLOCK = 4096  # erase block of the emulated flash

# What a board's firmware does at start (MicroPython code here, C on a
# board): the partition as a buffer, the image in it mounted at /rom with
# /rom and /rom/lib on sys.path (when it holds one).
_MAP = """\
import os, sys, uctypes, vfs
_a, _n = os.getenv("SMEMET_ROMFS").split(":")
_rom_part = uctypes.bytearray_at(int(_a), int(_n))
del _a, _n
"""
_MOUNT = """\
try:
    vfs.mount(vfs.VfsRom(_rom_part), "/rom")
    sys.path[1:1] = ["/rom", "/rom/lib"]
except OSError:
    pass
del os, sys, uctypes, vfs
"""
# At the REPL also vfs.rom_ioctl, for mpremote romfs query/deploy
# (operations as in extmod/vfs_rom.c: 1 count, 2 get, 3 prepare/erase,
# 4 write, 5 end, 6 block size), put where `import vfs` finds it.  The
# firmware never uses it, so a node running main.py does not pay its heap
# (~0.8 KB); mpremote stops main.py and talks to the REPL.
_ROM_IOCTL = """\
def _rom_ioctl(op, part=0, *args):
    if op == 1:
        return 1
    if part != 0:
        return -19
    if op == 2:
        return _rom_part
    if op == 3:
        at, n = (0, args[0]) if len(args) == 1 else args
        blank = b"\\xff" * 256
        for i in range(at, min(at + n, len(_rom_part)), 256):
            _rom_part[i:i + 256] = blank
        return 4
    if op == 4:
        _rom_part[args[0]:args[0] + len(args[1])] = args[1]
        return 0
    if op == 5:
        return 0
    if op == 6:
        return %(block)d
    return -22


class _vfs:
    mount, umount, VfsRom, VfsPosix, rom_ioctl = vfs.mount, vfs.umount, vfs.VfsRom, vfs.VfsPosix, _rom_ioctl


sys.modules["vfs"] = _vfs
""" % {"block": BLOCK}


class RomImageError(Exception):
    """The partition cannot be mapped; the message says what to do."""


def map_partition(path: str | os.PathLike) -> tuple[int, int]:
    """Map the file at ``path`` read-write and shared into this process;
    returns (address, length).  The mapping lives as long as the process."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError as exc:
        raise RomImageError(f"cannot open the ROMFS partition {path}: {exc.strerror}; build an image with "
                            "`smemet firmware build --romfs`") from None
    try:
        length = os.fstat(fd).st_size
        if length == 0:
            raise RomImageError(f"{path} is empty: give a ROMFS image (smemet firmware build --romfs)")
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                              ctypes.c_long)
        address = libc.mmap(None, length, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
        if address in (None, ctypes.c_void_p(-1).value):
            raise RomImageError(f"cannot map {path}: {os.strerror(ctypes.get_errno())}")
        return address, length
    finally:
        os.close(fd)


def vm_arguments(args: list[str]) -> list[str]:
    """The unix port's arguments for ``args`` (its options, then an
    optional script): the boot code first, then the script, or the REPL
    when there is none."""
    options = []
    rest = iter(args)
    for arg in rest:
        if arg == "-X":
            options += [arg, next(rest, "")]
        elif arg.startswith("-"):
            options.append(arg)
        else:  # the script; anything after it is not the firmware's business
            return options + ["-c", _MAP + _MOUNT + "del _rom_part\nexecfile(%r)\n" % arg]
    return options + ["-i", "-c", _MAP + _ROM_IOCTL + _MOUNT]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.split("\n\n", 1)[0], file=sys.stderr)
        return 2
    try:
        address, length = map_partition(argv[0])
    except RomImageError as exc:
        print(f"romboot: {exc}", file=sys.stderr)
        return 2
    os.environ[ADDRESS_ENV] = f"{address}:{length}"
    from micropython_unix import run_main

    return run_main(["micropython", *vm_arguments(argv[1:])])


if __name__ == "__main__":
    sys.exit(main())
