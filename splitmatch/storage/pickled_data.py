"""Plain data stored in the pickle format, read without unpickling.

Some peers publish their lists as pickle files (HSNet's COCO-20i per-class image lists). Loading
a pickle runs whatever it names, so splitmatch never unpickles: :func:`read_pickled_data` walks
the file's opcodes (:func:`pickletools.genops`, which parses and never executes) and builds the
value itself from the opcodes of plain data alone: dicts, lists, tuples, strings, bytes,
integers, floats, booleans and ``None``. Any opcode that would name a class or a function, call
one or build an object is refused, as is a file that does not end where its value does.
"""

from __future__ import annotations

import pickletools

from splitmatch.errors import SplitmatchError


class InvalidPickledDataError(SplitmatchError, ValueError):
    """The bytes are not a pickle of plain data (or not a whole one). Its message is one line."""


_CONSTANTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False, "EMPTY_DICT": dict, "EMPTY_LIST": list}
# Opcodes whose argument is the value pushed.
_VALUES = {
    "INT",
    "BININT",
    "BININT1",
    "BININT2",
    "LONG",
    "LONG1",
    "LONG4",
    "FLOAT",
    "BINFLOAT",
    "STRING",
    "BINSTRING",
    "SHORT_BINSTRING",
    "UNICODE",
    "SHORT_BINUNICODE",
    "BINUNICODE",
    "BINUNICODE8",
    "BINBYTES",
    "SHORT_BINBYTES",
    "BINBYTES8",
}
_TUPLES = {"EMPTY_TUPLE": 0, "TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}
_IGNORED = {"PROTO", "FRAME"}


def read_pickled_data(data: bytes) -> object:
    """The plain value a pickle holds (see the module docstring), built without unpickling.

    Raises:
        InvalidPickledDataError: an opcode of anything but plain data, a malformed stream, or
            bytes after its STOP.
    """
    stack: list = []
    marks: list[int] = []
    memo: dict[int, object] = {}
    try:
        for opcode, argument, position in pickletools.genops(data):
            name = opcode.name
            if name in _IGNORED:
                continue
            if name == "STOP":
                if position + 1 != len(data) or len(stack) != 1 or marks:
                    raise InvalidPickledDataError("the pickle does not end with its one value")
                return stack.pop()
            _step(name, argument, stack, marks, memo)
    except InvalidPickledDataError:
        raise
    except (ValueError, IndexError, KeyError, TypeError) as error:  # genops on damaged bytes, a bad memo key
        raise InvalidPickledDataError(f"it is not a whole pickle: {str(error)[:120]}") from None
    raise InvalidPickledDataError("the pickle has no STOP")


def _step(name: str, argument, stack: list, marks: list[int], memo: dict) -> None:
    """Applies one opcode of plain data to the stack."""
    if name in _CONSTANTS:
        value = _CONSTANTS[name]
        stack.append(value() if isinstance(value, type) else value)
    elif name in _VALUES:
        stack.append(argument)
    elif name in _TUPLES:
        count = _TUPLES[name]
        items = stack[len(stack) - count :] if count else []
        del stack[len(stack) - count :]
        stack.append(tuple(items))
    elif name == "MARK":
        marks.append(len(stack))
    elif name in ("TUPLE", "LIST", "DICT", "APPENDS", "SETITEMS"):
        start = marks.pop()
        items = stack[start:]
        del stack[start:]
        if name == "TUPLE":
            stack.append(tuple(items))
        elif name == "LIST":
            stack.append(list(items))
        elif name == "DICT":
            stack.append(dict(zip(items[::2], items[1::2])))
        elif name == "APPENDS":
            _container(stack, list).extend(items)
        else:
            _container(stack, dict).update(zip(items[::2], items[1::2]))
    elif name == "APPEND":
        item = stack.pop()
        _container(stack, list).append(item)
    elif name == "SETITEM":
        value, key = stack.pop(), stack.pop()
        _container(stack, dict)[key] = value
    elif name in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):
        memo[len(memo) if name == "MEMOIZE" else int(argument)] = stack[-1]
    elif name in ("GET", "BINGET", "LONG_BINGET"):
        stack.append(memo[int(argument)])
    else:
        raise InvalidPickledDataError(f"it holds the opcode {name}, which plain data (lists, dicts, strings) never has")


def _container(stack: list, kind: type):
    if not stack or type(stack[-1]) is not kind:
        raise InvalidPickledDataError(f"it adds items to something that is not a {kind.__name__}")
    return stack[-1]
