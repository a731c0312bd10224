"""Real small file systems for storage tests (the tests run as root):

* ``small_tmpfs(path, size)``: a size-limited tmpfs: writes fail with ENOSPC
  when it is full; ``grow(size)`` gives space back, as an operator freeing
  space does;
* ``failing_ext4(path)``: an ext4 image on a loop device whose backing file
  lives on a small tmpfs: once the tmpfs is full the loop device answers EIO,
  and ext4 (mounted ``errors=remount-ro``) turns read-only, as a dying SD card
  does; ``break_now()`` makes it read-only at once (ext4's own
  ``trigger_fs_error``); ``repair()`` unmounts, gives the backing room,
  runs fsck and mounts it again.

When the machine does not let us mount (not root, no loop devices), the
test is skipped and says why.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest


def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def _mount_or_skip(*command: str) -> None:
    result = _run(*command)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a test file system here ({' '.join(command)}: {result.stderr.strip()}); "
                    "these tests need root and loop devices")


def _unmount(path: Path) -> None:
    if _run("umount", str(path)).returncode != 0:
        _run("umount", "-l", str(path))


class SmallTmpfs:
    def __init__(self, path: Path) -> None:
        self.path = path

    def grow(self, size: str) -> None:
        result = _run("mount", "-o", f"remount,size={size}", str(self.path))
        assert result.returncode == 0, result.stderr


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[SmallTmpfs]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    _mount_or_skip("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path))
    try:
        yield SmallTmpfs(path)
    finally:
        _unmount(path)


class FailingExt4:
    def __init__(self, root: Path) -> None:
        self.backing = root / "backing"
        self.image = self.backing / "disk.img"
        self.path = root / "disk"

    @property
    def device(self) -> str:
        return _run("findmnt", "-n", "-o", "SOURCE", str(self.path)).stdout.strip()

    def read_only(self) -> bool:
        options = _run("findmnt", "-n", "-o", "OPTIONS", str(self.path)).stdout
        return "emergency_ro" in options or options.startswith("ro")

    def break_now(self) -> None:
        """ext4's own error path: the file system turns read-only at once."""
        name = os.path.basename(self.device)
        with open(f"/sys/fs/ext4/{name}/trigger_fs_error", "w") as f:
            f.write("smemet test: file system error\n")

    def repair(self) -> None:
        """Unmount, give the backing file room, fsck, mount again (what an
        operator does after replacing or cleaning the disk)."""
        _unmount(self.path)
        assert _run("mount", "-o", "remount,size=64m", str(self.backing)).returncode == 0
        fsck = _run("e2fsck", "-f", "-y", str(self.image))
        assert fsck.returncode in (0, 1, 2), fsck.stdout + fsck.stderr  # 1, 2: errors corrected
        _mount_or_skip("mount", "-o", "loop,errors=remount-ro", str(self.image), str(self.path))


@contextlib.contextmanager
def failing_ext4(root: Path, backing_size: str = "2600k", image_size: str = "32M") -> Iterator[FailingExt4]:
    """An ext4 file system of ``image_size`` whose device fails (EIO) once
    ``backing_size`` of it has been written."""
    if os.geteuid() != 0:
        pytest.skip("loop-mounting an ext4 image needs root")
    if not shutil.which("mkfs.ext4") or not shutil.which("losetup"):
        pytest.skip("mkfs.ext4 and losetup are needed (e2fsprogs, mount)")
    disk = FailingExt4(root)
    disk.backing.mkdir(parents=True, exist_ok=True)
    disk.path.mkdir(parents=True, exist_ok=True)
    _mount_or_skip("mount", "-t", "tmpfs", "-o", f"size={backing_size}", "tmpfs", str(disk.backing))
    try:
        assert _run("truncate", "-s", image_size, str(disk.image)).returncode == 0
        made = _run("mkfs.ext4", "-q", "-F", "-b", "1024", "-J", "size=1",
                    "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", str(disk.image))
        assert made.returncode == 0, made.stderr
        _mount_or_skip("mount", "-o", "loop,errors=remount-ro", str(disk.image), str(disk.path))
        try:
            yield disk
        finally:
            _unmount(disk.path)
    finally:
        _unmount(disk.backing)
