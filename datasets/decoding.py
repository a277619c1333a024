"""Reading only the sampled frames, from frame folders (JPEG/PNG files) or video files.

Every reader returns uint8 tensors [N, 3, H, W] (RGB) in the order of the requested indices, repeats
included, and raises `SampleReadError` naming the file and the reason when a frame or video cannot be
read. Videos are decoded with decord when it is installed, else with PyAV. What the decoders' native
code writes to stderr is kept out of the user's way: it goes into that error, or to the debug log.
"""
import contextlib
import logging
import os
import string
import sys
import tempfile
import threading

import av
import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_image, read_file

try:
    import decord
except ImportError:  # decord has wheels for x86-64 only; PyAV covers the rest
    decord = None

logger = logging.getLogger(__name__)

VIDEO_BACKENDS = ("decord", "pyav")


# File name endings taken for videos when a folder is searched for them.
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".flv", ".mpg", ".mpeg", ".3gp")

class SampleReadError(RuntimeError):
    """A frame or video of one sample cannot be read (missing, corrupt or truncated)."""


def _unique_with_inverse(indices):
    unique, inverse = np.unique(np.asarray(indices, dtype=np.int64), return_inverse=True)
    return unique, torch.from_numpy(inverse.reshape(-1))


def template_field_count(image_tmpl):
    """How many `{}` fields a frame-name template has: 1 (`img_{:05d}.jpg`) or 2 (`{}-{:06d}.jpg`)."""
    count = sum(1 for _, field, _, _ in string.Formatter().parse(image_tmpl) if field is not None)
    if count not in (1, 2):
        raise ValueError(f"data.image_tmpl must have a field for the frame number ('img_{{:05d}}.jpg') or "
                         f"for the video id and frame number ('{{}}-{{:06d}}.jpg'), got {image_tmpl!r}")
    return count


def frame_file_names(video_dir, image_tmpl, frame_numbers):
    """File names of the given frame numbers; two-field templates get the folder's name first."""
    if template_field_count(image_tmpl) == 2:
        video_id = os.path.basename(os.path.normpath(video_dir))
        return [image_tmpl.format(video_id, int(n)) for n in frame_numbers]
    return [image_tmpl.format(int(n)) for n in frame_numbers]


def read_frame_folder(video_dir, image_tmpl, frame_numbers):
    """Decodes the frames `frame_numbers` (numbers as in the file names) of one folder: [N, 3, H, W]."""
    unique, inverse = _unique_with_inverse(frame_numbers)
    frames = []
    for name in frame_file_names(video_dir, image_tmpl, unique):
        path = os.path.join(video_dir, name)
        if not os.path.isfile(path):
            if not os.path.isdir(video_dir):
                raise SampleReadError(f"frame folder {video_dir} does not exist")
            raise SampleReadError(f"frame {path} does not exist")
        try:
            frames.append(decode_image(read_file(path), mode=ImageReadMode.RGB))
        except RuntimeError as err:
            raise SampleReadError(f"cannot decode frame {path}: {err}") from err
        if frames[-1].shape != frames[0].shape:
            raise SampleReadError(f"frame {path} is {tuple(frames[-1].shape[1:])} (H, W), "
                                  f"other frames of {video_dir} are {tuple(frames[0].shape[1:])}")
    return _stack_channels_last([frame.permute(1, 2, 0) for frame in frames], inverse)


def _stack_channels_last(frames_hwc, inverse):
    """[N, 3, H, W] of the frames `inverse` picks, stored channels-last.

    Decoders produce interleaved RGB; keeping that layout avoids a transposing copy, and torchvision's
    uint8 resize runs about twice as fast on it.
    """
    if torch.equal(inverse, torch.arange(len(frames_hwc))):  # sorted indices without repeats
        return torch.stack(frames_hwc).permute(0, 3, 1, 2)
    return torch.stack([frames_hwc[i] for i in inverse.tolist()]).permute(0, 3, 1, 2)


_STDERR_LOCK = threading.Lock()  # file descriptor 2 is shared by the process's threads


@contextlib.contextmanager
def native_stderr_captured():
    """Collects what native code (decord's C++ log, FFmpeg's) writes to file descriptor 2 meanwhile.

    Yields a list that holds the captured text, stripped, once the block ends. decord prints its own
    error line (and FFmpeg's) before raising an exception with a truncated message; the caller puts the
    text into its error instead. Threads of one process take turns here.
    """
    captured = []
    with _STDERR_LOCK, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode(errors="replace").strip())
            if captured[0]:
                logger.debug("decoder output: %s", captured[0])


