"""Class scores of arbitrary videos with arbitrary class names, and the picture of which frames mattered.

A `Predictor` reads a video file or a frame folder, samples and crops it exactly as `test.py`'s test
dataset does (same `ClipSampler`, `test_transform` and view scoring), so its scores equal `test.py`'s
for the same video and view settings. Beside that score (softmax of the unscaled cosine similarities,
close to uniform by design), it gives the model's calibrated probability, the softmax of the cosine
similarities times the learnt logit scale, as in training. `saliency` exposes the VCS temporal weights
the model itself uses.
"""
import contextlib
import copy
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from clip import tokenize
from datasets.annotations import AnnotationError, read_names_file
from datasets.attributes import DEFAULT_TOPK, attribute_sentence, read_attributes, video_phrases
from datasets.decoding import VIDEO_EXTENSIONS, frame_file_names, open_video, read_frame_folder
from datasets.sampling import ClipSampler
from datasets.transforms import normalize_on_device, test_transform
from modules import VideoHeader
from modules.video_clip import view_similarities
from workflows.attributes_branch import attribute_scores, load_attributes_branch, prompt_features
from workflows.fusion import DEFAULT_FUSION_WEIGHTS, fuse_scores
from workflows.inference import class_texts, load_video_model
from utils.precision import autocast_for
from utils.errors import UsageError

logger = logging.getLogger(__name__)


# Suffixes of files that hold names: a class list ending so names a file, never a class.
CLASS_FILE_SUFFIXES = (".txt", ".csv", ".tsv", ".json", ".jsonl", ".yaml", ".yml", ".lst", ".list", ".names",
                       ".labels", ".text", ".dat")


def looks_like_a_path(spec):
    """Whether a class list without commas means a file: it holds a path separator or ends with a file suffix
    (CLASS_FILE_SUFFIXES)."""
    text = str(spec).strip()
    if "," in text:
        return False
    separators = [os.sep] + ([os.altsep] if os.altsep else [])
    return any(separator in text for separator in separators) or Path(text).suffix.lower() in CLASS_FILE_SUFFIXES


def parse_class_names(spec):
    """Class names from a labels CSV (`id,name`), a text file (one name a line) or "a,b,c": the one reading
    of every program's --classes. Something that looks like a file (`looks_like_a_path`) but is none, or a
    file that is not text, is an error naming it; a single class is allowed with a warning."""
    path = Path(spec)
    try:
        is_file, exists = path.is_file(), path.exists()
    except OSError:  # e.g. longer than a file name can be: a long list of names
        is_file = exists = False
    if is_file:
        names = read_names_file(path)
        where = f"class file {path}"
    elif exists:
        raise AnnotationError(f"class file {path} is a folder, not a file")
    elif looks_like_a_path(spec):
        raise AnnotationError(f"class file {spec} does not exist (to name classes instead, separate them with "
                              "commas: \"a,b,c\")")
    else:
        names = [name.strip() for name in str(spec).split(",") if name.strip()]
        where = f"class list {spec!r}"
    if not names:
        raise UsageError(f"{where} names no classes")
    if len(names) == 1:
        logger.warning("%s names a single class (%r): its score is always 1; give two or more to compare",
                       where, names[0])
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
            raise UsageError(f"folder {item} holds neither frames named like {image_tmpl!r} nor videos "
                             f"({', '.join(VIDEO_EXTENSIONS)})")
        found.extend(videos)
    return found


@dataclass
class Prediction:
    path: str
    scores: torch.Tensor  # [C] test.py's score: per view softmax of the cosine similarities, mean over views
    frames: torch.Tensor = field(repr=False)  # uint8 [T, 3, S, S]: the first view, as the model saw it
    probabilities: torch.Tensor  # [C] per view softmax of logit_scale x cosine similarities, mean over views
    logit_scale: float  # exp of the model's learnt logit scale (100 for OpenAI's CLIP)

    def top(self, k):
        """[(class index, probability)] of the `k` best classes."""
        values, indices = self.scores.topk(min(k, len(self.scores)))
        return list(zip(indices.tolist(), values.tolist()))


