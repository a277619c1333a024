"""A small synthetic action dataset whose classes can only be told apart by temporal order.

Eight classes form four pairs (moving left/right, growing/shrinking, rotating clockwise/anticlockwise,
appearing/vanishing). Clip ``j`` of the second class of a pair is clip ``j`` of the first class played
backwards, so both classes contain exactly the same frames and a model has to use their order.

The dataset is the demo's default: it is generated on first use (`ensure_demo_dataset`) as JPEG frame
folders, H.264 MP4 files, train/val lists in the BIKE formats and a labels CSV. Everything is derived
from a seed, so the same arguments give byte-identical JPEGs and lists.
"""
import json
import logging
import math
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image

from datasets.annotations import write_labels_csv, write_list

logger = logging.getLogger(__name__)

DEFAULT_ROOT = Path(".cache/demo_data")  # where configs/demo/*.yaml look for it
IMAGE_TMPL = "img_{:05d}.jpg"
HEIGHT, WIDTH = 128, 176  # short side >= 112; both even (yuv420p) and multiples of 16 (H.264 macroblocks)
MIN_FRAMES, MAX_FRAMES = 16, 32
FPS = 12
JPEG_QUALITY = 90
MARKER = "COMPLETE.json"
FORMAT_VERSION = 1

# (motion rendered forwards, natural phrase of the forward class, phrase of the reversed class)
MOTION_PAIRS = (
    ("move_left", "moving left", "moving right"),
    ("grow", "growing", "shrinking"),
    ("rotate_clockwise", "rotating clockwise", "rotating anticlockwise"),
    ("appear", "appearing", "vanishing"),
)
CLASS_NAMES = tuple(name for _, forward, backward in MOTION_PAIRS for name in (forward, backward))


@dataclass(frozen=True)
class ObjectState:
    """Where the object is, how big, how it is turned (radians, clockwise on screen) and how opaque."""

    x: float
    y: float
    radius: float
    angle: float
    opacity: float


@dataclass(frozen=True)
class ClipParams:
    """Everything random about one clip; the object's state is interpolated linearly from start to end."""

    num_frames: int
    sides: int
    aspect: float
    color: tuple
    background_seed: int
    start: ObjectState
    end: ObjectState


@dataclass(frozen=True)
class DemoDataset:
    """Paths of a generated dataset; list entries are relative to `frames_root` / `videos_root`."""

    root: Path
    frames_root: Path
    videos_root: Path
    train_frames: Path
    val_frames: Path
    train_videos: Path
    val_videos: Path
    labels: Path

    @classmethod
    def at(cls, root):
        root = Path(root)
        return cls(root, root / "frames", root / "videos", root / "train_frames.txt", root / "val_frames.txt",
                   root / "train_videos.txt", root / "val_videos.txt", root / "labels.csv")


def class_slug(name):
    """Folder-friendly class name: 'moving left' -> 'moving_left'."""
    return name.replace(" ", "_")


def _vivid_colour(rng):
    """A saturated colour (some channels high, some low) that stands out from the greyish background."""
    high = _BRIGHT_CHANNELS[rng.integers(len(_BRIGHT_CHANNELS))]
    return tuple(int(175 * bright + value) for bright, value in zip(high, rng.integers(0, 81, size=3)))


_BRIGHT_CHANNELS = ((1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 0, 1), (0, 1, 1))


def sample_clip_params(rng, motion, height=HEIGHT, width=WIDTH):
    """Draw a random object and background and the start/end states of `motion` (its forward direction)."""
    radius = rng.uniform(0.12, 0.2) * height
    x = rng.uniform(0.3, 0.7) * width
    y = rng.uniform(0.3, 0.7) * height
    angle = rng.uniform(0, 2 * math.pi)
    start = dict(x=x, y=y, radius=radius, angle=angle, opacity=1.0)
    end = dict(start)
    if motion == "move_left":
        start["x"] = rng.uniform(0.65, 0.85) * width
        end["x"] = start["x"] - rng.uniform(0.35, 0.5) * width
    elif motion == "grow":
        start["radius"] = rng.uniform(0.04, 0.08) * height
        end["radius"] = rng.uniform(0.25, 0.35) * height
    elif motion == "rotate_clockwise":
        end["angle"] = angle + rng.uniform(0.5, 1.0) * math.pi
    elif motion == "appear":
        start["opacity"] = 0.0
    else:
        raise ValueError(f"unknown motion {motion!r}; known: {[m for m, _, _ in MOTION_PAIRS]}")
    return ClipParams(
        num_frames=int(rng.integers(MIN_FRAMES, MAX_FRAMES + 1)),
        sides=int(rng.integers(3, 6)),
        aspect=float(rng.uniform(0.5, 0.8)),
        color=_vivid_colour(rng),
        background_seed=int(rng.integers(2**31)),
        start=ObjectState(**start),
        end=ObjectState(**end),
    )


