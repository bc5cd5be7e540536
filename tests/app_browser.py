"""Drives ``splitmatch app`` in a real headless Chromium, for tests/app/test_app_browser.py and for the
screenshot in the docs::

    python tests/app_browser.py --out docs/images/app.png     # the packaged world model
    python tests/app_browser.py --checkpoint runs/world/model.safetensors --out app.png

Needs the app extra and playwright (``pip install -e ".[dev,app]"``, which ``make install``
runs) and an installed Chromium (Debian: ``apt-get install chromium``). Playwright drives that
browser; it never downloads one. Not collected by pytest (the name does not start with ``test_``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Known to work headless as root in a container, with nothing fetched from the network.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 1000}


def find_browser() -> str | None:
    """The Chromium to drive: ``$SPLITMATCH_BROWSER`` when set, else the first on ``PATH``."""
    explicit = os.environ.get("SPLITMATCH_BROWSER")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for name in BROWSER_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_app(checkpoint: str | Path | None, port: int | None = None, start_timeout: float = 600.0) -> Iterator[str]:
    """Starts ``python -m splitmatch app`` on 127.0.0.1 with this repository's code; yields its URL.

    ``checkpoint=None`` starts it without ``--checkpoint``: it serves the packaged world model.

    The timeout is generous: importing torch and Gradio takes a few seconds of CPU, which a
    shared machine can stretch to minutes.
    """
    port = port or free_port()
    url = f"http://127.0.0.1:{port}/"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    command = [sys.executable, "-m", "splitmatch", "app", "--port", str(port)]
    command += ["--checkpoint", str(checkpoint)] if checkpoint is not None else []
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)

        def output() -> str:
            log.seek(0)
            return log.read().decode("utf-8", "replace")[-4000:]

        try:
            deadline = time.monotonic() + start_timeout
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"the app exited with status {process.returncode}:\n{output()}")
                try:
                    with urllib.request.urlopen(url, timeout=5) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the app did not answer on {url} within {start_timeout:.0f} s:\n{output()}")
                time.sleep(0.5)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def chromium(executable: str) -> Iterator:
    """A headless Chromium (playwright ``Browser``); each launch gets a fresh, temporary profile."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, url: str, requests: list[str] | None = None):
    """A new visitor's tab with the page loaded; every URL it fetches is appended to ``requests``."""
    page = browser.new_page(viewport=VIEWPORT)
    if requests is not None:
        page.on("request", lambda request: requests.append(request.url))
    page.goto(url)
    page.wait_for_selector("#segment", timeout=120_000)
    return page


def fill_request(
    page,
    image: str | Path | None = None,
    example: int | None = None,
    names: str | None = None,
    mode: str | None = None,
    calibration: float | None = None,
) -> None:
    """Sets the page's inputs, as a visitor would; ``None`` leaves one as it is."""
    if image is not None:
        page.locator("#image input[type=file]").set_input_files(str(image))
    if example is not None:
        page.locator("#examples button.gallery-item").nth(example).click()
    if names is not None:
        page.locator("#classes textarea").fill(names)
    if mode is not None:
        page.locator("#mode").get_by_label(mode).check()
    if calibration is not None:
        number = page.locator("#calibration input[type=number]")
        number.fill(f"{calibration:g}")
        number.press("Enter")


def segment(page) -> None:
    page.locator("#segment").click()


def wait_for_result(page, timeout_ms: int = 300_000) -> dict:
    """Waits for the time line of a finished request; returns what the page shows.

    Returns:
        ``timing`` (text), ``figure_url``, ``label_url`` and ``table`` (rows of cell texts).
    """
    page.wait_for_function(
        "() => { const t = document.querySelector('#timing textarea'); return t && t.value.length > 0; }",
        timeout=timeout_ms,
    )
    page.wait_for_selector("#prediction img", timeout=timeout_ms)
    page.wait_for_selector("#label-map a", timeout=timeout_ms)
    page.wait_for_selector("#areas [role=gridcell]", timeout=timeout_ms)
    table = page.evaluate(
        "() => Array.from(document.querySelectorAll('#areas [role=row]')).map("
        "row => Array.from(row.querySelectorAll('[role=gridcell]')).map(cell => cell.innerText.trim()))"
    )
    return {
        "timing": page.locator("#timing textarea").input_value(),
        "figure_url": page.locator("#prediction img").get_attribute("src"),
        "label_url": page.locator("#label-map a").first.get_attribute("href"),
        "table": [row for row in table if row],
    }


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def screenshot(
    checkpoint: str | Path | None, out: str | Path, example: int = 0, calibration: float | None = None
) -> dict:
    """Serves ``checkpoint`` (``None``: the packaged world model), segments one example with the
    model's own classes, saves the page."""
    browser_path = find_browser()
    if browser_path is None:
        raise SystemExit("no Chromium found: install one (Debian: apt-get install chromium) or set SPLITMATCH_BROWSER")
    with running_app(checkpoint) as url, chromium(browser_path) as browser:
        page = open_page(browser, url)
        fill_request(page, example=example, calibration=calibration)
        segment(page)
        result = wait_for_result(page)
        page.wait_for_timeout(500)  # let the last image finish painting
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="model to serve (default: the packaged world model)")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--example", type=int, default=0, help="which example image to segment (from 0)")
    parser.add_argument("--seen-calibration", type=float, help="default: the checkpoint's")
    args = parser.parse_args()
    result = screenshot(args.checkpoint, args.out, args.example, args.seen_calibration)
    print(f"wrote {args.out}: {result['timing']}")


if __name__ == "__main__":
    main()
