"""Class scores of arbitrary videos with arbitrary class names, and the picture of which frames mattered.

A `Predictor` reads a video file or a frame folder, samples and crops it exactly as `test.py`'s test
dataset does (same `ClipSampler`, `test_transform` and `view_scores`), so its scores equal `test.py`'s
for the same video and view settings. `saliency` exposes the VCS temporal weights the model itself uses.
"""
import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from datasets.annotations import load_class_names
from datasets.decoding import VIDEO_EXTENSIONS, frame_file_names, open_video, read_frame_folder
from datasets.sampling import ClipSampler
from datasets.transforms import normalize_on_device, test_transform
from modules import VideoHeader
from modules.video_clip import view_scores
from utils.inference import class_texts, load_video_model

logger = logging.getLogger(__name__)


def parse_class_names(spec):
    """Class names from a labels CSV (`id,name`), a text file (one name a line) or "a,b,c"."""
    path = Path(spec)
    if path.is_file():
        if path.suffix.lower() == ".csv":
            names = load_class_names(str(path))
        else:
            names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        where = f"class file {path}"
    else:
        names = [name.strip() for name in str(spec).split(",") if name.strip()]
        where = f"class list {spec!r}"
    if not names:
        raise ValueError(f"{where} names no classes")
    return names


def is_frame_folder(path, image_tmpl, index_bias):
    """A folder whose first frame (number `index_bias`, named by `image_tmpl`) exists."""
    first = frame_file_names(path, image_tmpl, [index_bias])[0]
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, first))


def find_inputs(inputs, image_tmpl, index_bias):
    """Video files and frame folders named by `inputs`; a folder of videos gives its videos (sorted)."""
    found = []
    for item in inputs:
        if not os.path.exists(item):
            raise FileNotFoundError(f"input {item} does not exist")
        if os.path.isfile(item) or is_frame_folder(item, image_tmpl, index_bias):
            found.append(str(item))
            continue
        videos = sorted(str(p) for p in Path(item).iterdir()
                        if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
        if not videos:
            raise ValueError(f"folder {item} holds neither frames named like {image_tmpl!r} nor videos "
                             f"({', '.join(VIDEO_EXTENSIONS)})")
        found.extend(videos)
    return found


@dataclass
class Prediction:
    path: str
    scores: torch.Tensor  # [C] class probabilities averaged over views
    frames: torch.Tensor = field(repr=False)  # uint8 [T, 3, S, S]: the first view, as the model saw it

    def top(self, k):
        """[(class index, probability)] of the `k` best classes."""
        values, indices = self.scores.topk(min(k, len(self.scores)))
        return list(zip(indices.tolist(), values.tolist()))


class Predictor:
    """A model, its class texts and the test-time view settings of `config.data`."""

    def __init__(self, config, class_names, weights=None, device="cpu", autocast=None,
                 test_clips=None, test_crops=None, dense=None):
        data = config.data
        self.config, self.class_names = config, list(class_names)
        if not self.class_names:
            raise ValueError("the class list is empty")
        self.device = torch.device(device)
        self.autocast = autocast or contextlib.nullcontext
        self.sampler = ClipSampler(data.num_segments, data.seg_length, dense=data.dense if dense is None else dense,
                                   random_shift=False, num_clips=test_clips or data.test_clips)
        self.transform = test_transform(data.input_size, test_crops or data.test_crops)
        self.encoder, self.header = load_video_model(config, weights, self.device)
        self.eot, self.tokens = class_texts(self.encoder, self.class_names, self.device, self.autocast)

    def read_clips(self, path):
        """uint8 [clips, T, 3, H, W] of the sampled frames of a video file or frame folder."""
        data = self.config.data
        if os.path.isdir(path):
            num_frames = sum(1 for entry in os.scandir(path) if entry.is_file())
            indices = self.sampler(num_frames, "test")
            frames = read_frame_folder(path, data.image_tmpl, indices.reshape(-1) + data.index_bias)
        else:
            video = open_video(path)
            indices = self.sampler(len(video), "test")
            frames = video.get_frames(indices.reshape(-1))
        return frames.reshape(indices.shape + frames.shape[1:])

    def views(self, path):
        """uint8 [clips * crops, T, 3, S, S], clip-major, as the test dataset builds them."""
        return torch.cat([self.transform(clip) for clip in self.read_clips(path)])

    @torch.no_grad()
    def predict(self, path):
        views = self.views(path)
        with self.autocast():
            scores = view_scores(self.encoder, self.header, normalize_on_device(views[None], self.device),
                                 self.eot, self.tokens)
        return Prediction(str(path), scores.float().cpu()[0], views[0])

    @torch.no_grad()
    def saliency(self, frames, classes):
        """VCS temporal weights [len(classes), T] of one view uint8 [T, 3, S, S]: the header's
        aggregated frame embeddings weighted by `VideoHeader.concept_weights`, as in its forward."""
        if self.header.interaction != "VCS":
            logger.warning("interaction is %s: the model does not use the VCS weights shown",
                           self.header.interaction)
        with self.autocast():
            embeddings = self.encoder.encode_video(normalize_on_device(frames[None], self.device))
            aggregated = self.header.aggregate(embeddings)
            weights = VideoHeader.concept_weights(aggregated, self.tokens[list(classes)])
        return weights[:, 0].float().cpu()


def plot_saliency(prediction, saliency, class_names, classes, path, top=5):
    """PNG: the frames as a strip, the saliency of `classes` as bars per frame, the top class probabilities."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot

    frames = prediction.frames.permute(0, 2, 3, 1).numpy()
    num_frames = len(frames)
    figure = pyplot.figure(figsize=(max(6.0, 1.2 * num_frames), 6.0), dpi=100)
    grid = figure.add_gridspec(3, num_frames, height_ratios=(1.0, 1.4, 1.2), hspace=0.45, left=0.25, right=0.97)
    for index, frame in enumerate(frames):
        axis = figure.add_subplot(grid[0, index])
        axis.imshow(frame)
        axis.set_axis_off()
        axis.set_title(f"frame {index}", fontsize=8)
    bars = figure.add_subplot(grid[1, :])
    width = 0.8 / len(classes)
    for rank, (class_index, weights) in enumerate(zip(classes, saliency.tolist())):
        positions = [t + (rank - (len(classes) - 1) / 2) * width for t in range(num_frames)]
        bars.bar(positions, weights, width, label=class_names[class_index])
    bars.set_xticks(range(num_frames))
    bars.set_xlim(-0.5, num_frames - 0.5)
    bars.set_ylabel("VCS weight")
    bars.set_title("temporal saliency (softmax over frames)", fontsize=9)
    bars.legend(fontsize=7, loc="upper right")
    probabilities = figure.add_subplot(grid[2, :])
    best = prediction.top(top)
    probabilities.barh([class_names[i] for i, _ in best][::-1], [p for _, p in best][::-1], color="tab:gray")
    probabilities.set_xlim(0, 1)
    probabilities.set_xlabel("probability")
    figure.suptitle(os.path.basename(prediction.path), fontsize=10)
    figure.savefig(path)
    pyplot.close(figure)