def render_background(params, height=HEIGHT, width=WIDTH):
    """A static texture: smooth, mostly grey blobs plus fine grain, all seeded by the clip; float32 [H, W, 3]."""
    rng = np.random.default_rng(params.background_seed)
    brightness = rng.uniform(50, 200, size=(5, 7, 1))
    coarse = (0.75 * brightness + 0.25 * rng.uniform(50, 200, size=(5, 7, 3))).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.float32)
    grain = rng.normal(0, 6, size=(height, width, 1)).astype(np.float32)
    return smooth + grain


def _polygon_corners(state, sides, aspect):
    """Corners of the object around its centre: a regular polygon squashed by `aspect`, then turned."""
    corner_angles = 2 * math.pi * np.arange(sides) / sides
    shape = np.stack([np.cos(corner_angles), aspect * np.sin(corner_angles)], axis=1) * state.radius
    cos, sin = math.cos(state.angle), math.sin(state.angle)
    return shape @ np.array([[cos, sin], [-sin, cos]])  # turns clockwise on screen, where y points down


def _paint_object(frame, state, sides, aspect, color):
    """Blend the anti-aliased polygon into `frame` (float32 [H, W, 3]) in place.

    Coverage comes from the polygon's signed distance (the largest distance to an edge line), evaluated
    only in the box around the object.
    """
    corners = _polygon_corners(state, sides, aspect)
    edges = np.roll(corners, -1, axis=0) - corners
    normals = np.stack([edges[:, 1], -edges[:, 0]], axis=1)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    if np.mean(np.sum(normals * corners, axis=1)) < 0:  # make the normals point outwards
        normals = -normals
    offsets = np.sum(normals * corners, axis=1)
    height, width = frame.shape[:2]
    top, left = (max(0, int(math.floor(c - state.radius)) - 1) for c in (state.y, state.x))
    bottom, right = (min(size, int(math.ceil(c + state.radius)) + 2)
                     for c, size in ((state.y, height), (state.x, width)))
    if top >= bottom or left >= right:
        return
    dy = (np.arange(top, bottom, dtype=np.float32) + 0.5 - state.y)[:, None]
    dx = (np.arange(left, right, dtype=np.float32) + 0.5 - state.x)[None, :]
    distance = np.full((bottom - top, right - left), -np.inf, dtype=np.float32)
    for (nx, ny), offset in zip(normals, offsets):
        np.maximum(distance, dx * nx + dy * ny - offset, out=distance)
    alpha = (np.clip(0.5 - distance, 0.0, 1.0) * state.opacity)[..., None]
    region = frame[top:bottom, left:right]
    region += alpha * (color - region)


def state_at(params, t):
    """The object's state at time `t` in [0, 1] of the forward motion (linear from start to end)."""
    start, end = asdict(params.start), asdict(params.end)
    return ObjectState(**{key: start[key] + (end[key] - start[key]) * t for key in start})


def _frame_with_object(background, params, state):
    frame = background.copy()
    _paint_object(frame, state, params.sides, params.aspect, np.asarray(params.color, dtype=np.float32))
    return np.clip(np.rint(frame), 0, 255).astype(np.uint8)


def render_forward(params, height=HEIGHT, width=WIDTH):
    """Frames of the forward motion as uint8 [T, H, W, 3]."""
    background = render_background(params, height, width)
    frames = np.empty((params.num_frames, height, width, 3), dtype=np.uint8)
    for index in range(params.num_frames):
        frames[index] = _frame_with_object(background, params, state_at(params, index / (params.num_frames - 1)))
    return frames


def render_clip(class_index, params, height=HEIGHT, width=WIDTH):
    """Frames of class `class_index` (see CLASS_NAMES): the pair's forward motion, reversed for odd indices."""
    if not 0 <= class_index < len(CLASS_NAMES):
        raise ValueError(f"class index {class_index} out of range 0..{len(CLASS_NAMES) - 1}")
    frames = render_forward(params, height, width)
    return frames[::-1].copy() if class_index % 2 else frames


