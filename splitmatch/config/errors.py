"""The one error every configuration problem raises, and how a value appears in its message."""

from __future__ import annotations

import reprlib

from splitmatch.errors import SplitmatchError


class ConfigError(SplitmatchError, ValueError):
    """A configuration file, key or value is invalid."""


# A value read from YAML can be huge (a long string, a list of a million items) or, through
# aliases, a structure whose full repr would be far larger than its file: messages show a
# bounded sketch of it, never the whole.
_SKETCH = reprlib.Repr()
_SKETCH.maxlevel = 3
_SKETCH.maxdict = _SKETCH.maxlist = _SKETCH.maxtuple = _SKETCH.maxset = 6
_SKETCH.maxstring = _SKETCH.maxother = 80
_SKETCH.maxlong = 40
SHOWN_CHARS = 120


def shown(value: object) -> str:
    """``repr(value)`` for a message, at most :data:`SHOWN_CHARS` characters, computed in time
    bounded by that length whatever the value holds (long lists and strings are cut, nesting
    below three levels is shown as ``...``)."""
    try:
        text = _SKETCH.repr(value)
    except ValueError:  # an integer beyond Python's digit limit for text (a long hex literal)
        text = f"<an integer of {value.bit_length():,} bits>" if isinstance(value, int) else type(value).__name__
    return text if len(text) <= SHOWN_CHARS else f"{text[: SHOWN_CHARS - 3]}..."
