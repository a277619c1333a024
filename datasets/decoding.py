"""Reading only the sampled frames, from frame folders (JPEG/PNG files) or video files.

Every reader returns uint8 tensors [N, 3, H, W] (RGB) in the order of the requested indices, repeats
included, and raises `SampleReadError` naming the file and the reason when a frame or video cannot be
read. Videos open with TorchCodec where FFmpeg's shared libraries are installed, else with PyAV (which
ships its own FFmpeg); decord only when asked for. A file the chosen reader cannot open is tried with
the next one before it is an error; AVI files decode with PyAV. Frames are upright as FFmpeg plays them
(rotation metadata applied; decord refuses videos turned by 90 degrees, which then decode with PyAV). What
the decoders' native code writes to stderr is kept out of the user's way: it goes into that error, or to
the debug log.
"""
import contextlib
import functools
import io
import logging
import os
import re
import string
import sys
import tempfile
import threading

import av
import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_image, decode_jpeg, read_file

try:
    import decord
except ImportError:  # optional (requirements-decord.txt): installed only on request
    decord = None

logger = logging.getLogger(__name__)

VIDEO_BACKENDS = ("torchcodec", "pyav", "decord")
AUTO_ORDER = ("torchcodec", "pyav")  # what `backend=None` / 'auto' tries, in this order
DECODE_DEVICES = ("cpu", "cuda")


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


def read_frame_folder(video_dir, image_tmpl, frame_numbers, device="cpu"):
    """Decodes the frames `frame_numbers` (numbers as in the file names) of one folder: [N, 3, H, W].

    device 'cuda' decodes the folder's JPEGs on the GPU in one batch (nvJPEG) and returns GPU tensors.
    """
    unique, inverse = _unique_with_inverse(frame_numbers)
    paths = [os.path.join(video_dir, name) for name in frame_file_names(video_dir, image_tmpl, unique)]
    return decode_frames([_read_frame_file(video_dir, path) for path in paths], paths, inverse, video_dir, device)


def decode_frames(encoded, names, inverse, video_dir, device="cpu"):
    """[N, 3, H, W] of the encoded images (uint8 tensors) `inverse` picks; `names` and `video_dir` name
    them in errors. Frame folders and frame shards decode here, so both give the same tensors."""
    if torch.device(device).type == "cuda":
        return _decode_jpegs_on_gpu(video_dir, encoded, f"cuda:{torch.cuda.current_device()}")[inverse]
    frames = []
    for path, data in zip(names, encoded):
        try:
            frames.append(decode_image(data, mode=ImageReadMode.RGB))
        except RuntimeError as err:
            raise SampleReadError(f"cannot decode frame {path}: {err}") from err
        if frames[-1].shape != frames[0].shape:
            raise SampleReadError(f"frame {path} is {tuple(frames[-1].shape[1:])} (H, W), "
                                  f"other frames of {video_dir} are {tuple(frames[0].shape[1:])}")
    return _stack_channels_last([frame.permute(1, 2, 0) for frame in frames], inverse)


class FrameFolder:
    """A frame-folder record read like a video: frame k (0-based) is the file numbered k + `first_number`."""

    def __init__(self, path, image_tmpl, num_frames, first_number, device="cpu"):
        self.path, self.image_tmpl, self.num_frames = path, image_tmpl, num_frames
        self.first_number, self.device = first_number, device

    def __len__(self):
        return self.num_frames

    def get_frames(self, indices):
        return read_frame_folder(self.path, self.image_tmpl, np.asarray(indices) + self.first_number, self.device)