def clip_params_for(seed, pair_index, clip_index):
    """The parameters shared by clip `clip_index` of both classes of pair `pair_index`."""
    rng = np.random.default_rng([seed, pair_index, clip_index])
    return sample_clip_params(rng, MOTION_PAIRS[pair_index][0])


def write_jpeg_folder(folder, frames, image_tmpl=IMAGE_TMPL, quality=JPEG_QUALITY):
    """Frames as `image_tmpl` files numbered from 1."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames, start=1):
        Image.fromarray(frame).save(folder / image_tmpl.format(index), quality=quality)


def write_mp4(path, frames, fps=FPS, crf=18):
    """Frames as an H.264 (libx264, yuv420p) MP4; one encoder thread keeps the output reproducible."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "fast", "threads": "1"}
        for frame in frames:
            # one conversion thread too: PyAV 17+ converts in slices on every core, which gave other
            # chroma bytes now and then under load
            yuv = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p", threads=1)
            container.mux(stream.encode(yuv))
        container.mux(stream.encode())


def long_video_frames(classes, repeats=2, seed=0, height=HEIGHT, width=WIDTH):
    """An untrimmed stand-in: clip 0 of each class in `classes` (indices), played `repeats` times in a row,
    one class after another. Returns uint8 frames [N, H, W, 3] and each class's (index, first frame, end frame)."""
    parts, frames, start = [], [], 0
    for class_index in classes:
        clip = render_clip(class_index, clip_params_for(seed, class_index // 2, 0), height, width)
        frames += [clip] * repeats
        parts.append((class_index, start, start + repeats * len(clip)))
        start += repeats * len(clip)
    return np.concatenate(frames), parts


@dataclass(frozen=True)
class _ClipJob:
    class_index: int
    clip_index: int
    seed: int
    frames_folder: Path
    video_path: Path


def _generate_clip(job):
    params = clip_params_for(job.seed, job.class_index // 2, job.clip_index)
    frames = render_clip(job.class_index, params)
    write_jpeg_folder(job.frames_folder, frames)
    write_mp4(job.video_path, frames)
    return len(frames)


def _settings(num_per_class, seed, val_fraction):
    return {"format_version": FORMAT_VERSION, "num_per_class": num_per_class, "seed": seed,
            "val_fraction": val_fraction, "height": HEIGHT, "width": WIDTH, "image_tmpl": IMAGE_TMPL}


def generate_demo_dataset(root, num_per_class=48, seed=0, val_fraction=0.25, workers=None, progress=None):
    """(Re)generate the whole dataset under `root`; the completion marker is written last.

    The last `val_fraction` of each class's clips form the val split. `workers` threads (default: one
    per CPU) render and encode the clips. Earlier frames/ and videos/ are deleted. `progress`, when
    given, reports the finished clips: `progress(iterable, total, description)` yields the items
    (tools/make_demo_data.py passes `utils.logger.track`: a bar on a terminal, log lines otherwise).
    """
    if num_per_class < 2:
        raise ValueError(f"num_per_class must be at least 2 (one train and one val clip), got {num_per_class}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    paths = DemoDataset.at(root)
    paths.root.mkdir(parents=True, exist_ok=True)
    (paths.root / MARKER).unlink(missing_ok=True)
    for folder in (paths.frames_root, paths.videos_root):
        shutil.rmtree(folder, ignore_errors=True)

    jobs = []
    for class_index, name in enumerate(CLASS_NAMES):
        slug = class_slug(name)
        for clip_index in range(num_per_class):
            clip = f"{slug}/{slug}_{clip_index:03d}"
            jobs.append(_ClipJob(class_index, clip_index, seed, paths.frames_root / clip,
                                 paths.videos_root / f"{clip}.mp4"))
    workers = max(1, os.cpu_count() if workers is None else workers)
    # threads suffice: numpy's array maths and the JPEG and H.264 encoders release the GIL
    with ThreadPoolExecutor(workers) as pool:
        finished = pool.map(_generate_clip, jobs)
        lengths = list(progress(finished, len(jobs), "demo dataset clips") if progress else finished)

    num_val = max(1, round(num_per_class * val_fraction))
    lists = {"train": ([], []), "val": ([], [])}
    for job, length in zip(jobs, lengths):
        frame_lines, video_lines = lists["val" if job.clip_index >= num_per_class - num_val else "train"]
        folder = job.frames_folder.relative_to(paths.frames_root).as_posix()
        frame_lines.append(f"{folder} {length} {job.class_index}")
        video_lines.append(f"{job.video_path.relative_to(paths.videos_root).as_posix()} {job.class_index}")
    write_list(paths.train_frames, lists["train"][0])
    write_list(paths.train_videos, lists["train"][1])
    write_list(paths.val_frames, lists["val"][0])
    write_list(paths.val_videos, lists["val"][1])
    write_labels_csv(paths.labels, CLASS_NAMES)
    (paths.root / MARKER).write_text(json.dumps(_settings(num_per_class, seed, val_fraction), indent=1) + "\n")
    logger.info("demo dataset: %d clips of %d classes written to %s", len(jobs), len(CLASS_NAMES), paths.root)
    return paths


def is_complete(root, num_per_class=48, seed=0, val_fraction=0.25):
    """Whether `root` holds a finished generation made with these settings."""
    marker = Path(root) / MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()) == _settings(num_per_class, seed, val_fraction)
    except json.JSONDecodeError:
        return False


def ensure_demo_dataset(root, num_per_class=48, seed=0, val_fraction=0.25, workers=None, progress=None):
    """The dataset under `root`, generated first unless a finished one with the same settings is there.

    Cheap when the dataset exists (one small file is read), so callers can use it on every start.
    """
    if is_complete(root, num_per_class, seed, val_fraction):
        return DemoDataset.at(root)
    logger.info("generating the synthetic demo dataset in %s", root)
    return generate_demo_dataset(root, num_per_class, seed, val_fraction, workers, progress)


# Captioned stills for pretraining a small CLIP (tools/pretrain_demo_clip.py): single frames of the demo's
# world and a caption of what that one frame shows (never motion or time).
COLOUR_NAMES = dict(zip(_BRIGHT_CHANNELS, ("red", "green", "blue", "yellow", "magenta", "cyan")))
SHAPE_NAMES = {3: "triangle", 4: "diamond", 5: "pentagon"}
# Where the object's first corner points (angles clockwise from the right, as the screen shows them), in
# compass words: "left"/"right" then only ever say where the object is. With "pointing left" in the captions
# the stage-1 text tower gave "... on the left" and "... on the right" the same embedding (cosine 1.00).
POINTING = ("east", "south-east", "south", "south-west", "west", "north-west", "north", "north-east")


def random_still(rng, height=HEIGHT, width=WIDTH):
    """(clip parameters, object state) of a frame at a random time of a random demo clip."""
    motion = MOTION_PAIRS[rng.integers(len(MOTION_PAIRS))][0]
    params = sample_clip_params(rng, motion, height, width)
    return params, state_at(params, rng.uniform())


def render_still(params, state, height=HEIGHT, width=WIDTH):
    """One frame (uint8 [H, W, 3]) of the object in `state` on the clip's background."""
    return _frame_with_object(render_background(params, height, width), params, state)


def colour_name(colour):
    """The name of a `_vivid_colour`: its bright channels are >= 175, the others <= 80."""
    return COLOUR_NAMES[tuple(int(channel >= 175) for channel in colour)]


def _pointing(params, state):
    """Where a tip of the shape points; a diamond looks the same turned by half a turn."""
    period = math.pi if params.sides == 4 else 2 * math.pi
    eighth = round((state.angle % period) / (math.pi / 4)) % len(POINTING)
    return POINTING[eighth]


def describe_still(params, state, height=HEIGHT, left=0.0, right=WIDTH):
    """A caption of what the frame shows, e.g. "a photo of a small red triangle pointing north on the
    left near the top". Sizes are relative to the frame height; positions to the visible columns [left, right)."""
    if state.opacity < 0.15:
        return "a photo of an empty textured background"
    size = state.radius / height
    size = "small" if size < 0.1 else "medium" if size < 0.21 else "large"
    across = (state.x - left) / (right - left)
    across = "on the left" if across < 0.38 else "on the right" if across > 0.62 else "in the centre"
    down = state.y / height
    down = "near the top" if down < 0.43 else "near the bottom" if down > 0.57 else "at mid height"
    faint = "faint " if state.opacity < 0.6 else ""
    return (f"a photo of a {faint}{size} {colour_name(params.color)} {SHAPE_NAMES[params.sides]} "
            f"pointing {_pointing(params, state)} {across} {down}")
