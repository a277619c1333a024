"""Which frames of a video a clip uses: every frame-index computation of the project lives here.

All functions are pure: they take the number of frames of the video (or of the trimmed instance) and
return 0-based frame indices as int64 numpy arrays. Randomness comes only from the `rng`
(`numpy.random.Generator`) passed in. The semantics follow BIKE's original data loaders:

- uniform training sampling: the video is cut into `num_segments` segments with rounded boundaries and
  one frame is drawn in each (both boundaries inclusive);
- uniform validation/test sampling: frames `int(tick * k)` with `tick = num_frames / num_segments`,
  test clips shift that grid by evenly spaced starts within the first tick;
- dense sampling (I3D style): `num_segments` frames `window // num_segments` apart inside a
  `window`-frame (128) window; indices wrap around (`% num_frames`) for videos shorter than the window;
- TSN-style sampling (Charades training): `num_segments` chunks of `seg_length` consecutive frames;
  videos with at most `num_segments * seg_length` frames use every frame plus random extra ones, sorted.

Every uniform/dense index is expanded to `seg_length` consecutive frames, capped at the last frame.
"""
from dataclasses import dataclass

import numpy as np

DENSE_WINDOW = 128
SAMPLING_MODES = ("train", "val", "test")


def _check(num_frames, num_segments, seg_length=1, num_clips=1):
    for name, value in (("num_frames", num_frames), ("num_segments", num_segments),
                        ("seg_length", seg_length), ("num_clips", num_clips)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def expand_segments(starts, seg_length, num_frames):
    """Each start becomes `seg_length` consecutive frames; frames past the end repeat the last one."""
    starts = np.asarray(starts, dtype=np.int64)
    if seg_length == 1:
        return starts
    frames = starts[..., None] + np.arange(seg_length)
    return np.minimum(frames, num_frames - 1).reshape(*starts.shape[:-1], -1)


def segment_train_indices(num_frames, num_segments, rng, seg_length=1):
    """One random frame per segment; segment borders are `round((num_frames - 1) / num_segments * k)`.

    Rounding is numpy's (half to even), as in the original, so border frames are shared exactly as there.
    """
    _check(num_frames, num_segments, seg_length)
    borders = np.round(float(num_frames - 1) / num_segments * np.arange(num_segments + 1)).astype(np.int64)
    starts = rng.integers(borders[:-1], borders[1:] + 1)
    return expand_segments(starts, seg_length, num_frames)


def segment_test_indices(num_frames, num_segments, num_clips=1, seg_length=1):
    """`num_clips` uniform clips, shape [num_clips, num_segments * seg_length].

    Clip starts are `linspace(0, tick - 1, num_clips)` truncated toward zero (numpy 1 semantics, kept
    on numpy 2 whose integer linspace floors), so one clip is the validation clip.
    """
    _check(num_frames, num_segments, seg_length, num_clips)
    tick = num_frames / float(num_segments)
    clip_starts = np.trunc(np.linspace(0.0, tick - 1, num=num_clips)).astype(np.int64)
    grid = tick * np.arange(num_segments)
    starts = (clip_starts[:, None] + grid[None, :]).astype(np.int64) % num_frames
    return expand_segments(starts, seg_length, num_frames)


def segment_val_indices(num_frames, num_segments, seg_length=1):
    """The deterministic validation clip: frames `int(num_frames / num_segments * k) % num_frames`."""
    return segment_test_indices(num_frames, num_segments, 1, seg_length)[0]


def _dense_grid(num_frames, num_segments, start, window, seg_length):
    starts = (np.arange(num_segments) * (window // num_segments) + np.asarray(start)[..., None]) % num_frames
    return expand_segments(starts, seg_length, num_frames)


def dense_train_indices(num_frames, num_segments, rng, seg_length=1, window=DENSE_WINDOW):
    """Dense clip at a random start in `[0, num_frames - window - 1]` (start 0 when the video is shorter)."""
    _check(num_frames, num_segments, seg_length)
    last_start = num_frames - window - 1
    start = int(rng.integers(0, last_start + 1)) if last_start >= 0 else 0
    return _dense_grid(num_frames, num_segments, start, window, seg_length)


def dense_test_indices(num_frames, num_segments, num_clips=1, seg_length=1, window=DENSE_WINDOW):
    """`num_clips` dense clips, shape [num_clips, num_segments * seg_length].

    Clip `k` starts at `k * floor(max(0, num_frames - window) / (num_clips - 1))` as in the original;
    a single clip (where the original divides by zero) is centred: start `max(0, num_frames - window) // 2`.
    """
    _check(num_frames, num_segments, seg_length, num_clips)
    room = max(0, num_frames - window)
    if num_clips == 1:
        starts = np.array([room // 2])
    else:
        starts = np.arange(num_clips) * (room // (num_clips - 1))
    return _dense_grid(num_frames, num_segments, starts, window, seg_length)


def dense_val_indices(num_frames, num_segments, seg_length=1, window=DENSE_WINDOW):
    """Deterministic dense validation clip: the centred window (the original draws a random start)."""
    return dense_test_indices(num_frames, num_segments, 1, seg_length, window)[0]


def tsn_train_indices(num_frames, num_segments, rng, seg_length=1):
    """Charades training: a random run of `seg_length` frames inside each of `num_segments` equal chunks.

    Chunk borders are `k * num_frames // num_segments`. A video with at most `num_segments * seg_length`
    frames gives all its frames plus random extra ones (with repeats), sorted.
    """
    _check(num_frames, num_segments, seg_length)
    total = num_segments * seg_length
    if num_frames <= total:
        extra = rng.integers(num_frames, size=total - num_frames)
        return np.sort(np.concatenate([np.arange(num_frames), extra]))
    borders = np.arange(num_segments + 1) * num_frames // num_segments
    room = borders[1:] - borders[:-1] - seg_length + 1
    starts = borders[:-1] + np.where(room >= 1, rng.integers(np.maximum(room, 1)), 0)
    return (starts[:, None] + np.arange(seg_length)).reshape(-1)


@dataclass(frozen=True)
class ClipSampler:
    """Chooses the sampling function for a mode; returns indices of shape [num_clips, frames_per_clip].

    train: random uniform (or dense, or TSN-style with `tsn_train`) sampling, or the validation clip when
    `random_shift` is False; val: one deterministic clip; test: `num_clips` deterministic clips.
    """

    num_segments: int
    seg_length: int = 1
    dense: bool = False
    random_shift: bool = True
    num_clips: int = 1
    tsn_train: bool = False
    window: int = DENSE_WINDOW

    @property
    def frames_per_clip(self):
        return self.num_segments * self.seg_length

    def __call__(self, num_frames, mode, rng=None):
        if mode not in SAMPLING_MODES:
            raise ValueError(f"sampling mode must be one of {SAMPLING_MODES}, got {mode!r}")
        segments, length = self.num_segments, self.seg_length
        if mode == "test":
            sample = dense_test_indices if self.dense else segment_test_indices
            if self.dense:
                return sample(num_frames, segments, self.num_clips, length, self.window)
            return sample(num_frames, segments, self.num_clips, length)
        if mode == "train" and self.random_shift:
            if rng is None:
                raise ValueError("training sampling needs a random generator")
            if self.dense:
                clip = dense_train_indices(num_frames, segments, rng, length, self.window)
            elif self.tsn_train:
                clip = tsn_train_indices(num_frames, segments, rng, length)
            else:
                clip = segment_train_indices(num_frames, segments, rng, length)
        elif self.dense:
            clip = dense_val_indices(num_frames, segments, length, self.window)
        else:
            clip = segment_val_indices(num_frames, segments, length)
        return clip[None, :]