class EncodedFrames:
    """A frame-folder record held in memory (a sample of a frame shard), read like a video: frame k is the
    encoded image `encoded[k]` (bytes); `name` names the sample in errors."""

    def __init__(self, name, encoded, device="cpu"):
        self.name, self.encoded, self.device = name, encoded, device

    def __len__(self):
        return len(self.encoded)

    def get_frames(self, indices):
        unique, inverse = _unique_with_inverse(indices)
        data = [torch.frombuffer(bytearray(self.encoded[k]), dtype=torch.uint8) for k in unique.tolist()]
        return decode_frames(data, [f"{self.name} frame {k}" for k in unique.tolist()], inverse, self.name,
                             self.device)


def _read_frame_file(video_dir, path):
    if not os.path.isfile(path):
        if not os.path.isdir(video_dir):
            raise SampleReadError(f"frame folder {video_dir} does not exist")
        raise SampleReadError(f"frame {path} does not exist")
    return read_file(path)


def _decode_jpegs_on_gpu(video_dir, encoded, device):
    try:
        frames = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)
        return torch.stack(frames)
    except RuntimeError as err:
        raise SampleReadError(f"cannot decode the frames of {video_dir} on {device} (JPEG files of one size "
                              f"only): {err}") from err


def _stack_channels_last(frames_hwc, inverse):
    """[N, 3, H, W] of the frames `inverse` picks (from a list of [H, W, 3] or an [N, H, W, 3] tensor),
    stored channels-last.

    Decoders produce interleaved RGB; keeping that layout avoids a transposing copy, and torchvision's
    uint8 resize runs about twice as fast on it.
    """
    if torch.equal(inverse, torch.arange(len(frames_hwc))):  # sorted indices without repeats
        stacked = frames_hwc if torch.is_tensor(frames_hwc) else torch.stack(frames_hwc)
    elif torch.is_tensor(frames_hwc):
        stacked = frames_hwc[inverse.to(frames_hwc.device)]
    else:
        stacked = torch.stack([frames_hwc[i] for i in inverse.tolist()])
    return stacked.permute(0, 3, 1, 2)


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


class VideoBackendError(ValueError):
    """A video reader or decode device that cannot be used here (not installed, no CUDA, unknown name)."""


_logged = set()


def _log_once(key, level, message, *args):
    """Logs `message` the first time `key` comes up in this process, at debug level afterwards."""
    logger.log(logging.DEBUG if key in _logged else level, message, *args)
    _logged.add(key)


def _torchcodec_reason(err):
    """TorchCodec's message without the C++ source location it starts with."""
    return re.sub(r"^\w+, \S+:\d+, ", "", str(err)).strip()


@functools.cache
def torchcodec_decoder():
    """(TorchCodec's VideoDecoder or None, why not). Imported on first use: it loads FFmpeg's shared
    libraries (versions 4 to 8 of the system's FFmpeg), which PyAV does not need."""
    missing = "FFmpeg's shared libraries (libavcodec etc., FFmpeg 4 to 8) cannot be loaded"
    try:
        import torchcodec
        from torchcodec.decoders import VideoDecoder
    except ImportError as err:
        return None, f"torchcodec is not installed ({err})"
    except (RuntimeError, OSError) as err:  # older releases load FFmpeg on import
        logger.debug("torchcodec import failed: %s", err)
        return None, missing
    if getattr(torchcodec, "ffmpeg_major_version", 0) is None:  # later ones import without FFmpeg
        return None, missing
    return VideoDecoder, ""


# FFmpeg threads per decoder. One: the loader's workers are the parallelism, and decoding the few frames
# of a seek gains nothing from frame threads (two threads took more CPU time than one). A threaded
# decoder (TorchCodec's, or PyAV's kept open) still alive when a process forks its loader workers also
# hangs the worker that frees it (FFmpeg waits for threads the fork did not copy).
DECODER_THREADS = 1


