"""The code blocks of README.md and docs/*.md run as a reader would run them.

Every ```bash and ```python block runs, in the order of its page, in one working folder per page
(a fresh folder holding a link to the repository's ``configs/``), with ``splitmatch`` and
``python`` running this checkout: bash blocks in a shell under ``set -euo pipefail`` within
``BLOCK_SECONDS``; python blocks as a script of their own (``runpy``, in this process, which
saves importing torch once per block). A ```yaml block whose first key is
``preset:`` is loaded as a config. Other blocks (```text, ```json, plain ```) are not run.

A block that cannot run here is marked on the line right above its opening fence::

    <!-- not-run: needs CLIP ViT-B/16 weights and the VOC dataset -->

and the reason is required. A block that needs a file a reader would have made first (a
trained checkpoint, a photo) names stand-ins, placed before it runs::

    <!-- run-with: checkpoint=runs/voc/model.safetensors image=photo.jpg -->

Stand-ins (``STAND_INS``): ``checkpoint``, a random-initialised ``tiny`` model saved as a
checkpoint; ``image``, a small RGB JPEG with an EXIF orientation tag; ``dataset``, a small
dataset in the folder format. An unmarked bash block that installs software or runs ``make``
is refused rather than run.
"""

from __future__ import annotations

import os
import re
import runpy
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_CLASSES, make_tiny_dataset
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK_SECONDS = 120
RUN_LANGUAGES = {"bash": "bash", "sh": "bash", "shell": "bash", "python": "python", "py": "python"}
STAND_INS = ("checkpoint", "image", "dataset")
# Never run from a page without a marker: they change the machine or take long.
REFUSED = re.compile(r"(^|[\s;&|(])(pip3?|uv|conda|apt|apt-get|sudo|make|curl|wget)(\s|$)|\bgit\s+clone\b", re.M)

_MARKER = re.compile(r"^\s*<!--\s*(not-run|run-with)\s*:(.*?)-->\s*$")
_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)\s*$")


class DocsFormatError(ValueError):
    """A page's markers do not follow the convention above."""


@dataclass
class Block:
    """One fenced code block of a page."""

    document: Path
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    skip_reason: str | None = None
    stand_ins: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{_name(self.document)}:{self.line}"


def _name(document: Path) -> str:
    return str(document.relative_to(REPO)) if document.is_relative_to(REPO) else document.name


def parse_marker(kind: str, text: str, where: str) -> tuple[str | None, dict[str, str]]:
    text = text.strip()
    if kind == "not-run":
        if not text:
            raise DocsFormatError(f"{where}: `not-run:` needs a reason (what the block needs)")
        return text, {}
    stand_ins = {}
    for item in text.split():
        name, _, path = item.partition("=")
        if name not in STAND_INS or not path:
            raise DocsFormatError(f"{where}: `run-with:` takes NAME=PATH with NAME in {STAND_INS}, got '{item}'")
        if Path(path).is_absolute() or ".." in Path(path).parts:
            raise DocsFormatError(f"{where}: stand-in path '{path}' must be relative, inside the working folder")
        stand_ins[path] = name
    if not stand_ins:
        raise DocsFormatError(f"{where}: `run-with:` names no stand-in")
    return None, stand_ins


def code_blocks(document: Path) -> list[Block]:
    """The fenced blocks of a page, with their markers; malformed markers are refused."""
    lines = document.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    marker: tuple[int, str, str] | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        where = f"{_name(document)}:{index + 1}"
        found = _MARKER.match(line)
        if found:
            marker = (index, found.group(1), found.group(2))
            index += 1
            continue
        fence = _FENCE.match(line)
        if not fence:
            if marker is not None:
                raise DocsFormatError(f"{where}: a marker must be on the line right above a code block")
            index += 1
            continue
        indent, ticks, language = fence.groups()
        opening_line = index + 1
        body = []
        index += 1
        while index < len(lines) and lines[index].strip() != ticks:
            body.append(lines[index][len(indent) :] if lines[index].startswith(indent) else lines[index].lstrip())
            index += 1
        index += 1  # the closing fence
        block = Block(document, opening_line, language.lower(), "\n".join(body) + "\n")
        if marker is not None:
            block.skip_reason, block.stand_ins = parse_marker(marker[1], marker[2], where)
            marker = None
        blocks.append(block)
    if marker is not None:
        raise DocsFormatError(f"{_name(document)}:{marker[0] + 1}: a marker at the end of the page")
    return blocks


