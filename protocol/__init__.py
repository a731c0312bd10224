"""The SME-MET Edge wire protocol, sans-IO (see SPEC.md).

Written in the Python subset shared by MicroPython and CPython, so the node
firmware and the gateway run the same code.  No sockets, clocks or files:
bytes in, values out.  Modules are imported one by one (``from protocol import
cose``) so a node only loads what it uses.
"""

import sys

if sys.implementation.name != "micropython":  # CPython: errors raise their per-reason classes
    from . import error_classes  # noqa: F401
