"""Talking to a node over its serial console with ``mpremote`` (a
subprocess, as a field engineer would type it): copy a firmware image with
per-file progress, hash files on the device, read small files, run a
snippet.

Every call uses ``mpremote connect PORT resume …``: ``resume`` skips the
automatic soft reset, which works the same on a board and on a SimNode's
PTY; a running firmware is interrupted (Ctrl-C) and the node is left at its
REPL until restarted (serial_port.Console.soft_reset).
"""

from __future__ import annotations

import json
import posixpath
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from . import term
from .errors import UserError
from .serial_port import check_port

# Runs on the device: the sha256 of each file, read in small chunks (a board
# has little RAM); "-" for a missing file.
_HASH_SNIPPET = """\
import hashlib, binascii
_b = bytearray(256)
_m = memoryview(_b)
for _p in {paths!r}:
    try:
        _f = open(_p, 'rb')
    except OSError:
        print('HASH', _p, '-')
        continue
    _h = hashlib.sha256()
    while True:
        _n = _f.readinto(_b)
        if not _n:
            break
        _h.update(_m[:_n])
    _f.close()
    print('HASH', _p, binascii.hexlify(_h.digest()).decode())
"""

_MKDIRS_SNIPPET = """\
import os
for _d in {dirs!r}:
    try:
        os.mkdir(_d)
    except OSError:
        pass
"""


# Runs on the device: removes .py/.mpy files under the image's directories
# that the new image does not have (an older firmware's, or sources copied
# by hand: MicroPython imports foo.py before foo.mpy, so a stale source
# would shadow the new code).  Data (store/, config, sequence numbers) is
# outside these directories and never touched.
_STALE_SNIPPET = """\
import os
for _p in {first!r}:
    try:
        os.remove(_p)
    except OSError:
        pass
_keep = set({keep!r})
def _walk(_d):
    for _e in os.ilistdir(_d):
        _p = _d + '/' + _e[0]
        if _e[1] == 0x4000:
            _walk(_p)
            if _p not in _keep:
                try:
                    os.rmdir(_p)
                except OSError:
                    pass
        elif (_p.endswith('.py') or _p.endswith('.mpy')) and _p not in _keep:
            os.remove(_p)
            print('STALE', _p)
for _d in {roots!r}:
    try:
        _walk(_d)
        if _d not in _keep:
            os.rmdir(_d)
    except OSError:
        pass
"""


def mpremote_command() -> list[str]:
    beside = Path(sys.executable).with_name("mpremote")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("mpremote")
    if found:
        return [found]
    raise UserError("mpremote is not installed: pip install mpremote (it comes with smemet's dependencies)")


def _explain(port: str, output: str) -> str:
    """One line for a failed mpremote run: its last message and what to do."""
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else "mpremote failed"
    low = output.lower()
    if "raw repl" in low or "timeout" in low:
        hint = "the node did not answer at its REPL: press its reset button (or power-cycle it) and try again"
    elif "in use" in low or "busy" in low or "permission" in low:
        hint = "close other programs using the port (screen, minicom, Thonny, another smemet)"
    elif "no space" in low or "enospc" in low or "28" in last:
        hint = ("the node's flash is full: remove files you added to it, or let the node send its stored "
                "frames to the gateway first (its store/ holds measurements not yet delivered), then try again")
    else:
        hint = "check the cable and that the node runs MicroPython"
    return f"mpremote on {port}: {last}; {hint}"


WAIT_NOTICE = 5.0  # seconds of silence from a node before saying that we are still waiting


def run(port: str, args: list[str], timeout: float = 60.0, on_line: Callable[[str], None] | None = None) -> str:
    """Run ``mpremote connect PORT resume ARGS``; stdout lines go to
    ``on_line`` as they come.  While the node says nothing, a progress line
    every WAIT_NOTICE seconds says we are still waiting and for how long.
    Returns stdout; raises UserError on failure."""
    check_port(port)
    command = mpremote_command() + ["connect", port, "resume", *args]
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise UserError(f"cannot run mpremote: {exc.strerror}") from None
    out: list[str] = []
    assert process.stdout is not None and process.stderr is not None
    started = time.monotonic()
    heard = [started]
    done = threading.Event()

    def watch() -> None:
        while not done.wait(1.0):
            now = time.monotonic()
            if now - started > timeout:
                process.kill()
                return
            if now - heard[0] >= WAIT_NOTICE:
                heard[0] = now
                term.progress(f"  … waiting for the node on {port}: {now - started:.0f} s of at most {timeout:.0f} s "
                              "(is it powered and its cable a data cable? pressing its reset button may help)")

    watcher = threading.Thread(target=watch, name=f"mpremote {port}", daemon=True)
    watcher.start()
    try:
        try:
            for line in process.stdout:
                heard[0] = time.monotonic()
                out.append(line)
                if on_line:
                    on_line(line.rstrip("\n"))
            err = process.stderr.read()
            code = process.wait()
        finally:
            done.set()
            watcher.join(2)
    except BaseException:
        process.kill()
        process.wait()
        raise
    stdout = "".join(out)
    if code == -9:
        raise UserError(f"mpremote on {port}: no answer within {timeout:.0f} s; "
                        "press the node's reset button (or power-cycle it) and try again")
    if code != 0 or "Traceback (most recent call last)" in stdout:
        raise UserError(_explain(port, err + "\n" + stdout))
    return stdout