def _check_complete(path, announced, held, header_end, content_end, frame_gap):
    """Raises SampleReadError when the frames a file holds end before the duration its header announces.

    A header's frame count is only a hint (a variable-rate AVI counts ticks of its time base, not frames),
    so the test is on time: the file is truncated when its last frame ends more than two frame gaps early.
    Times in seconds."""
    if content_end < header_end - 2 * frame_gap:
        announced = f"{announced} frames, {header_end:.2f} s" if announced else f"{header_end:.2f} s"
        raise SampleReadError(f"video {path} is truncated: its header announces {announced}, the file holds "
                              f"{held} frames, {content_end:.2f} s")


class TorchCodecVideo:
    """A video opened with TorchCodec in its exact seek mode: the frame index is scanned once (no
    decoding), so counts and indices are exact, as PyAV's. device 'cuda' decodes with NVDEC and returns
    GPU tensors; where the GPU cannot decode a file, TorchCodec decodes it on the CPU and this is logged."""

    def __init__(self, path, device="cpu", data=None):
        decoder_class, why_not = torchcodec_decoder()
        if decoder_class is None:
            raise SampleReadError(f"cannot open video {path}: TorchCodec is unavailable: {why_not}")
        self.path, self.device, self._fallback_checked = path, device, device == "cpu"
        try:
            with native_stderr_captured():
                self._decoder = decoder_class(path if data is None else data, seek_mode="exact", dimension_order="NHWC",
                                              num_ffmpeg_threads=DECODER_THREADS, device=device)
        except (RuntimeError, ValueError) as err:
            raise SampleReadError(f"cannot open video {path}: TorchCodec cannot read it: "
                                  f"{_torchcodec_reason(err)}") from err
        try:
            meta = self._decoder.metadata
            if meta.duration_seconds_from_header and meta.end_stream_seconds_from_content is not None:
                content = meta.end_stream_seconds_from_content - meta.begin_stream_seconds_from_content
                header_end = meta.duration_seconds_from_header + (meta.begin_stream_seconds_from_header or 0)
                _check_complete(path, meta.num_frames_from_header, len(self._decoder), header_end,
                                meta.end_stream_seconds_from_content, content / max(len(self._decoder), 1))
        except SampleReadError:
            del self._decoder  # now, not whenever the error's traceback goes
            raise

    def __len__(self):
        return len(self._decoder)

    def get_frames(self, indices):
        unique, inverse = _unique_with_inverse(indices)
        try:
            with native_stderr_captured() as output:
                frames = self._decoder.get_frames_at(unique.tolist()).data
        except (RuntimeError, IndexError) as err:
            details = " ".join(f"{_torchcodec_reason(err)} {output[0] if output else ''}".split())
            raise SampleReadError(f"cannot decode frames {unique.tolist()} of video {self.path} "
                                  f"(truncated or corrupt?): {details}") from err
        if not self._fallback_checked:
            self._report_cpu_fallback()
        return _stack_channels_last(frames, inverse)

    def _report_cpu_fallback(self):
        status = self._decoder.cpu_fallback
        if status.status_known:
            self._fallback_checked = True
            if status:
                _log_once(("cpu fallback", str(status)), logging.WARNING,
                          "%s: TorchCodec decodes this video on the CPU, not on %s: %s", self.path, self.device,
                          status)


class DecordVideo:
    """A video opened with decord (on request only); frames are fetched by index with its accurate seeking.
    decord turns a video by 180 degrees as its rotation metadata says, but fails on one turned by 90 or 270
    (a buffer size mismatch): such a video is refused at open (rotation read with PyAV), so open_video
    decodes it with the next reader."""

    def __init__(self, path, data=None):
        self.path = path
        rotation = _display_rotation(_source(path, data))
        if round(rotation / 90) % 2:
            raise SampleReadError(f"cannot open video {path}: decord cannot decode videos turned by {rotation:g} "
                                  f"degrees")
        try:
            with native_stderr_captured() as output:
                self._reader = decord.VideoReader(_source(path, data), num_threads=DECODER_THREADS)
        except (RuntimeError, decord.DECORDError) as err:
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
        return _stack_channels_last(torch.from_numpy(frames), inverse)