def github_slug(heading: str, seen: dict[str, int]) -> str:
    """The anchor GitHub gives a heading (lower case, punctuation dropped, spaces to hyphens)."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
    count = seen.get(slug, 0)
    seen[slug] = count + 1
    return slug if count == 0 else f"{slug}-{count}"


def anchors(document: Path) -> set[str]:
    seen: dict[str, int] = {}
    found, fenced = set(), False
    for line in document.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced and (heading := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)):
            found.add(github_slug(re.sub(r"[`*_]", "", heading.group(1)), seen))
    return found


def _make_stand_ins(directory: Path) -> dict[str, Path]:
    from splitmatch.config.presets import preset
    from splitmatch.model.build import build_segmentor
    from splitmatch.model.checkpoint import save_checkpoint

    directory.mkdir(parents=True, exist_ok=True)
    config = preset("tiny")
    model = build_segmentor(config.clip, config.decoder)
    checkpoint = save_checkpoint(
        directory / "model.safetensors", model, config, TINY_CLASSES, TINY_CLASSES.seen_names, 0
    )
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways, shown turned by 90 degrees, as phones do
    image.save(directory / "photo.jpg", exif=exif, quality=90)
    make_tiny_dataset(directory / "dataset", num_train=4, num_val=2)
    return {"checkpoint": checkpoint, "image": directory / "photo.jpg", "dataset": directory / "dataset"}


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory) -> dict[str, Path]:
    return _make_stand_ins(tmp_path_factory.mktemp("stand-ins"))


def _environment(bin_dir: Path) -> dict[str, str]:
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, command in (("splitmatch", f'"{sys.executable}" -m splitmatch'), ("python", f'"{sys.executable}"')):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
        shim.chmod(0o755)
    shutil.copy(bin_dir / "python", bin_dir / "python3")
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def _place(block: Block, work: Path, stand_ins: dict[str, Path]) -> None:
    for path, name in block.stand_ins.items():
        target = work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if stand_ins[name].is_dir():
            shutil.copytree(stand_ins[name], target, dirs_exist_ok=True)
        else:
            shutil.copy(stand_ins[name], target)


def run_block(block: Block, work: Path, env: dict[str, str], scratch: Path) -> None:
    """Runs one block in ``work``; fails the test with the block's place and its output."""
    language = RUN_LANGUAGES.get(block.language)
    if block.language == "yaml" and re.match(r"^preset:", block.code):
        from splitmatch.config.presets import load_config

        config_file = scratch / f"block-{block.line}.yaml"
        config_file.write_text(block.code)
        load_config(config_file)
        return
    if language == "python":
        _run_python(block, work, scratch)
    elif language == "bash":
        _run_bash(block, work, env)


