"""The browser demo's page: a video and class names in, the top classes, the VCS saliency picture and, for a
long video, the timeline of workflows/timeline.py out.

Gradio is an optional extra (requirements-app.txt) and is imported only by `build_page`. Every answer
goes through `analyse`, which turns the user's mistakes (no video, a file too large, a file that is not
a video, no class names) into a message on the page instead of a traceback. Uploads live in Gradio's
cache folder, a folder of the app's own (`upload_folder`) that it removes when it stops, by Ctrl+C or by
SIGTERM; `keep_folder` keeps a copy of each.
"""
import contextlib
import logging
import os
import shutil
import signal
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from datasets.decoding import SampleReadError
from datasets.streaming import StreamingVideo
from datasets.transforms import TEST_CROPS
from workflows.prediction import saliency_figure
from workflows.timeline import predict_timeline, timeline_figure

logger = logging.getLogger(__name__)

SALIENCY_CLASSES = 3
TOP_CLASSES = 5
MAX_CLIPS = 10
TIMELINE_WINDOW = 1.0  # seconds
TIMELINE_MIN_WINDOWS = 3  # a video of at least this many windows also gets the timeline of workflows/timeline.py


@dataclass
class Answer:
    """What the page shows for one request: probabilities {class: p} of the top classes, the saliency
    figure, the timeline figure of a long video, and a message (Markdown); a failed request has only the message."""
    probabilities: dict = None
    figure: object = None
    message: str = ""
    timeline: object = None


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: the app stops as at Ctrl+C (Gradio's `launch` closes its server on a KeyboardInterrupt)."""


def _terminate(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM does not cut the clean-up short
    logger.info("SIGTERM: the app stops")
    raise Terminated()


@contextlib.contextmanager
def upload_folder():
    """A new folder of this process's own for Gradio's uploads and cache (GRADIO_TEMP_DIR, set while inside),
    removed with everything in it when the block ends: normally, at Ctrl+C, or at SIGTERM (what systemd,
    Docker and Kubernetes send), which inside the block stops the app as Ctrl+C does and then ends the block
    quietly. Nothing outside the folder is removed: apps side by side, or an app started again after one
    that was killed (SIGKILL leaves its folder), never touch each other's files."""
    folder = tempfile.mkdtemp(prefix=f"bike-app-{os.getpid()}-")
    previous_folder = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = folder
    in_main_thread = threading.current_thread() is threading.main_thread()  # signal handlers live there
    previous_handler = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        yield folder
    except Terminated:
        logger.info("stopped by SIGTERM")
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        shutil.rmtree(folder, ignore_errors=True)
        logger.info("removed %s and the uploads in it", folder)
        if previous_folder is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = previous_folder
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous_handler)


def class_list(text):
    """Class names typed as "a, b, c" (or one a line)."""
    return [name.strip() for line in str(text or "").splitlines() for name in line.split(",") if name.strip()]


def analyse(predictor, video, classes_text, test_clips, test_crops, max_bytes, keep_folder=None,
            window=TIMELINE_WINDOW) -> Answer:
    """The predictor's answer for `video` (a path) with the typed classes and views, or why there is none;
    with the timeline of `window`-second windows when the video lasts TIMELINE_MIN_WINDOWS windows or more."""
    if not video:
        return Answer(message="Upload a video or pick one of the examples first.")
    path = Path(video)
    if path.stat().st_size > max_bytes:
        return Answer(message=f"**{path.name}** is {path.stat().st_size / 2**20:.1f} MB; this app takes videos up "
                              f"to {max_bytes / 2**20:.0f} MB (tools/app.py --max_upload_mb).")
    names = class_list(classes_text)
    if len(names) < 2:
        return Answer(message="Type at least two class names, separated by commas.")
    if keep_folder:
        os.makedirs(keep_folder, exist_ok=True)
        shutil.copy(path, Path(keep_folder) / path.name)
    current = predictor.with_options(names, int(test_clips), int(test_crops))
    try:
        prediction = current.predict(str(path))
        duration = StreamingVideo(str(path)).duration if path.is_file() else 0.0
        timeline = predict_timeline(current, str(path), float(window), progress=False) \
            if window and duration >= TIMELINE_MIN_WINDOWS * float(window) else None
    except (SampleReadError, ValueError) as error:  # not a video, or too short for the sampling
        logger.info("cannot read %s: %s", path, error)
        reason = str(error).replace(str(path), path.name)  # the server's upload folder stays out of the answer
        return Answer(message=f"**{path.name}** could not be read as a video: {reason}")
    best = prediction.top(TOP_CLASSES)
    classes = [index for index, _ in best[:SALIENCY_CLASSES]]
    figure = saliency_figure(prediction, current.saliency(prediction.frames, classes), names, classes)
    top_name, top_score = names[best[0][0]], best[0][1]
    message = (f"Top class **{top_name}**: test.py score {top_score:.3f} (uniform would be {1 / len(names):.3f}); "
               f"the bars above show the model's calibrated probability (softmax of {prediction.logit_scale:.1f} "
               f"x cosine similarity). {int(test_clips)} clip(s) x {int(test_crops)} crop(s).")
    if timeline:
        message += (f" Timeline: {len(timeline.windows)} windows of {timeline.window:g} s, "
                    f"{len(timeline.segments)} segment(s).")
    else:
        message += f" No timeline: the video is shorter than {TIMELINE_MIN_WINDOWS} windows of {float(window):g} s."
    probabilities = {names[index]: float(prediction.probabilities[index]) for index, _ in best}
    return Answer(probabilities, figure, message, timeline_figure(timeline) if timeline else None)


def build_page(predictor, examples=(), max_bytes=50 * 2**20, keep_folder=None, title="BIKE video recognition"):
    """The Gradio Blocks of the demo for `predictor` (a `workflows.prediction.Predictor`)."""
    import gradio as gr

    data = predictor.config.data

    def answer(video, classes_text, test_clips, test_crops, window):
        result = analyse(predictor, video, classes_text, test_clips, test_crops, max_bytes, keep_folder, window)
        return result.probabilities, result.figure, result.message, result.timeline

    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(600, 3600)) as page:
        gr.Markdown(f"# {title}\nUpload a video (or pick an example), type the class names, choose the views.")
        with gr.Row():
            with gr.Column():
                video = gr.File(label="video", type="filepath", elem_id="video")
                if examples:
                    gr.Examples([[str(path)] for path in examples], inputs=[video], label="demo videos")
                classes = gr.Textbox(label="class names (comma-separated)", value=", ".join(predictor.class_names),
                                     lines=2, elem_id="classes")
                with gr.Row():
                    clips = gr.Slider(1, MAX_CLIPS, value=data.test_clips, step=1, label="temporal clips")
                    crops = gr.Radio(list(TEST_CROPS), value=data.test_crops, label="spatial crops")
                window = gr.Number(TIMELINE_WINDOW, label=f"timeline window, seconds (videos of {TIMELINE_MIN_WINDOWS} "
                                   "windows or more)", minimum=0.1)
                run = gr.Button("Recognise", variant="primary", elem_id="run")
            with gr.Column():
                top = gr.Label(num_top_classes=TOP_CLASSES, label="top classes (model probability)", elem_id="top")
                message = gr.Markdown(elem_id="message")
        saliency = gr.Plot(label="VCS temporal saliency of the top classes", elem_id="saliency")
        timeline = gr.Plot(label="timeline: windows along the video", elem_id="timeline")
        run.click(answer, [video, classes, clips, crops, window], [top, saliency, message, timeline])
    return page
