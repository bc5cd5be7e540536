"""The command line's argument types: each refuses a bad value in one line (argparse's exit 2)."""

from __future__ import annotations

import argparse
import math

from splitmatch.data.names import printable


def integer_in(low: int, high: int, what: str):
    """An argparse type: an integer in ``low..high`` (argparse turns the refusal into one line, exit 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got '{printable(text, 40)}'") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {what}, got {printable(text, 40)}")
        return value

    return parse


positive_int = integer_in(1, 2**63 - 1, "a positive integer")
seed = integer_in(0, 2**63 - 1, "an integer in 0..2**63-1")
port = integer_in(1, 65535, "a port number in 1..65535")


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got '{printable(text, 40)}'") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {printable(text, 40)}")
    return value


def megapixels(text: str) -> float:
    from splitmatch.data.folder import MAX_IMAGE_PIXELS

    value = finite_float(text)
    if not 0 < value * 1e6 <= MAX_IMAGE_PIXELS:
        raise argparse.ArgumentTypeError(
            f"must be more than 0 and at most {MAX_IMAGE_PIXELS / 1e6:g} (the largest image decoded safely), got {text}"
        )
    return value


non_negative_int = integer_in(0, 2**63 - 1, "a non-negative integer")


def episode_counts(text: str) -> tuple[int, ...]:
    try:
        return tuple(dict.fromkeys(positive_int(part.strip()) for part in text.split(",")))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be positive integers separated by commas, got '{text}'") from None
