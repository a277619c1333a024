"""tools/app.py: the page answers in a real browser (headless Chromium), and user mistakes become messages.

The browser test starts the app as a user does (its command line, a free local port), drives Debian's
Chromium through Playwright (no browser download) and asserts that the page shows the class the model
itself ranks first for a demo clip. Without Chromium it is skipped with a reason the test summary names.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.processes import free_port
from tests.tiny_run import FP32, one_video_config, write_tiny_checkpoint
from utils.config import load_config
from tests.data_factory import write_video
from workflows.app import analyse, class_list
from workflows.prediction import Predictor
from workflows.timeline import predict_timeline

REPO = Path(__file__).resolve().parent.parent
# BIKE_CHROMIUM names another Chromium executable (Playwright drives it; it never downloads one).
CHROMIUM = os.environ.get("BIKE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_MISSING = "Chromium is not installed: the browser test did not run"
# A closed network: nothing in the background, no sandbox (root in a container), software rendering.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CLASSES = ["moving left", "growing", "rotating clockwise", "vanishing", "appearing"]


@pytest.fixture(scope="module")
def model(tiny_dataset, tmp_path_factory):
    """A tiny checkpoint, a one-video config and the predictor of both (the page's expected answer)."""
    from tests.tiny_run import TinyConfig

    folder = tmp_path_factory.mktemp("app")
    weights = write_tiny_checkpoint(folder / "model_best.pt", seed=5)
    config, video = one_video_config(TinyConfig(tiny_dataset, folder), folder, "video")
    predictor = Predictor(load_config(config), CLASSES, str(weights))
    return {"config": config, "weights": str(weights), "video": video, "predictor": predictor}


def test_user_mistakes_become_messages(model, tmp_path):
    predictor, video = model["predictor"], model["video"]
    typed = ", ".join(CLASSES)
    assert "Upload a video" in analyse(predictor, None, typed, 1, 1, 2**20).message
    too_large = analyse(predictor, video, typed, 1, 1, max_bytes=100)
    assert too_large.probabilities is None and "up to 0 MB" in too_large.message
    (tmp_path / "notes.mp4").write_text("not a video" * 50)
    broken = analyse(predictor, str(tmp_path / "notes.mp4"), typed, 1, 1, 2**20)
    assert broken.probabilities is None and "**notes.mp4** could not be read as a video" in broken.message
    assert str(tmp_path) not in broken.message  # the server's upload folder is nobody's business
    assert "at least two class names" in analyse(predictor, video, " , moving left", 1, 1, 2**20).message


def test_answer_is_the_predictors_and_uploads_are_kept_only_when_asked(model, tmp_path):
    predictor, video = model["predictor"], model["video"]
    answer = analyse(predictor, video, "\n".join(CLASSES[::-1]), 2, 3, 2**20, keep_folder=tmp_path / "kept")
    reference = predictor.with_options(CLASSES[::-1], 2, 3).predict(video)
    names = CLASSES[::-1]
    assert list(answer.probabilities) == [names[i] for i, _ in reference.top(5)]
    assert list(answer.probabilities.values()) == pytest.approx([reference.probabilities[i].item()
                                                                 for i, _ in reference.top(5)])
    assert f"Top class **{names[reference.top(1)[0][0]]}**" in answer.message and "2 clip(s) x 3 crop(s)" in \
        answer.message
    assert [path.name for path in (tmp_path / "kept").iterdir()] == [Path(video).name]
    assert class_list("a, b\nc,,") == ["a", "b", "c"]


def test_a_long_video_gets_the_timeline_a_short_one_does_not(model, tmp_path):
    predictor, typed = model["predictor"], ", ".join(CLASSES)
    short = analyse(predictor, model["video"], typed, 1, 1, 2**20, window=1.0)
    assert short.timeline is None and "No timeline: the video is shorter than 3 windows of 1 s" in short.message
    long = write_video(str(tmp_path / "long.mp4"), num_frames=100, fps=25)  # 4 s: windows of 1 s every 0.5 s
    answer = analyse(predictor, long, typed, 1, 1, 2**20, window=1.0)
    timeline = predict_timeline(predictor, long, 1.0, progress=False)
    assert len(timeline.windows) >= 7
    assert f"Timeline: {len(timeline.windows)} windows of 1 s, {len(timeline.segments)} segment(s)." in answer.message
    assert answer.timeline.axes and answer.timeline.axes[-1].get_xlabel() == timeline_xlabel(timeline)


def timeline_xlabel(timeline):
    from workflows.timeline import timeline_figure
    return timeline_figure(timeline).axes[-1].get_xlabel()


def wait_for(url, process, seconds=180):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the app ended with status {process.returncode}: {process.stderr.read()}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"the app did not answer at {url} within {seconds} s")