def _source(path, data):
    """What PyAV and decord open: the file, or its bytes (`data`) as a file object."""
    return path if data is None else io.BytesIO(data)


def _display_rotation(source):
    """The rotation (degrees) of a video's first frame as PyAV reads it; 0 where PyAV cannot read it."""
    try:
        with av.open(source) as container:
            return next(container.decode(video=0), None).rotation
    except (av.FFmpegError, OSError, AttributeError, IndexError):
        return 0


def upright(image_hwc, rotation):
    """The frame as FFmpeg plays it: a display matrix of `rotation` degrees turns it counter-clockwise."""
    turns = round(rotation / 90) % 4
    return torch.rot90(image_hwc, turns, dims=(0, 1)) if turns else image_hwc


# swscale threads per conversion. One: PyAV keeps a conversion context per thread for the thread's life,
# and a forked child (a loader or pool worker) that inherits a threaded one waits forever for slice threads
# the fork did not copy. The workers are the parallelism.
CONVERSION_THREADS = 1


def rgb_frame(frame, width=None, height=None, interpolation=None):
    """A decoded PyAV frame as uint8 [H, W, 3] RGB, upright (as every reader returns frames), optionally
    resized to width x height (before the rotation) with FFmpeg's `interpolation`. Safe across forks."""
    array = frame.to_ndarray(width=width, height=height, format="rgb24", interpolation=interpolation,
                             threads=CONVERSION_THREADS)
    return upright(torch.from_numpy(array), frame.rotation)


