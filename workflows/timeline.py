"""Recognition along a long or untrimmed video: windows sliding along it, each scored like a test clip, and
the segments where the best class stays the same.

`predict_timeline(predictor, path, window, stride)` is the one entry point (tools/predict.py --timeline and
the app use it). A window of `window` seconds starts every `stride` seconds; its frames are sampled by the
predictor's `ClipSampler` over the window's frames and cropped by its test transform, exactly as test.py
treats a clip of that length. The video is decoded once, front to back (`StreamingVideo`); each sampled
frame is transformed once and kept only until the last window that uses it is scored, so memory depends on
the window length, not on the video's.

Windows are ranked by the model's calibrated probability (softmax of the learnt logit scale times the
cosine similarities, averaged over views); test.py's score (no logit scale) is kept beside it. Merged
segments: consecutive windows whose best class is the same and whose probability reaches `threshold`;
each window stands for the time closer to its centre than to its neighbours' centres, so a segment's
boundaries lie halfway between the centres of the windows where the class changes.
"""
import csv
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import torch
from torchvision.transforms import v2
from tqdm import tqdm

from datasets.streaming import StreamingVideo
from workflows.fusion import fuse_scores

logger = logging.getLogger(__name__)

STRIP_HEIGHT = 72  # pixels of the frames shown above the plot


@dataclass
class Window:
    start: float  # seconds
    end: float
    scores: torch.Tensor  # [C] test.py's score: per view softmax of the cosine similarities, mean over views
    probabilities: torch.Tensor  # [C] per view softmax of logit_scale x cosine similarities, mean over views

    @property
    def centre(self) -> float:
        return (self.start + self.end) / 2

    def top(self, k):
        """[(class index, probability)] of the `k` most probable classes."""
        values, indices = self.probabilities.topk(min(k, len(self.probabilities)))
        return list(zip(indices.tolist(), values.tolist()))


@dataclass
class Segment:
    label: int  # class index
    start: float  # seconds
    end: float
    probability: float  # mean over its windows of the class's probability
    windows: int


@dataclass
class Timeline:
    path: str
    class_names: List[str]
    fps: float
    duration: float  # seconds
    window: float  # seconds per window, as requested
    stride: float
    windows: List[Window]
    segments: List[Segment]
    strip: list = field(default_factory=list, repr=False)  # (seconds, uint8 [H, W, 3]) frames for the picture


def window_starts(num_frames: int, length: int, step: int) -> List[int]:
    """First frames of windows of `length` frames every `step` frames; a last window ends at the last frame
    when the regular ones stop short of it. A video shorter than a window is one window."""
    if num_frames <= length:
        return [0]
    starts = list(range(0, num_frames - length + 1, step))
    if starts[-1] + length < num_frames:
        starts.append(num_frames - length)
    return starts


def _window_indices(num_frames, fps, window, stride, sampler):
    """(first frame, frame count, sampled frame indices [clips, T] in the video) of every window."""
    length = max(1, round(window * fps))
    step = max(1, round(stride * fps))
    length = min(length, num_frames)
    return [(first, length, first + sampler(length, "test")) for first in window_starts(num_frames, length, step)]


def _thumbnail(frame):
    return v2.functional.resize(frame, STRIP_HEIGHT, antialias=True).permute(1, 2, 0).contiguous()


def stream_windows(video: StreamingVideo, windows, transform, strip=None):
    """Yields (window number, views uint8 [clips * crops, T, 3, S, S]) for `windows` as `_window_indices`
    gives them, in order, from one decode of `video`; fills the keys of the dict `strip` (frame indices)
    with thumbnails of those frames.

    A frame is transformed once and dropped after the last window that samples it.
    """
    last_use = {}
    for number, (_, _, indices) in enumerate(windows):
        for index in indices.reshape(-1).tolist():
            last_use[index] = number
    ready_at = [int(indices.max()) for _, _, indices in windows]
    kept, strip = {}, {} if strip is None else strip
    wanted = set(last_use) | set(strip)
    number = 0
    for index, frame in video.frames(wanted):
        if index in strip:
            strip[index] = _thumbnail(frame)
        if index in last_use:
            kept[index] = transform(frame[None])  # [crops, 1, 3, S, S]
        while number < len(windows) and ready_at[number] <= index:
            clips = windows[number][2]
            views = torch.cat([torch.cat([kept[i] for i in clip.tolist()], dim=1) for clip in clips])
            yield number, views
            for i in set(clips.reshape(-1).tolist()):
                if last_use[i] == number:
                    del kept[i]
            number += 1


