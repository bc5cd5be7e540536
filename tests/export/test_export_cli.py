"""`splitmatch export`'s command line without the onnx extra: these run everywhere."""

from __future__ import annotations

import pytest

from splitmatch.cli import main
from splitmatch.commands.common import UsageError
from splitmatch.commands.export import parse_size
from splitmatch.export import ExportError, onnx_file


@pytest.mark.parametrize("missing", onnx_file.EXTRA_PACKAGES)
def test_a_missing_extra_is_one_line_with_the_install_command(missing, monkeypatch, tmp_path, capsys):
    real = onnx_file.importlib.util.find_spec
    monkeypatch.setattr(onnx_file.importlib.util, "find_spec", lambda name: None if name == missing else real(name))
    out = tmp_path / "model.onnx"
    assert main(["export", "--onnx", str(out), "--classes", "circle,star"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and missing in err and "pip install -e '.[onnx]'" in err, err
    assert not out.exists()


def test_sizes_as_typed():
    assert parse_size(None) is None
    assert parse_size(["96"]) == 96
    assert parse_size(["96", "128"]) == (96, 128)
    for bad in (["1", "2", "3"], ["9.5"], ["x"]):
        with pytest.raises(UsageError):
            parse_size(bad)


def test_sizes_the_model_cannot_read():
    assert onnx_file.check_size(96, (8, 8)) == (96, 96)
    assert onnx_file.check_size((32, 48), (16, 16)) == (32, 48)
    for bad in (0, -16, 24, (32, 40), (32, 48, 64)):
        with pytest.raises(ExportError):
            onnx_file.check_size(bad, (16, 16))
