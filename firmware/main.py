# Flash root entry point: run the node app (see docs/firmware.md).
import sys

try:
    import os

    os.stat("lib/protocol")  # a built image: everything is in lib/ and here
    sys.path.insert(0, "lib")
except OSError:  # running from the repository: firmware/ and the repo root
    _here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
    sys.path.insert(0, _here)
    sys.path.insert(1, _here + "/..")
sys.path.insert(0, "")

from node import app  # noqa: E402

app.run()