class Predictor:
    """A model, its class texts and the test-time view settings of `config.data`."""

    def __init__(self, config, class_names, weights=None, device="cpu", precision="fp32",
                 test_clips=None, test_crops=None, dense=None):
        data = config.data
        self.config, self.class_names = config, list(class_names)
        if not self.class_names:
            raise ValueError("the class list is empty")
        self.device = torch.device(device)
        self.autocast = autocast_for(precision, self.device)
        self.sampler = ClipSampler(data.num_segments, data.seg_length, dense=data.dense if dense is None else dense,
                                   random_shift=False, num_clips=test_clips or data.test_clips)
        self.transform = test_transform(data.input_size, test_crops or data.test_crops)
        self.encoder, self.header = load_video_model(config, weights, self.device, precision)
        self.eot, self.tokens = class_texts(self.encoder, self.class_names, self.device, self.autocast)

    def with_options(self, class_names=None, test_clips=None, test_crops=None):
        """This predictor with other class names or views, sharing its loaded model (the app changes them per
        request); class texts are computed again only for new names."""
        other = copy.copy(self)
        data = self.config.data
        if class_names is not None and list(class_names) != self.class_names:
            if not class_names:
                raise ValueError("the class list is empty")
            other.class_names = list(class_names)
            other.eot, other.tokens = class_texts(self.encoder, other.class_names, self.device, self.autocast)
        if test_clips:
            other.sampler = replace(self.sampler, num_clips=test_clips)
        if test_crops:
            other.transform = test_transform(data.input_size, test_crops)
        return other

    def read_clips(self, path):
        """uint8 [clips, T, 3, H, W] of the sampled frames of a video file or frame folder."""
        data = self.config.data
        if os.path.isdir(path):
            num_frames = sum(1 for entry in os.scandir(path) if entry.is_file())
            indices = self.sampler(num_frames, "test")
            frames = read_frame_folder(path, data.image_tmpl, indices.reshape(-1) + data.index_bias, data.decode_device)
        else:
            video = open_video(path, data.video_backend, data.decode_device)
            indices = self.sampler(len(video), "test")
            frames = video.get_frames(indices.reshape(-1))
        return frames.reshape(indices.shape + frames.shape[1:])

    def views(self, path):
        """uint8 [clips * crops, T, 3, S, S], clip-major, as the test dataset builds them."""
        return torch.cat([self.transform(clip) for clip in self.read_clips(path)])

    @property
    def logit_scale(self) -> float:
        return self.encoder.clip.logit_scale.exp().float().item()

    @torch.no_grad()
    def score_views(self, views):
        """(test.py's scores, calibrated probabilities), each [B, C], of uint8 views [B, V, T, 3, S, S]."""
        with self.autocast():
            similarity = view_similarities(self.encoder, self.header, normalize_on_device(views, self.device),
                                           self.eot, self.tokens).cpu()
        return similarity.softmax(-1).mean(1), (self.logit_scale * similarity).softmax(-1).mean(1)

    def predict(self, path):
        views = self.views(path)
        scores, probabilities = self.score_views(views[None])
        return Prediction(str(path), scores[0], views[0], probabilities[0], self.logit_scale)

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


def _probability_panel(axis, values, title, chance):
    """Horizontal bars of `values` (best first, from the top) with their numbers, on an axis scaled to them."""
    bars = axis.barh(range(len(values))[::-1], values, color="tab:gray")
    axis.bar_label(bars, fmt="%.3f", padding=3, fontsize=7)
    axis.axvline(chance, color="tab:red", lw=0.8, ls="--")
    axis.set_xlim(0, 1.3 * max(max(values), chance))
    axis.set_xlabel(f"dashed: uniform 1/{round(1 / chance)}", fontsize=7)
    axis.set_title(title, fontsize=8)
    axis.tick_params(axis="x", labelsize=7)


def saliency_figure(prediction, saliency, class_names, classes, top=5):
    """A figure of the frames as a strip, the saliency of `classes` as bars per frame, and for the `top`
    classes test.py's score beside the model's calibrated probability, each with its numbers."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot

    frames = prediction.frames.permute(0, 2, 3, 1).numpy()
    num_frames = len(frames)
    figure = pyplot.figure(figsize=(max(8.0, 1.2 * num_frames), 6.5), dpi=100)
    grid = figure.add_gridspec(3, num_frames, height_ratios=(1.0, 1.4, 1.3), hspace=0.6, left=0.2, right=0.97)
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
    best = [index for index, _ in prediction.top(top)]
    chance = 1 / len(prediction.scores)
    panels = grid[2, :].subgridspec(1, 2, wspace=0.08)
    left = figure.add_subplot(panels[0])
    right = figure.add_subplot(panels[1], sharey=left)
    _probability_panel(left, prediction.scores[best].tolist(),
                       "test.py score: softmax of cosine similarity\n(no logit scale, as the original)", chance)
    _probability_panel(right, prediction.probabilities[best].tolist(),
                       f"model probability: softmax of {prediction.logit_scale:.1f} x cosine\n"
                       "(the learnt logit scale, as in training)", chance)
    left.set_yticks(range(len(best))[::-1], [class_names[index] for index in best], fontsize=8)
    right.tick_params(axis="y", labelleft=False)
    figure.suptitle(os.path.basename(prediction.path), fontsize=10)
    return figure


class AttributesFusion:
    """The attributes branch of a `train_attributes.py` checkpoint, for videos whose phrases an attributes
    JSON holds (keyed by the input path as given), fused with a Predictor's scores as test.py fuses them."""

    def __init__(self, weights, attributes_file, class_names, device="cpu", autocast=None, topk=DEFAULT_TOPK,
                 fusion_weights=DEFAULT_FUSION_WEIGHTS):
        self.device, self.autocast = torch.device(device), autocast or contextlib.nullcontext
        self.encoder, head = load_attributes_branch(weights, self.device)
        self.head = head.to(self.device)
        self.attributes, self.source = read_attributes(attributes_file), attributes_file
        self.topk, self.fusion_weights = topk, tuple(fusion_weights)
        self.classes = prompt_features(self.encoder, class_names, self.device, self.autocast)

    @torch.no_grad()
    def scores(self, path) -> torch.Tensor:
        """The attributes branch's class probabilities [C] of input `path`."""
        sentence = attribute_sentence(video_phrases(self.attributes, str(path), self.source)[: self.topk])
        with self.autocast():
            feature = self.encoder.clip.encode_text(tokenize([sentence]).to(self.device)).float()
        return attribute_scores(self.head, F.normalize(feature, dim=-1), self.classes)[0].cpu()

    def fuse(self, prediction: Prediction) -> Prediction:
        """The prediction with its scores fused with the attributes branch's."""
        return replace(prediction, scores=fuse_scores(prediction.scores, self.scores(prediction.path),
                                                      self.fusion_weights))


def plot_saliency(prediction, saliency, class_names, classes, path, top=5):
    """`saliency_figure` as a PNG."""
    from matplotlib import pyplot

    figure = saliency_figure(prediction, saliency, class_names, classes, top)
    figure.savefig(path)
    pyplot.close(figure)