def merge_segments(windows: List[Window], duration: float, threshold: float = 0.0) -> List[Segment]:
    """Runs of consecutive windows with the same best class whose probability is at least `threshold`.

    Window i stands for [midpoint with window i-1, midpoint with window i+1] (the first from 0, the last
    to `duration`); a window below the threshold belongs to no segment.
    """
    bounds = [0.0] + [(a.centre + b.centre) / 2 for a, b in zip(windows, windows[1:])] + [duration]
    segments, run = [], []

    def close():
        if run:
            label = run[0][1]
            mean = sum(probability for _, _, probability in run) / len(run)
            segments.append(Segment(label, bounds[run[0][0]], bounds[run[-1][0] + 1], mean, len(run)))
            run.clear()

    for number, window in enumerate(windows):
        label, probability = window.top(1)[0]
        if probability < threshold:
            close()
            continue
        if run and run[-1][1] != label:
            close()
        run.append((number, label, probability))
    close()
    return segments


@torch.no_grad()
def predict_timeline(predictor, path, window: float, stride: Optional[float] = None, *, fusion=None,
                     threshold: float = 0.0, batch_size: int = 8, strip: int = 10, progress: bool = True) -> Timeline:
    """The timeline of a video file: every window's scores and the merged segments (see the module doc).

    predictor: a `workflows.prediction.Predictor` (model, class names, views). stride: seconds between window
    starts (default: half a window). fusion: an `AttributesFusion` whose video-level attribute scores are fused
    into every window's scores and probabilities. strip: how many frames, evenly spaced, the picture shows.
    """
    if window <= 0 or (stride is not None and stride <= 0):
        raise ValueError("the window and the stride must be positive seconds")
    stride = window / 2 if stride is None else stride
    video = StreamingVideo(path)
    logger.info("%s: the timeline decodes it once, front to back, with PyAV", path)
    if video.duration < window:
        logger.warning("%s lasts %.2f s, shorter than a window of %g s: its timeline is one window of the whole "
                       "video", path, video.duration, window)
    plan = _window_indices(len(video), video.fps, window, stride, predictor.sampler)
    thumbnails = dict.fromkeys(round(k * (len(video) - 1) / max(strip - 1, 1)) for k in range(strip))
    attributes = fusion.scores(path) if fusion else None
    windows, pending = [], []
    bar = tqdm(total=len(plan), desc="timeline", unit="window", disable=not progress)

    def score_pending():
        scores, probabilities = predictor.score_views(torch.stack([views for _, views in pending]))
        for (number, _), score, probability in zip(pending, scores, probabilities):
            if attributes is not None:
                score = fuse_scores(score, attributes, fusion.fusion_weights)
                probability = fuse_scores(probability, attributes, fusion.fusion_weights)
            first, length, _ = plan[number]
            windows.append(Window(first / video.fps, (first + length) / video.fps, score, probability))
        bar.update(len(pending))
        pending.clear()

    for number, views in stream_windows(video, plan, predictor.transform, thumbnails):
        pending.append((number, views))
        if len(pending) == batch_size:
            score_pending()
    if pending:
        score_pending()
    bar.close()
    segments = merge_segments(windows, video.duration, threshold)
    pictures = [(index / video.fps, thumbnails[index]) for index in sorted(thumbnails)]
    return Timeline(str(path), list(predictor.class_names), video.fps, video.duration, window, stride, windows,
                    segments, pictures)


def timeline_rows(timeline: Timeline, topk: int = 5):
    """Windows as flat rows: start, end, then (class, probability, score) of the `topk` best."""
    rows = []
    for window in timeline.windows:
        row = {"start": round(window.start, 3), "end": round(window.end, 3)}
        for rank, (label, probability) in enumerate(window.top(topk), start=1):
            row[f"top{rank}"] = timeline.class_names[label]
            row[f"probability{rank}"] = round(probability, 6)
            row[f"score{rank}"] = round(float(window.scores[label]), 6)
        rows.append(row)
    return rows


