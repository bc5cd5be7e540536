"""Data never becomes markup: class names stored in a checkpoint or typed in the app, file names
and error messages reach the page as text, and the page fetches nothing from outside the machine
(splitmatch/app/page.py). The browser test drives the real page in headless Chromium."""

from __future__ import annotations

import shutil
from urllib.parse import urlsplit

import pytest

from splitmatch.app.page import _about, markdown_text
from splitmatch.data.classes import ClassSplit

WEB_SCHEMES = ("http", "https", "ws", "wss")
# Each would create an element, fetch from elsewhere or run code if the page rendered it as markup.
IMG = "<img src=http://example.invalid/a.png onerror=window.__injected=1>"
BOLD = "<b>INJECTED-B</b>"
LINK = "![pic](http://example.invalid/b.png)"
QUOTES = "\"quoted' & <i>INJECTED-I</i>"
FORMULA = "$x^2$ `code` *star*"
MARKUP_NAMES = ("background", IMG, BOLD, LINK, QUOTES, FORMULA)


def test_markdown_text_escapes_every_markup_character():
    for text in MARKUP_NAMES:
        escaped = markdown_text(text)
        assert all(escaped[i - 1] == "\\" for i, char in enumerate(escaped) if char in "<>[]()!*`$&\"'")
        assert escaped.replace("\\", "") == text.replace("\\", "")


def test_the_description_holds_checkpoint_data_only_escaped(markup_checkpoint):
    from splitmatch.app.segment import Segmenter

    segmenter = Segmenter.from_checkpoint(markup_checkpoint)
    assert segmenter.model_classes == list(MARKUP_NAMES)
    about = _about(segmenter, f"/x/{IMG}.safetensors")
    body = about.split("\n\n", 1)[1]  # after the fixed title
    assert "<" not in body.replace("\\<", "") and "](" not in body.replace("\\]\\(", "")


@pytest.fixture(scope="module")
def markup_checkpoint(tmp_path_factory):
    """A tiny model whose record names classes (and a dataset) that carry markup: a checkpoint
    from someone else."""
    from splitmatch.config.presets import preset
    from splitmatch.model.build import build_segmentor
    from splitmatch.model.checkpoint import save_checkpoint

    config = preset("tiny")
    classes = ClassSplit(MARKUP_NAMES, (FORMULA,), dataset="<i>INJECTED-DS</i>")
    model = build_segmentor(config.clip, config.decoder)
    path = tmp_path_factory.mktemp("markup") / "model.safetensors"
    return save_checkpoint(path, model, config, classes, list(MARKUP_NAMES[:-1]), 1)


INJECTED = """() => ({
  images: Array.from(document.querySelectorAll('img')).map(i => i.getAttribute('src') || '')
    .filter(s => s.includes('example.invalid') || s === 'x'),
  elements: Array.from(document.querySelectorAll('b, i, a')).map(e => e.textContent)
    .filter(t => t.includes('INJECTED') || t === 'pic'),
  ran: window.__injected !== undefined,
})"""


def _assert_nothing_injected(page) -> None:
    found = page.evaluate(INJECTED)
    assert found == {"images": [], "elements": [], "ran": False}, found


@pytest.mark.slow
def test_markup_in_names_files_and_errors_stays_text_in_the_browser(markup_checkpoint, tiny_dataset, tmp_path):
    pytest.importorskip("gradio")
    pytest.importorskip("playwright")
    from app_browser import chromium, find_browser, open_page, running_app, segment, wait_for_result

    browser_path = find_browser()
    if browser_path is None:
        pytest.skip("no Chromium browser found: install Debian's chromium")
    prefix = "<img src=x onerror=window.__injected=2>"
    upload_name = prefix + "n" * (255 - len(prefix) - len(".png")) + ".png"  # the file system's limit
    upload = tmp_path / upload_name
    shutil.copy(tiny_dataset.root / "images" / "val_000.png", upload)
    requests: list[str] = []
    with running_app(markup_checkpoint) as url, chromium(browser_path) as browser:
        page = open_page(browser, url, requests)
        text = page.inner_text("body")
        for name in (IMG, BOLD, LINK, "INJECTED-DS"):  # the description shows them as characters
            assert name in text, name
        assert page.locator("#classes textarea").input_value() == ", ".join(MARKUP_NAMES)
        _assert_nothing_injected(page)

        typed = ", ".join(["background", IMG, BOLD, QUOTES])
        page.locator("#image input[type=file]").set_input_files(str(upload))
        page.locator("#classes textarea").fill(typed)
        segment(page)
        result = wait_for_result(page)
        assert sorted(row[0] for row in result["table"]) == sorted(["background", IMG, BOLD, QUOTES])
        shown = page.locator("#label-map").inner_text()  # the visitor's file name, made safe and short
        assert "_labels" in shown and "<img src=x" in shown and "/tmp" not in page.inner_text("body")
        _assert_nothing_injected(page)

        page.locator("#classes textarea").fill(f"background, {BOLD}, {BOLD}")
        segment(page)
        message = page.get_by_text("appears twice")
        message.wait_for(timeout=60_000)
        assert BOLD in message.inner_text()  # shown as typed, not as bold text
        _assert_nothing_injected(page)

    served_from = urlsplit(url).netloc
    elsewhere = sorted({r for r in requests if urlsplit(r).scheme in WEB_SCHEMES and urlsplit(r).netloc != served_from})
    assert not elsewhere, f"the page fetched from elsewhere: {elsewhere[:5]}"
