"""Plain data in the pickle format is read by walking its opcodes, never by unpickling: what
pickle.dumps writes of dicts, lists, tuples, strings and numbers comes back equal at every
protocol, and anything that names a class or function, or is not one whole pickle, is refused."""

from __future__ import annotations

import collections
import pickle

import pytest

from splitmatch.storage.pickled_data import InvalidPickledDataError, read_pickled_data

SHARED = [1, 2]
PLAIN = [
    {k: [f"val2014/COCO_val2014_{k * 7 + j:012d}.jpg" for j in range(k % 5)] for k in range(80)},  # HSNet's shape
    [1, 2.5, None, True, False, "x", (1, 2), (), (1,), (1, 2, 3), (1, 2, 3, 4), {"a": [1, {"b": ()}]}],
    -(2**70),
    2**31,
    65536,
    "é" * 300,
    "a\nb",
    {},
    [SHARED, SHARED],  # the memo: one list referred to twice
]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_data_comes_back_equal_at_every_protocol(protocol):
    for value in PLAIN + ([b"bytes", [b"zz"]] if protocol >= 3 else []):
        assert read_pickled_data(pickle.dumps(value, protocol=protocol)) == value


class Anything:
    pass


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (pickle.dumps(Anything()), "STACK_GLOBAL"),
        (pickle.dumps(collections.OrderedDict(a=1)), "STACK_GLOBAL"),
        (b"cos\nsystem\n(S'echo hi'\ntR.", "GLOBAL"),  # os.system('echo hi') at protocol 0
        (pickle.dumps({1, 2}), "EMPTY_SET"),
        (pickle.dumps([1]) + b"more", "does not end"),
        (pickle.dumps({1: [2]})[:-3], "not a whole pickle"),
        (b"", "not a whole pickle"),
    ],
)
def test_anything_else_is_refused_in_one_line(data, message):
    with pytest.raises(InvalidPickledDataError, match=message) as refused:
        read_pickled_data(data)
    assert "\n" not in str(refused.value)


def test_the_reader_never_imports_or_calls(monkeypatch):
    import pickle as pickle_module

    def forbidden(*args, **kwargs):
        raise AssertionError("the pickle module was asked to load")

    monkeypatch.setattr(pickle_module, "loads", forbidden)
    monkeypatch.setattr(pickle_module, "load", forbidden)
    monkeypatch.setattr(pickle_module, "Unpickler", forbidden)
    assert read_pickled_data(pickle.dumps({3: ["a.jpg"]})) == {3: ["a.jpg"]}