class PyAVVideo:
    """A video opened with PyAV; seeks to the keyframe before far-away frames, then decodes forward.

    Frame k is the k-th packet in presentation order (the packet table is read once, without decoding),
    so indices are exact for variable frame rates too and agree with TorchCodec's and decord's. Packets of
    frames that are not requested go to the decoder with `skip_frame` NONREF: the decoder drops those that
    no other frame refers to (most B-frames of H.264/HEVC) instead of decoding them, which leaves every
    decoded frame as it is (less CPU per clip).
    """

    seek_gap = 64  # decode forward through shorter gaps; seek (to a keyframe) across longer ones

    def __init__(self, path, data=None):
        self.path = path
        try:
            # Kept open for get_frames: opening decodes the first frame (FFmpeg's stream probing), a share of
            # a clip's decoding worth saving. PyAV closes it when this object goes.
            self._container = av.open(_source(path, data))
        except (av.FFmpegError, OSError) as err:
            raise SampleReadError(f"cannot open video {path}: {_ffmpeg_reason(err)}") from err
        try:
            self._pts = self._presentation_times()
            self._position_of = {pts: position for position, pts in enumerate(self._pts)}
        except BaseException:
            self._container.close()  # now, not whenever the error's traceback goes
            raise

    def _presentation_times(self):
        """The video packets' pts in presentation order (demuxed, not decoded); the file must be complete."""
        if not self._container.streams.video:
            raise SampleReadError(f"video {self.path} has no video stream")
        stream = self._container.streams.video[0]
        stream.codec_context.thread_count = DECODER_THREADS  # no decoder threads for a loader's fork to orphan
        try:
            pts = sorted(packet.pts for packet in self._container.demux(stream) if packet.pts is not None)
        except (av.FFmpegError, OSError) as err:
            raise SampleReadError(f"cannot open video {self.path}: {_ffmpeg_reason(err)}") from err
        if pts and stream.duration:
            base = float(stream.time_base)
            gap = float(np.median(np.diff(pts))) if len(pts) > 1 else stream.duration / max(stream.frames, 1)
            _check_complete(self.path, stream.frames, len(pts), (stream.duration + (stream.start_time or 0)) * base,
                            (pts[-1] + gap) * base, gap * base)
        return pts

    def __len__(self):
        return len(self._pts)

    def get_frames(self, indices):
        unique, inverse = _unique_with_inverse(indices)
        wanted = {self._pts[target] for target in unique.tolist()}
        found = {}
        try:
            frames, position = None, -1
            for target in unique.tolist():
                if target in found:
                    continue
                if frames is None or target - position > self.seek_gap:
                    frames = self._seek(self._pts[target], wanted)
                position = self._decode_until(frames, target, wanted, found, position)
                if target not in found:  # the seek landed past it (AVI seeks by decoding time): seek earlier
                    earlier = self._pts[target - self.seek_gap] if target >= self.seek_gap else None
                    frames = self._seek(earlier, wanted)
                    position = self._decode_until(frames, target, wanted, found, -1)
        except (av.FFmpegError, OSError) as err:
            raise SampleReadError(f"cannot decode video {self.path} (truncated or corrupt?): "
                                  f"{_ffmpeg_reason(err)}") from err
        missing = sorted(set(unique.tolist()) - set(found))
        if missing:
            raise SampleReadError(f"video {self.path}: frames {missing} of {len(self)} could not be decoded "
                                  f"(truncated or corrupt?)")
        return _stack_channels_last([found[i] for i in unique.tolist()], inverse)

    # Frames a decoder may hand out after later ones: packed B-frames of DivX/Xvid AVIs come out of order.
    reorder_window = 8

    def _seek(self, pts, wanted):
        """Decoded frames from the keyframe at or before `pts` (None: from the stream's start) on."""
        stream = self._container.streams.video[0]
        self._container.seek((stream.start_time or 0) if pts is None else pts, stream=stream, backward=True)
        return self._decoded(self._container, stream, wanted)

    def _decode_until(self, frames, target, wanted, found, position):
        """Decodes from `frames` into `found` (position: frame) until `target` is found or decoding is
        `reorder_window` frames past it; returns the last decoded position."""
        for frame in frames:
            position = self._position_of.get(frame.pts, position)
            if frame.pts in wanted:
                found[position] = rgb_frame(frame)
            if target in found or position >= target + self.reorder_window:
                break
        return position

    @staticmethod
    def _decoded(container, stream, wanted_pts):
        """The frames decoded from the container's position on (after a seek, which flushes the decoder), in
        presentation order, skipping the non-reference frames whose presentation time is not in `wanted_pts`."""
        codec = stream.codec_context
        for packet in container.demux(stream):
            if packet.size:
                codec.skip_frame = "DEFAULT" if packet.pts in wanted_pts else "NONREF"
            yield from codec.decode(packet if packet.size else None)  # an empty packet: the end, drain


def _unavailable(backend):
    """Why `backend` cannot be used in this process, or '' when it can."""
    if backend == "torchcodec":
        return torchcodec_decoder()[1]
    if backend == "decord" and decord is None:
        return "decord is not installed (pip install -r requirements-decord.txt)"
    return ""


def available_video_backends():
    """The readers that can be used in this process, in VIDEO_BACKENDS order."""
    return tuple(name for name in VIDEO_BACKENDS if not _unavailable(name))


def reader_order(backend=None, device="cpu"):
    """The readers `open_video` tries, in order: `backend` first ('auto' or None: TorchCodec where
    FFmpeg's libraries load, then PyAV), then the automatic ones it is not. GPU decoding is TorchCodec's."""
    backend = backend or "auto"
    if backend != "auto" and backend not in VIDEO_BACKENDS:
        raise VideoBackendError(f"video backend must be auto or one of {', '.join(VIDEO_BACKENDS)}, got {backend!r}")
    if device not in DECODE_DEVICES:
        raise VideoBackendError(f"decode device must be one of {', '.join(DECODE_DEVICES)}, got {device!r}")
    if device == "cuda":
        check_cuda_decoding(backend)
        return ("torchcodec",)
    if backend != "auto" and _unavailable(backend):
        raise VideoBackendError(f"video backend {backend} cannot be used: {_unavailable(backend)}; "
                                f"use auto (TorchCodec where FFmpeg's libraries load, else PyAV)")
    names = AUTO_ORDER if backend == "auto" else (backend,) + tuple(n for n in AUTO_ORDER if n != backend)
    return tuple(name for name in names if not _unavailable(name))