def segment_rows(timeline: Timeline):
    return [{"start": round(s.start, 3), "end": round(s.end, 3), "class": timeline.class_names[s.label],
             "probability": round(s.probability, 6), "windows": s.windows} for s in timeline.segments]


def write_timeline(timeline: Timeline, path, topk: int = 5):
    """JSON (settings, windows and segments) or CSV (windows; the segments beside it, `<name>_segments.csv`),
    by the ending of `path`. Returns the files written."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps({"video": timeline.path, "fps": timeline.fps, "duration": timeline.duration,
                                    "window": timeline.window, "stride": timeline.stride,
                                    "windows": timeline_rows(timeline, topk), "segments": segment_rows(timeline)},
                                   indent=1))
        return [path]
    segments = path.with_name(f"{path.stem}_segments{path.suffix}")
    for target, rows in ((path, timeline_rows(timeline, topk)), (segments, segment_rows(timeline))):
        with target.open("w", newline="") as handle:
            columns = list(rows[0]) if rows else ["start", "end"]
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    return [path, segments]


def shown_classes(timeline: Timeline, top: int) -> List[int]:
    """The classes drawn: those of the longest segments first, then the highest mean probabilities."""
    by_time = {}
    for segment in timeline.segments:
        by_time[segment.label] = by_time.get(segment.label, 0.0) + segment.end - segment.start
    chosen = sorted(by_time, key=by_time.get, reverse=True)[:top]
    mean = torch.stack([w.probabilities for w in timeline.windows]).mean(0)
    for label in mean.argsort(descending=True).tolist():
        if len(chosen) >= top:
            break
        if label not in chosen:
            chosen.append(label)
    return chosen


def timeline_figure(timeline: Timeline, top: int = 4):
    """Frames along the video above the probabilities of the `top` shown classes, and of every class that holds
    a segment, over time (window centres), the merged segments as bands in their class's colour, with seconds
    on the axis and a legend of class names."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot

    classes = shown_classes(timeline, top)
    classes += list(dict.fromkeys(s.label for s in timeline.segments if s.label not in classes))  # each band's class
    palette = pyplot.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    colours = {label: palette(rank % palette.N) for rank, label in enumerate(classes)}
    count = max(len(timeline.strip), 1)
    figure = pyplot.figure(figsize=(max(9.0, 1.1 * count), 5.2), dpi=110)
    grid = figure.add_gridspec(2, count, height_ratios=(1.0, 2.6), hspace=0.35, left=0.07, right=0.98)
    for column, (seconds, frame) in enumerate(timeline.strip):
        axis = figure.add_subplot(grid[0, column])
        axis.imshow(frame.numpy())
        axis.set_axis_off()
        axis.set_title(f"{seconds:.1f} s", fontsize=8)
    plot = figure.add_subplot(grid[1, :])
    centres = [w.centre for w in timeline.windows]
    for label in classes:
        plot.plot(centres, [float(w.probabilities[label]) for w in timeline.windows], color=colours[label],
                  lw=1.6, marker=".", ms=3, label=timeline.class_names[label])
    for segment in timeline.segments:
        plot.axvspan(segment.start, segment.end, ymin=0.0, ymax=0.06, color=colours[segment.label], lw=0)
    plot.set_xlim(0, timeline.duration)
    plot.set_ylim(0, 1.02)
    plot.set_xlabel("seconds (points: window centres; bottom band: merged segments)")
    plot.set_ylabel("model probability")
    plot.grid(alpha=0.3)
    plot.legend(fontsize=8, loc="upper right", ncol=min(len(classes), 4))
    figure.suptitle(f"{os.path.basename(timeline.path)}: windows of {timeline.window:g} s every "
                    f"{timeline.stride:g} s", fontsize=10)
    return figure


def plot_timeline(timeline: Timeline, path, top: int = 4):
    """`timeline_figure` as a PNG."""
    from matplotlib import pyplot

    figure = timeline_figure(timeline, top)
    figure.savefig(path)
    pyplot.close(figure)
