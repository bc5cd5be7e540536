"""The app's web page: a thin Gradio layout over :class:`splitmatch.app.segment.Segmenter`.

Gradio is an optional extra; this module is imported by ``splitmatch app`` only, after
:func:`require_gradio` has checked that it is installed.

Data never becomes markup. Class names (typed, or from a checkpoint someone else made), file
names and error messages reach the page as text: in text components (the class box, the table,
the time line), escaped for Markdown in the description (:func:`markdown_text`), escaped for
HTML in error messages (which Gradio shows as HTML). A name such as
``<img src=http://example.invalid/x>`` is shown as those characters, never made an element,
and the page fetches nothing from outside the machine.
"""

from __future__ import annotations

import html
import os
import shutil
import signal
import string
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

from splitmatch.app.segment import MODES, TRAINING_FREE, AppError, Segmenter
from splitmatch.config.training_free import RECIPE_TITLES
from splitmatch.data.names import download_stem, printable
from splitmatch.packaged import install_hint

# A local tool: no usage reports sent to Gradio's makers (set before Gradio is imported).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

INSTALL_HINT = install_hint("app")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
QUEUE_SIZE = 16  # requests waiting beyond this are turned away with a message, not piled up
UPLOAD_LIMIT = "50mb"
TABLE_HEADERS = ["class", "area %"]
# The uploaded image fills its box: world images (about 96 px) would otherwise be thumbnails.
CSS = "#image img { width: 100%; height: 100%; object-fit: contain; }"
# Gradio copies a result file into its own cache as the request ends; the app's copy can then go.
RESULT_LIFETIME_S = 600


def require_gradio():
    """Gradio, or :class:`AppError` saying how to install it."""
    try:
        import gradio
    except ImportError:
        raise AppError(f"the app needs Gradio, an optional extra: {INSTALL_HINT}") from None
    return gradio


def markdown_text(text: str) -> str:
    """``text`` as Markdown that renders as exactly these characters: every ASCII punctuation
    character backslash-escaped (so ``<`` opens no HTML, ``[`` no link, ``*`` no emphasis, ``$``
    no formula), control characters shown as escapes."""
    return "".join(f"\\{char}" if char in string.punctuation else char for char in printable(text, 10**6))


def _about(segmenter: Segmenter, checkpoint: str) -> str:
    """The page's description, in Markdown; every piece of it that comes from the checkpoint
    (its file name, dataset and class names) is :func:`markdown_text`."""
    if segmenter.dataset == TRAINING_FREE:
        clip = segmenter.predictor.clip
        title = RECIPE_TITLES[segmenter.predictor.recipe.name]
        lines = [
            "## splitmatch: zero-shot semantic segmentation",
            f"Training-free {markdown_text(title)} ({markdown_text(segmenter.predictor.name)}) on CLIP "
            f"{markdown_text(clip.arch)}: CLIP's own dense features scored against the names you type; "
            "every name is new to it, so the seen-class calibration changes nothing.",
            "It runs on this machine, one request at a time.",
        ]
        return "\n\n".join(lines)
    seen = segmenter.seen_classes
    seen_set = set(seen)
    unseen = [name for name in segmenter.model_classes if name not in seen_set]
    model = (
        f"Model {markdown_text(Path(checkpoint).name)}, trained on {markdown_text(repr(segmenter.dataset))} "
        f"with the classes {markdown_text(', '.join(seen))}"
    )
    model += f"; never shown {markdown_text(', '.join(unseen))}." if unseen else "."
    if segmenter.dataset == "world":
        model += (
            " A model of the built-in world (shapes and textures), not of photos: for photos, start the app "
            "with `--checkpoint` and a model trained on a benchmark."
        )
    lines = [
        "## splitmatch: zero-shot semantic segmentation",
        model,
        "Type any class names: the model labels every pixel with one of them. It runs on this "
        "machine, one request at a time.",
    ]
    return "\n\n".join(lines)


