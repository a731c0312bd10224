"""Counts consecutive boots that did not reach a stable run; after
``safe_mode_after`` of them the node starts in safe mode (no sampling, no
sending, console only) instead of crash-looping."""

from node.fsutil import Slots

PATH = "boots"


def begin():
    """Count this boot; returns the number of unstable boots so far,
    including this one."""
    slots = Slots(PATH)
    count = (slots.value or 0) + 1
    slots.write(count)
    return count


def mark_stable():
    slots = Slots(PATH)
    if slots.value:
        slots.write(0)


def clear():
    """Leave safe mode on the next boot (after fixing the cause)."""
    Slots(PATH).write(0)