def exec_snippet(port: str, code: str, timeout: float = 30.0) -> str:
    return run(port, ["exec", code], timeout)


def platform(port: str) -> str:
    """``sys.platform`` of the node: linux (the unix port: sim board), esp32, rp2."""
    return exec_snippet(port, "import sys; print('PLATFORM', sys.platform)").split("PLATFORM", 1)[-1].split()[0]


def read_json(port: str, path: str) -> dict | None:
    """A JSON file from the node's flash, or None when it is missing or unreadable."""
    out = exec_snippet(port, f"try:\n print('JSON', open({path!r}).read())\nexcept OSError:\n print('JSON -')")
    text = out.split("JSON ", 1)[-1].strip()
    if text == "-":
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def hash_files(port: str, paths: list[str], timeout: float = 120.0) -> dict[str, str | None]:
    """sha256 (hex) of each file on the node; None for a missing one."""
    out = run(port, ["exec", _HASH_SNIPPET.format(paths=list(paths))], timeout)
    hashes: dict[str, str | None] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "HASH":
            hashes[parts[1]] = None if parts[2] == "-" else parts[2]
    return hashes


def remove_stale_code(port: str, paths: list[str], first: tuple[str, ...] = (), timeout: float = 60.0,
                      roots: list[str] | None = None) -> list[str]:
    """Remove the files ``first`` (if there), then the .py/.mpy files under
    the directories of ``paths`` (an image's files; or under ``roots``)
    that are not among them, in one session; returns the stale files
    removed."""
    dirs = _directories(paths)
    if roots is None:
        roots = sorted({d.split("/", 1)[0] for d in dirs})
    keep = sorted(set(paths) | set(dirs))
    out = run(port, ["exec", _STALE_SNIPPET.format(first=list(first), keep=keep, roots=roots)], timeout)
    return [line.split(None, 1)[1] for line in out.splitlines() if line.startswith("STALE ")]


_ROM_HASH_SNIPPET = """\
import hashlib, binascii, vfs
try:
    _d = vfs.rom_ioctl(2, 0)
except AttributeError:
    _d = -1
if isinstance(_d, int):
    print('ROMHASH -')
else:
    _n = {length}
    _h = hashlib.sha256()
    if hasattr(_d, 'ioctl'):
        _bs = _d.ioctl(5, 0)
        _b = bytearray(_bs)
        for _i in range((_n + _bs - 1) // _bs):
            _d.readblocks(_i, _b)
            _h.update(_b[:min(_bs, _n - _i * _bs)])
    else:
        for _i in range(0, _n, 256):
            _h.update(_d[_i:min(_n, _i + 256)])
    print('ROMHASH', binascii.hexlify(_h.digest()).decode())
"""
_PARTITION = re.compile(r"ROMFS0 partition has size (\d+) bytes")


def romfs_partition(port: str) -> tuple[int | None, str]:
    """The size of the node's first ROMFS partition (``mpremote romfs
    query``), or None and what mpremote said instead."""
    out = run(port, ["romfs", "query"], timeout=60.0)
    found = _PARTITION.search(out)
    if found:
        return int(found.group(1)), ""
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    return None, lines[-1] if lines else "no answer to mpremote romfs query"


def deploy_romfs(port: str, image: Path, on_line: Callable[[str], None] | None = None,
                 timeout: float = 600.0) -> None:
    """Write a ROMFS image into the node's partition (``mpremote romfs
    deploy``); the node mounts it at its next reset."""
    run(port, ["romfs", "deploy", str(image)], timeout, on_line=on_line)


def hash_romfs(port: str, length: int, timeout: float = 120.0) -> str | None:
    """sha256 (hex) of the first ``length`` bytes of the node's ROMFS
    partition, read on the device; None when it has no partition."""
    out = run(port, ["exec", _ROM_HASH_SNIPPET.format(length=int(length))], timeout)
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "ROMHASH":
            return None if parts[1] == "-" else parts[1]
    return None


def _directories(paths: list[str]) -> list[str]:
    dirs = set()
    for path in paths:
        parent = posixpath.dirname(path)
        while parent:
            dirs.add(parent)
            parent = posixpath.dirname(parent)
    return sorted(dirs, key=lambda d: (d.count("/"), d))


def copy_files(port: str, source: Path, paths: list[str], on_copied: Callable[[int, str], None] | None = None,
               timeout: float = 600.0) -> None:
    """Copy ``source/<path>`` to ``:<path>`` for each path, in order, in one
    mpremote session (directories made first); ``on_copied(index, path)``
    after each file."""
    source = Path(source)
    args = ["exec", _MKDIRS_SNIPPET.format(dirs=_directories(paths))]
    for path in paths:
        args += ["+", "fs", "cp", str(source / path), ":" + path]
    by_line = {f"cp {source / path} :{path}": (i, path) for i, path in enumerate(paths)}

    def seen(line: str) -> None:
        hit = by_line.get(line.strip())
        if hit is not None and on_copied:
            on_copied(*hit)

    run(port, args, timeout, on_line=seen)