def build_page(segmenter: Segmenter, checkpoint: str, examples: list[Path], work_dir: Path):
    """The page: inputs on the left, results on the right; returns a ``gradio.Blocks``."""
    gr = require_gradio()
    results_dir = work_dir / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    run = _request_handler(gr, segmenter, results_dir)
    # uploads and results older than an hour are deleted, hourly; no usage reports are sent
    with gr.Blocks(title="splitmatch", delete_cache=(3600, 3600), analytics_enabled=False) as page:
        gr.Markdown(_about(segmenter, checkpoint), latex_delimiters=[], sanitize_html=True, elem_id="about")
        with gr.Row():
            with gr.Column():
                *inputs, button = _input_controls(gr, segmenter, examples)
            with gr.Column():
                outputs = _output_controls(gr)
        # Gradio's own image preprocessing would decode the upload and answer a file that is not
        # an image with its internals; the segmenter reads it instead, with a message of its own.
        classes = inputs[1]
        for event in (button.click, classes.submit):
            event(run, inputs, outputs, concurrency_limit=1, api_name=False, preprocess=False)
    return page


def _request_handler(gr, segmenter: Segmenter, results_dir: Path):
    """The function a click runs: ``(upload, class_text, seen_calibration, mode) -> (figure, area rows,
    label-map path, timing)``; every failure a ``gradio.Error`` with an escaped message."""

    def run(upload, class_text, seen_calibration, mode):
        # Called with Gradio's preprocessing off (see build_page): ``upload`` is the
        # uploaded file's record, whose path Gradio has already checked lies in its upload folder.
        image = upload.get("path") if isinstance(upload, dict) else None
        try:
            result = segmenter.segment(image, class_text, seen_calibration, mode)
        except AppError as error:  # Gradio shows an error's message as HTML
            raise gr.Error(html.escape(printable(str(error), 2000)), duration=None, print_exception=False) from None
        except Exception as error:  # a model failure is the server's to log, not the visitor's to read
            traceback.print_exc(file=sys.stderr)
            raise gr.Error(
                f"the model failed on this input ({type(error).__name__}); the server log has the details",
                duration=None,
                print_exception=False,
            ) from None
        try:
            _prune(results_dir, RESULT_LIFETIME_S)
            request_dir = Path(tempfile.mkdtemp(dir=results_dir))
            # Named after the visitor's file, made a safe, short name: a visitor chooses no path here.
            label_path = request_dir / f"{download_stem(upload.get('orig_name'))}_labels.png"
            label_path.write_bytes(result.label_png())
        except OSError as error:  # the server's folders are not the visitor's to read about
            traceback.print_exc(file=sys.stderr)
            raise gr.Error(
                f"the result could not be saved on the server ({html.escape(error.strerror or type(error).__name__)})",
                duration=None,
                print_exception=False,
            ) from None
        rows = [[name, percent] for name, percent in result.area_percent()]
        return result.figure, rows, str(label_path), result.summary()

    return run


def _input_controls(gr, segmenter: Segmenter, examples: list[Path]) -> tuple:
    """The left column: image, class names, calibration, inference mode (the handler's inputs, in its
    order) and the button."""
    image = gr.Image(sources=["upload", "clipboard"], height=320, label="Image", elem_id="image")
    gr.Examples(
        examples=[[str(path)] for path in examples],
        inputs=[image],
        label="Examples: validation images of the built-in world (shapes and textures)",
        elem_id="examples",
    )
    classes = gr.Textbox(
        value=segmenter.default_class_text,
        label="Class names, comma-separated",
        info="Any names; the model's own classes are filled in.",
        lines=2,
        elem_id="classes",
    )
    calibration = gr.Slider(
        0.0,
        1.0,
        value=segmenter.default_seen_calibration,
        step=0.05,
        label="Seen-class calibration",
        info="Taken off the scores of the classes the model was trained with, in favour of new names.",
        elem_id="calibration",
    )
    mode = gr.Radio(
        list(MODES),
        value=segmenter.default_mode,
        label="Inference",
        info="whole: the image at once; slide: overlapping windows, averaged.",
        elem_id="mode",
    )
    button = gr.Button("Segment", variant="primary", elem_id="segment")
    return image, classes, calibration, mode, button