def _run_bash(block: Block, work: Path, env: dict[str, str]) -> None:
    if refused := REFUSED.search(block.code):
        pytest.fail(
            f"{block.where}: the block runs `{refused.group(0).strip()}`; mark it <!-- not-run: REASON --> "
            "if a reader should not run it here"
        )
    command = ["bash", "-e", "-u", "-o", "pipefail", "-c", block.code]
    try:
        done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=BLOCK_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{block.where}: the block ran longer than {BLOCK_SECONDS} s; mark it <!-- not-run: REASON -->")
    if done.returncode != 0:
        pytest.fail(
            f"{block.where}: the bash block exited {done.returncode}\n--- block\n{block.code}"
            f"--- output\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )


def _run_python(block: Block, work: Path, scratch: Path) -> None:
    script = scratch / f"block-{block.line}.py"
    script.write_text(block.code)
    previous = Path.cwd()
    started = time.monotonic()
    os.chdir(work)
    try:
        runpy.run_path(str(script), run_name="__main__")
    except BaseException as error:  # a snippet's SystemExit too
        pytest.fail(f"{block.where}: the python block raised\n--- block\n{block.code}--- error\n{error!r}")
    finally:
        os.chdir(previous)
    seconds = time.monotonic() - started
    assert seconds < BLOCK_SECONDS, f"{block.where}: took {seconds:.0f} s; mark it <!-- not-run: REASON -->"


def _document_params():
    for document in DOCUMENTS:
        yield pytest.param(document, id=str(document.relative_to(REPO)))


@pytest.mark.slow
@pytest.mark.parametrize("document", list(_document_params()))
def test_code_blocks_of_the_page_run(document, tmp_path, stand_ins):
    work = tmp_path / "work"
    work.mkdir()
    (work / "configs").symlink_to(REPO / "configs", target_is_directory=True)
    env = _environment(tmp_path / "bin")
    for block in code_blocks(document):
        if block.skip_reason is None:
            _place(block, work, stand_ins)
            run_block(block, work, env, tmp_path)


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: str(d.relative_to(REPO)))
def test_markers_follow_the_convention(document):
    blocks = code_blocks(document)  # raises on a marker without a reason or a block
    assert all(b.skip_reason is None or b.skip_reason.strip() for b in blocks)


def test_the_parser_reads_markers_fences_and_indented_blocks(tmp_path):
    page = tmp_path / "page.md"
    text = (
        "# Title\n\n<!-- not-run: needs a GPU -->\n```bash\nmake demo\n```\n\n"
        "1. a step\n\n   <!-- run-with: image=a.jpg checkpoint=m.safetensors -->\n   ```python\n   x = 1\n"
        "   print(x)\n   ```\n\n```text\nnot code\n```\n"
    )
    page.write_text(text)
    blocks = code_blocks(page)
    assert [(b.language, b.skip_reason, b.line) for b in blocks] == [
        ("bash", "needs a GPU", 4),
        ("python", None, 11),
        ("text", None, 16),
    ]
    assert blocks[1].code == "x = 1\nprint(x)\n"
    assert blocks[1].stand_ins == {"a.jpg": "image", "m.safetensors": "checkpoint"}
    bad_pages = (
        "<!-- not-run: -->\n```bash\nls\n```\n",  # no reason
        "<!-- run-with: gpu=x -->\n```bash\nls\n```\n",  # no such stand-in
        "<!-- run-with: image=../x.jpg -->\n```bash\nls\n```\n",  # outside the working folder
        "<!-- not-run: a reason -->\n\nsome text\n",  # not above a block
    )
    for bad in bad_pages:
        page.write_text(bad)
        with pytest.raises(DocsFormatError):
            code_blocks(page)
    assert REFUSED.search("pip install -e .") and REFUSED.search("cd x && make demo")
    assert not REFUSED.search("splitmatch presets") and not REFUSED.search("splitmatch make-believe")


def _text_files():
    for folder in ("splitmatch", "configs", "benchmarks", "docs", "tests"):
        for path in sorted((REPO / folder).rglob("*")):
            if path.suffix in (".py", ".yaml", ".md", ".json") and path.is_file():
                yield path
    yield REPO / "README.md"


def test_pointers_to_doc_sections_name_existing_headings():
    pointer = re.compile(r"(?:docs/)?\b([\w-]+\.md)#([\w-]+)")
    wrong = []
    for path in _text_files():
        for match in pointer.finditer(path.read_text(encoding="utf-8")):
            name, anchor = match.groups()
            target = REPO / name if name == "README.md" else REPO / "docs" / name
            if not target.is_file() or anchor not in anchors(target):
                wrong.append(f"{path.relative_to(REPO)}: {match.group(0)}")
    assert not wrong, "pointers to sections that do not exist: " + ", ".join(wrong)


def test_nothing_points_outside_the_repository():
    outside = re.compile(r"SPEC\s*§|\.\./shared|SPEC\.md")
    found = [str(p.relative_to(REPO)) for p in _text_files() if outside.search(p.read_text(encoding="utf-8"))]
    assert not found, f"files that point to text outside the repository: {found}"
