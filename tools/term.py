"""How ``smemet`` writes to a terminal, for every command alike:

* progress lines on stderr, silenced by ``--quiet``; details with ``--verbose``;
* colour only on a terminal, never with ``NO_COLOR`` set or ``TERM=dumb``
  (https://no-color.org);
* a terminal or pipe that cannot show ✓, ✗, —, … (``PYTHONIOENCODING=ascii``,
  an old Windows console) gets ASCII stand-ins instead of a
  UnicodeEncodeError: ``install_fallbacks`` registers an encoding error
  handler that every command's output goes through;
* ``plural(1, "node")`` -> "1 node", ``plural(2, "node")`` -> "2 nodes".
"""

from __future__ import annotations

import codecs
import os
import sys

QUIET = False
VERBOSE = False

# What a character no encoding of the terminal can show becomes.
_ASCII = {
    "✓": "ok", "✗": "FAIL", "—": "-", "–": "-", "…": "...", "→": "->", "°": "deg", "·": ".", "µ": "u",
    "▁": "_", "▂": "_", "▃": "-", "▄": "-", "▅": "=", "▆": "=", "▇": "#", "█": "#", "≥": ">=", "≤": "<=",
    "“": '"', "”": '"', "‘": "'", "’": "'", "×": "x", "±": "+/-",
}
_HANDLER = "smemet-ascii"


def _fallback(error: UnicodeError):
    if not isinstance(error, UnicodeEncodeError):
        raise error
    text = error.object[error.start:error.end]
    return "".join(_ASCII.get(c, "?") for c in text), error.end


def install_fallbacks() -> None:
    """Make stdout and stderr write ASCII stand-ins for what their encoding
    cannot show (instead of raising UnicodeEncodeError)."""
    try:
        codecs.lookup_error(_HANDLER)
    except LookupError:
        codecs.register_error(_HANDLER, _fallback)
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors=_HANDLER)
            except (ValueError, OSError):  # a closed or detached stream: nothing to print to anyway
                pass


def configure(quiet: bool = False, verbose: bool = False) -> None:
    global QUIET, VERBOSE
    QUIET, VERBOSE = quiet, verbose


def progress(text: str) -> None:
    """A line about what is happening (stderr); none with --quiet."""
    if not QUIET:
        print(text, file=sys.stderr, flush=True)


def detail(text: str) -> None:
    """A line only --verbose shows (stderr)."""
    if VERBOSE:
        print(text, file=sys.stderr, flush=True)


def warn(command: str, text: str) -> None:
    """A warning: always shown, one line, the same prefix style as errors."""
    print(f"smemet {command}: warning: {text}", file=sys.stderr, flush=True)


def color_enabled(stream=None) -> bool:
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


_STYLES = {"red": "31", "yellow": "33", "green": "32", "dim": "2", "bold": "1"}


def paint(text: str, style: str, enabled: bool) -> str:
    return f"\x1b[{_STYLES[style]}m{text}\x1b[0m" if enabled and style in _STYLES else text


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"