def _output_controls(gr) -> list:
    """The right column: the figure, the area table, the label map and the timing (the handler's
    outputs, in its order)."""
    figure = gr.Image(label="Prediction", type="numpy", format="png", interactive=False, elem_id="prediction")
    timing = gr.Textbox(label="Time", interactive=False, elem_id="timing")
    table = gr.Dataframe(
        headers=TABLE_HEADERS,
        datatype=["str", "number"],
        label="Area of each class",
        interactive=False,
        elem_id="areas",
    )
    labels = gr.File(
        label="Label map (PNG; pixel value i = the i-th class name, from 0)",
        interactive=False,
        elem_id="label-map",
    )
    return [figure, table, labels, timing]


def serve(
    checkpoint: str | Path,
    host: str = "127.0.0.1",
    port: int = 7860,
    device: str = "cpu",
    max_pixels: int | None = None,
    model: str = "checkpoint",
) -> None:
    """Loads the model and serves the page until interrupted; ``model`` is ``checkpoint`` (the file
    ``checkpoint`` names) or a training-free preset (``sclip``, ``maskclip-world``...), as ``--model`` takes."""
    require_gradio()
    from splitmatch.app.segment import DEFAULT_MAX_PIXELS

    if model == "checkpoint":
        segmenter = Segmenter.from_checkpoint(checkpoint, device, max_pixels or DEFAULT_MAX_PIXELS)
    else:
        segmenter = Segmenter.from_training_free(model, device, max_pixels or DEFAULT_MAX_PIXELS)
        checkpoint = segmenter.predictor.name
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:  # a terminated app stops as Ctrl+C stops it, deleting its files
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        _serve(segmenter, str(checkpoint), host, port)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _serve(segmenter: Segmenter, checkpoint: str, host: str, port: int) -> None:
    from splitmatch.app.examples import write_examples

    with tempfile.TemporaryDirectory(prefix="splitmatch-app-") as work:
        work_dir = Path(work)
        examples = write_examples(work_dir / "examples")
        page = build_page(segmenter, checkpoint, examples, work_dir)
        page.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)
        if host not in LOCAL_HOSTS:
            print(
                f"splitmatch app: listening on {host}: anyone who can reach this machine on port {port} "
                "can use the app and its CPU",
                file=sys.stderr,
            )
        try:
            page.launch(
                server_name=host,
                server_port=port,
                share=False,
                inbrowser=False,
                show_error=True,
                quiet=True,
                max_file_size=UPLOAD_LIMIT,
                allowed_paths=[str(work_dir / "examples")],
                ssr_mode=False,
                mcp_server=False,
                footer_links=["gradio"],
                css=CSS,
                prevent_thread_lock=True,  # returns once listening; block_thread below serves
            )
        except OSError:  # Gradio's message speaks of its own launch() arguments
            raise AppError(
                f"cannot listen on {host}:{port}: the port is taken or the address is not this machine's; "
                "choose another --port or --host"
            ) from None
        print(f"splitmatch app: {checkpoint} on http://{_url_host(host)}:{port} (Ctrl+C stops it)", flush=True)
        page.block_thread()  # until Ctrl+C, which closes the server


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _prune(folder: Path, lifetime_s: float) -> None:
    """Deletes the request folders in ``folder`` older than ``lifetime_s`` seconds."""
    cutoff = time.time() - lifetime_s
    for request_dir in folder.iterdir():
        if request_dir.is_dir() and request_dir.stat().st_mtime < cutoff:
            shutil.rmtree(request_dir, ignore_errors=True)


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
