"""The error family of splitmatch: every error that is the input's fault derives from one class.

A bad value, file or option raises a :class:`SplitmatchError` subclass whose message is one
line naming the value or file and what was expected. The command line turns any of them into
that one line and exit status 2 without listing them (:func:`splitmatch.cli.main`); Python
callers may catch the family, or one member, or the builtin it also derives from (most are
``ValueError``s, so ``except ValueError`` keeps working). Anything else that escapes is a bug
and keeps its traceback.
"""

from __future__ import annotations


class SplitmatchError(Exception):
    """Base of every error caused by the input (a value, a file, an option), not by a bug."""


class ArgumentTypeError(SplitmatchError, TypeError):
    """A public function was given an argument of the wrong type; the message names the argument."""


class ArgumentValueError(SplitmatchError, ValueError):
    """A public function was given an argument of the right type but a value it cannot take (an empty
    image, a batch size of 0); the message names the argument and what it may be."""


class NonFiniteValuesError(SplitmatchError, FloatingPointError):
    """Costs, scores or losses hold NaN or infinite values: weights or inputs that are damaged or
    diverged, said in the message."""