def check_cuda_decoding(backend="auto"):
    """Raises VideoBackendError saying why videos cannot be decoded on the GPU here (no CUDA device,
    no TorchCodec, another backend chosen); returns when they can."""
    if backend not in ("auto", "torchcodec", None):
        raise VideoBackendError(f"decode device cuda decodes with TorchCodec; video backend {backend} decodes "
                                f"on the CPU only (choose auto or torchcodec)")
    if not torch.cuda.is_available():
        raise VideoBackendError("decode device cuda: this PyTorch sees no CUDA device (torch.cuda.is_available() "
                                "is False); decode on the cpu")
    if _unavailable("torchcodec"):
        raise VideoBackendError(f"decode device cuda decodes with TorchCodec, which cannot be used here: "
                                f"{_unavailable('torchcodec')}")


_READERS = {"torchcodec": TorchCodecVideo, "pyav": PyAVVideo, "decord": DecordVideo}

# Containers without presentation times (FFmpeg derives them from the decoding order): TorchCodec returns
# frame k-1 for frame k of an MPEG-4 AVI with B-frames, decord frames further off; PyAV's reader decodes
# them as a plain front-to-back decode does.
PYAV_ONLY_SUFFIXES = (".avi",)


def default_video_backend():
    """The reader a video opens with when none is asked for: 'torchcodec' or 'pyav'."""
    return reader_order()[0]


def open_video(path, backend=None, device="cpu", data=None):
    """Opens a video file with `backend` ('auto' or None, 'torchcodec', 'pyav', 'decord'), falling back to
    the automatic readers it is not; device 'cuda' decodes with TorchCodec on the GPU. AVI files decode
    with PyAV on the CPU whatever `backend` says (PYAV_ONLY_SUFFIXES), logged. `data`: the file's bytes
    (a video from a shard), decoded from memory; `path` then only names it (messages, suffix).

    Raises SampleReadError when no reader opens the file (with PyAV's reason, FFmpeg's complete one,
    where PyAV was tried) and VideoBackendError when `backend` or `device` cannot be used here.
    """
    order = reader_order(backend, device)
    if device == "cuda":
        device = f"cuda:{torch.cuda.current_device()}"  # this process's GPU (one per rank)
    if data is None and not os.path.isfile(path):
        raise SampleReadError(f"video {path} does not exist")
    if device == "cpu" and os.path.splitext(path)[1].lower() in PYAV_ONLY_SUFFIXES and order[0] != "pyav":
        _log_once(("pyav only", backend), logging.WARNING if backend not in (None, "auto") else logging.INFO,
                  "%s: AVI files decode with PyAV, not %s: AVI stores no presentation times, and %s places "
                  "the frames of AVIs with B-frames wrongly (later files: debug log)", path, order[0], order[0])
        order = ("pyav",)
    errors = {}
    for name in order:
        try:
            video = _READERS[name](path, device, data) if name == "torchcodec" else _READERS[name](path, data)
        except SampleReadError as err:
            errors[name] = err
            continue
        _announce(order, name, path, errors)
        return video
    raise errors.get("pyav") or next(iter(errors.values()))


def _announce(order, used, path, errors):
    why_not = torchcodec_decoder()[1]
    _log_once("reader", logging.INFO, "videos decode with %s%s", used,
              f" (TorchCodec unavailable: {why_not})" if why_not and used == "pyav" else "")
    if errors:
        _log_once(("fallback", order[0], used), logging.WARNING,
                  "%s: %s cannot open it (%s); decoded with %s instead (later files: debug log)",
                  path, order[0], errors[order[0]], used)