@pytest.mark.slow
def test_browser_upload_classes_result(model, tmp_path):
    if not os.path.isfile(CHROMIUM):
        pytest.skip(f"{CHROMIUM_MISSING} ({CHROMIUM} not found)")
    from playwright.sync_api import sync_playwright

    expected = CLASSES[model["predictor"].predict(model["video"]).top(1)[0][0]]
    port = free_port()
    command = [sys.executable, "tools/app.py", "--config", model["config"], "--weights", model["weights"],
               "--classes", ",".join(CLASSES), "--port", str(port), "--cpu", *FP32,  # as the Predictor
               "--examples", str(Path(model["video"]).parent)]
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    # SIGINT as a terminal delivers it, even when the suite runs as a background job (which ignores SIGINT,
    # and a Python started with SIGINT ignored never raises KeyboardInterrupt).
    app = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    requested, failure = [], None
    try:
        wait_for(f"http://127.0.0.1:{port}/", app)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch_persistent_context(
                str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
            page = browser.new_page()
            page.on("request", lambda request: requested.append(request.url))
            # networkidle: the page has fetched its config and components, so the file input is the live one
            page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle")
            with page.expect_response(lambda r: "/gradio_api/upload?" in r.url, timeout=60_000) as upload:
                page.locator("#video input[type=file]").set_input_files(model["video"])
            assert upload.value.ok, upload.value.status
            # the file box shows the uploaded file's name (its stem and extension in separate elements; the
            # examples list below it names other files of the folder)
            page.locator("#video").get_by_text(Path(model["video"]).stem).first.wait_for(timeout=60_000)
            page.locator("#classes textarea").fill(", ".join(CLASSES[::-1]))
            page.locator("#run").click()
            message = page.locator("#message")
            message.get_by_text("Top class").wait_for(timeout=120_000)
            assert f"Top class {expected}" in message.inner_text()
            shown = [line.strip() for line in page.locator("#top").inner_text().splitlines() if line.strip()]
            assert shown[:2] == ["top classes (model probability)", expected], shown  # the label, then the top
            assert len(set(shown) & set(CLASSES)) == 5  # and all five with their probabilities
            page.screenshot(path=os.environ.get("BIKE_APP_SCREENSHOT", str(tmp_path / "page.png")), full_page=True)
            browser.close()
    except Exception as err:  # noqa: BLE001 (re-raised below with the app's log, which says what the app saw)
        failure = err
    finally:
        app.send_signal(signal.SIGINT)  # as Ctrl+C: the app stops and removes its upload folder
        try:
            _, log = app.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            app.kill()  # no app left behind
            raise
    if failure is not None:
        raise AssertionError(f"{failure}\napp log:\n{log}") from failure
    assert requested and all(url.startswith(f"http://127.0.0.1:{port}/") or url.startswith("data:")
                             for url in requested), sorted(set(requested))
    uploads = re.search(r"uploads are kept in (\S+) until the app stops", log)
    assert uploads and not os.path.exists(uploads[1]), log
