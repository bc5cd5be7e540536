"""``splitmatch app`` in a real headless Chromium: two visitors at once, results checked pixel by
pixel, bad input answered in the page.

Skips only where no Chromium is installed (or, outside CI, where the app extra and playwright
are not); ``.ci/run`` installs the browser and sets ``SPLITMATCH_REQUIRE_BROWSER=1``, under
which a missing piece fails the test instead.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
from urllib.parse import urlsplit

import numpy as np
import pytest
from app_browser import chromium, fetch, fill_request, find_browser, open_page, running_app, segment, wait_for_result
from PIL import Image

from splitmatch.app.segment import DISPLAY_LONG_SIDE
from splitmatch.visualize import legend, palette

WEB_SCHEMES = ("http", "https", "ws", "wss")
REQUIRED = os.environ.get("SPLITMATCH_REQUIRE_BROWSER") == "1"


def _needs(ok: bool, reason: str) -> None:
    if not ok:
        if REQUIRED:
            pytest.fail(f"{reason} (SPLITMATCH_REQUIRE_BROWSER=1: this run must drive the browser)")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def browser_path() -> str:
    for module in ("gradio", "playwright"):
        _needs(
            importlib.util.find_spec(module) is not None,
            f"{module} is not installed: pip install -e '.[dev,app]' (make install does)",
        )
    path = find_browser()
    _needs(path is not None, "no Chromium browser found: install Debian's chromium (apt-get install chromium)")
    return path


def _check_figure(url: str, names: list[str], image_size: tuple[int, int]) -> None:
    """The served overlay is a real picture, with the legend of exactly these names under it."""
    figure = np.asarray(Image.open(io.BytesIO(fetch(url))).convert("RGB"))
    height, width = image_size
    factor = max(1, DISPLAY_LONG_SIDE // max(height, width))
    overlay = figure[: height * factor, : width * factor]
    assert overlay.reshape(-1, 3).std(0).max() > 10, "the result image is blank"
    expected_legend = legend(names, palette(len(names)), figure.shape[1])
    assert figure.shape[0] == height * factor + expected_legend.shape[0]
    assert np.array_equal(figure[height * factor :], expected_legend), "the legend does not list the typed names"


def _check_label_map(url: str, names: list[str], image_size: tuple[int, int]) -> np.ndarray:
    label_file = Image.open(io.BytesIO(fetch(url)))
    labels = np.asarray(label_file)
    assert labels.shape == image_size and labels.max() < len(names)
    assert json.loads(label_file.info["classes"]) == names
    return labels


def _check_table(table: list[list[str]], names: list[str], labels: np.ndarray) -> None:
    assert sorted(row[0] for row in table) == sorted(names), table
    shown = {row[0]: float(row[1]) for row in table}
    counts = np.bincount(labels.ravel(), minlength=len(names))
    for index, name in enumerate(names):
        assert shown[name] == pytest.approx(100 * counts[index] / labels.size, abs=0.01)


@pytest.mark.slow
def test_two_visitors_segment_at_once_and_bad_input_gets_a_message(browser_path, tiny_checkpoint, tmp_path):
    upload = tiny_checkpoint.parent / "upload.png"
    rng = np.random.default_rng(0)
    pixels = rng.integers(90, 140, (72, 90, 3), dtype=np.uint8)
    pixels[10:40, 20:60] = (220, 40, 40)
    Image.fromarray(pixels).save(upload)
    names_a = ["background", "crimson square", "lawn", "ocean"]
    names_b = ["background", "circle", "heart", "cross"]
    requests: list[str] = []

    with running_app(tiny_checkpoint) as url, chromium(browser_path) as browser:
        first, second = open_page(browser, url, requests), open_page(browser, url, requests)
        prefilled = first.locator("#classes textarea").input_value()
        assert prefilled == "background, red, green, blue, yellow"  # the checkpoint's own classes
        assert "trained on 'tiny' with the classes background, red, green, blue; never shown yellow" in (
            first.inner_text("body")
        )

        fill_request(first, image=upload, names=", ".join(names_a), mode="whole", calibration=0.5)
        fill_request(second, example=0, names=", ".join(names_b), mode="slide")
        segment(first)
        segment(second)  # queued behind the first: the app runs one request at a time
        a, b = wait_for_result(first), wait_for_result(second)
        first.screenshot(path=str(tmp_path / "app.png"), full_page=True)

        assert re.fullmatch(
            r"\d+\.\d\d s on the CPU \(whole image, seen-class calibration 0.5, 90x72 px, 4 classes\)", a["timing"]
        ), a["timing"]
        assert "sliding window" in b["timing"] and "4 classes" in b["timing"], b["timing"]
        _check_figure(a["figure_url"], names_a, (72, 90))
        labels = _check_label_map(a["label_url"], names_a, (72, 90))
        _check_table(a["table"], names_a, labels)
        example_size = tuple(int(v) for v in re.search(r"(\d+)x(\d+) px", b["timing"]).groups()[::-1])
        _check_figure(b["figure_url"], names_b, example_size)
        _check_table(b["table"], names_b, _check_label_map(b["label_url"], names_b, example_size))

        fill_request(first, names=" ")
        segment(first)
        first.get_by_text("no class names: type at least one").wait_for(timeout=60_000)
        not_an_image = tmp_path / "notes.png"
        not_an_image.write_text("a text file with an image's name\n")
        fill_request(second, image=not_an_image)
        segment(second)
        message = second.get_by_text("image notes.png is corrupt or truncated")
        message.wait_for(timeout=60_000)
        assert "/" not in message.inner_text()  # the server's upload folder stays private

    served_from = urlsplit(url).netloc  # blob: and data: URLs are the page's own
    off_machine = sorted(
        {r for r in requests if urlsplit(r).scheme in WEB_SCHEMES and urlsplit(r).netloc != served_from}
    )
    assert not off_machine, f"the page fetched from elsewhere: {off_machine[:5]}"


@pytest.mark.slow
def test_without_a_checkpoint_the_packaged_world_model_segments_an_example(browser_path):
    from splitmatch.app.examples import EXAMPLE_SEED, EXAMPLE_SPLIT, example_indices
    from splitmatch.predict.predictor import Predictor
    from splitmatch.world.generator import DEFAULT_SPEC, image_rng, render_image

    with running_app(None) as url, chromium(browser_path) as browser:
        page = open_page(browser, url)
        assert "trained on 'world'" in page.inner_text("body") and "not of photos" in page.inner_text("body")
        names = [name.strip() for name in page.locator("#classes textarea").input_value().split(",")]
        assert len(names) == 13 and names[0] == "background" and {"circle", "heart", "bolt"} <= set(names)
        typed = list(reversed(names))  # any order: the label values follow the typed names
        fill_request(page, example=0, names=", ".join(typed), mode="whole")
        segment(page)
        result = wait_for_result(page)
        # The result's files are served by the app: fetch them while it runs.
        image, _ = render_image(image_rng(EXAMPLE_SEED, EXAMPLE_SPLIT, example_indices()[0]), DEFAULT_SPEC)
        _check_figure(result["figure_url"], typed, image.shape[:2])
        labels = _check_label_map(result["label_url"], typed, image.shape[:2])
        _check_table(result["table"], typed, labels)
    # The page serves the library's packaged model (its quality on world images: tests/predict/test_packaged_model.py);
    # another process may break a near-tie of scores otherwise, hence agreement rather than equality.
    expected = Predictor.packaged("cpu", mode="whole").predict(image, typed)
    assert (labels == expected).mean() > 0.999, "the page's result is not the packaged model's"
