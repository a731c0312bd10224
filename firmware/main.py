# Flash root entry point: run the node app (see docs/firmware.md).
import os
import sys


def _has(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


if _has("lib/protocol"):  # the files layout: the code is in lib/ and here
    sys.path[:0] = ["", "lib"]
elif _has("/rom/lib/protocol"):  # the ROMFS layout: code executed in place from /rom,
    sys.path[:0] = ["/rom", "/rom/lib"]  # ahead of the filesystem, whose leftovers must not shadow it
else:  # running from the repository: firmware/ and the repo root
    _here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
    sys.path[:0] = ["", _here, _here + "/.."]
del _has

from node import app  # noqa: E402

app.run()