def _ffmpeg_reason(err):
    """FFmpeg's reason without the errno and file name that PyAV's message repeats."""
    return getattr(err, "strerror", None) or str(err)


class DecordVideo:
    """A video opened with decord; frames are fetched by index with its accurate seeking."""

    def __init__(self, path):
        self.path = path
        try:
            with native_stderr_captured() as output:
                self._reader = decord.VideoReader(path, num_threads=1)
        except (RuntimeError, decord.DECORDError) as err:
            PyAVVideo(path)  # raises with FFmpeg's complete reason; decord's exception cuts it short
            reason = " ".join(output[0].split()) or str(err)
            raise SampleReadError(f"cannot open video {path}: decord cannot read it: {reason}") from err

    def __len__(self):
        return len(self._reader)

    def get_frames(self, indices):
        unique, inverse = _unique_with_inverse(indices)
        try:
            with native_stderr_captured() as output:
                frames = self._reader.get_batch(unique.tolist()).asnumpy()
        except (RuntimeError, IndexError, decord.DECORDError) as err:
            details = " ".join(f"{err} {output[0]}".split())
            raise SampleReadError(f"cannot decode frames {unique.tolist()} of video {self.path} "
                                  f"(truncated or corrupt?): {details}") from err
        return _stack_channels_last(list(torch.from_numpy(frames)), inverse)


class PyAVVideo:
    """A video opened with PyAV; seeks to the keyframe before far-away frames, then decodes forward.

    Frame k is the k-th packet in presentation order (the packet table is read once, without decoding),
    so indices are exact for variable frame rates too and agree with decord's.
    """

    seek_gap = 64  # decode forward through shorter gaps; seek (to a keyframe) across longer ones

    def __init__(self, path):
        self.path = path
        try:
            with av.open(path) as container:
                if not container.streams.video:
                    raise SampleReadError(f"video {path} has no video stream")
                stream = container.streams.video[0]
                self._pts = sorted(packet.pts for packet in container.demux(stream) if packet.pts is not None)
                announced = stream.frames
        except (av.FFmpegError, OSError) as err:
            raise SampleReadError(f"cannot open video {path}: {_ffmpeg_reason(err)}") from err
        if announced and len(self._pts) < announced:
            raise SampleReadError(f"video {path} is truncated: its header announces {announced} frames, "
                                  f"the file holds {len(self._pts)}")

    def __len__(self):
        return len(self._pts)

    def get_frames(self, indices):
        unique, inverse = _unique_with_inverse(indices)
        position_of = {pts: position for position, pts in enumerate(self._pts)}
        found = {}
        try:
            with av.open(self.path) as container:
                stream = container.streams.video[0]
                frames, position = None, -1
                for target in unique.tolist():
                    if frames is None or target - position > self.seek_gap:
                        container.seek(self._pts[target], stream=stream, backward=True)
                        frames = container.decode(stream)
                    for frame in frames:
                        position = position_of.get(frame.pts, position)
                        if position == target:
                            found[target] = torch.from_numpy(frame.to_ndarray(format="rgb24"))
                        if position >= target:
                            break
        except (av.FFmpegError, OSError) as err:
            raise SampleReadError(f"cannot decode video {self.path} (truncated or corrupt?): "
                                  f"{_ffmpeg_reason(err)}") from err
        missing = sorted(set(unique.tolist()) - set(found))
        if missing:
            raise SampleReadError(f"video {self.path}: frames {missing} of {len(self)} could not be decoded "
                                  f"(truncated or corrupt?)")
        return _stack_channels_last([found[i] for i in unique.tolist()], inverse)


def default_video_backend():
    return "decord" if decord is not None else "pyav"


def open_video(path, backend=None):
    """Opens a video file with `backend` ('decord', 'pyav'; None: decord if installed)."""
    backend = backend or default_video_backend()
    if backend not in VIDEO_BACKENDS:
        raise ValueError(f"video backend must be one of {VIDEO_BACKENDS}, got {backend!r}")
    if backend == "decord" and decord is None:
        raise ValueError("video backend 'decord' is not installed (pip install decord); use 'pyav'")
    if not os.path.isfile(path):
        raise SampleReadError(f"video {path} does not exist")
    return DecordVideo(path) if backend == "decord" else PyAVVideo(path)
