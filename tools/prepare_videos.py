"""Re-encode a dataset's videos for training: quick to sample, no larger than needed, no audio; writes the new list.

    python tools/prepare_videos.py videos.txt --video-root VIDEOS_DIR --out PREPARED_DIR \
        --video-list prepared.txt [--short-side 256] [--codec mjpeg|h264] [--keyframe-seconds 1] [--workers 8]
    python tools/prepare_videos.py VIDEOS_DIR --out PREPARED_DIR

Training decodes 8 to 16 frames spread over each video. A reader seeks to the keyframe before each
sampled frame and decodes forward from there, so what a clip costs grows with the distance between
keyframes (videos from video sites have one every 2 to 10 s, some files a single one) and with the frame
size. Each video gets its shorter side scaled to --short-side (256: what the training transform resizes
to first), every frame kept (frame indices and counts stay those of the source; rotated videos come out
upright), no audio, and one of two codecs: `mjpeg` (default; Matroska, every frame a keyframe, so a
sampled frame costs one JPEG decode: the fastest to train from, files about 5 times smaller than JPEG
folders of 320-pixel frames) or `h264` (MP4, x264 `tune fastdecode`, a keyframe every --keyframe-seconds:
files several times smaller than mjpeg, slower to sample). Video `a/b.webm` becomes `a/b.mkv` (mjpeg) or
`a/b.mp4` (h264); --video-list writes `<file> <label>` lines in the source list's order.

Resumable: a video is written to `<name>.partial.<ext>` and renamed when done, so a finished one is skipped
on the next run and an interrupted one redone. A video that cannot be decoded is reported and left out;
the others go on, and the exit status is 1 if any failed.
"""
import argparse
import functools
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.annotations import write_list  # noqa: E402
from datasets.decoding import rgb_frame  # noqa: E402
from tools.extract_frames import Outcome, log_outcomes, resized, run_per_video, source_videos  # noqa: E402
from utils.distributed import run_program  # noqa: E402
from workflows.options import ProgramParser  # noqa: E402

logger = logging.getLogger(__name__)

PARTIAL_STEM = ".partial"
CONTAINERS = {"mjpeg": "mkv", "h264": "mp4"}


@dataclass(frozen=True)
class EncodeOptions:
    """short_side 0 keeps the size. mjpeg: `quality` is its qmax (2 best, 31 worst); h264: x264's crf
    (lower is better and larger), keyframes every `keyframe_seconds`."""

    short_side: int = 256
    codec: str = "mjpeg"
    keyframe_seconds: float = 1.0
    quality: int = 0  # 0: 4 for mjpeg, crf 20 for h264

    @property
    def suffix(self):
        return "." + CONTAINERS[self.codec]


def prepared_name(video, options=EncodeOptions()):
    """The prepared file of a video: its relative path with the codec's container extension."""
    return Path(video).with_suffix(options.suffix).as_posix()


def _add_stream(writer, options, rate, height, width):
    if options.codec == "mjpeg":
        stream = writer.add_stream("mjpeg", rate=rate)
        stream.pix_fmt = "yuvj420p"
        stream.codec_context.qmax = options.quality or 4
    else:
        stream = writer.add_stream("libx264", rate=rate)
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(options.quality or 20), "preset": "veryfast", "tune": "fastdecode"}
        stream.codec_context.gop_size = max(1, round(float(rate) * options.keyframe_seconds))
    stream.height, stream.width = height, width
    return stream


def _even(size):
    return max(2, size - size % 2)  # yuv420p needs even sides


def _encode(source, target, options):
    """Writes every frame of `source` to `target`; returns the frame count."""
    count = 0
    with av.open(str(source)) as reader:
        if not reader.streams.video:
            raise ValueError("no video stream")
        stream = reader.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or 25
        with av.open(str(target), "w", format="matroska" if options.codec == "mjpeg" else "mp4") as writer:
            out = None
            for frame in reader.decode(stream):
                width, height = (_even(side) for side in resized(frame.width, frame.height, options.short_side))
                image = rgb_frame(frame, width, height, "BICUBIC")
                if out is None:
                    out = _add_stream(writer, options, rate, *image.shape[:2])
                writer.mux(out.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image.numpy()), format="rgb24")))
                count += 1
            if out is None:
                raise ValueError("no frames decoded")
            writer.mux(out.encode())
    return count


def prepare_video(source, target, options=EncodeOptions()):
    """Re-encodes one video to `target` via a `.partial` file renamed at the end.

    Returns ('skipped', 0) if `target` exists, else ('prepared', frames).
    Raises av.FFmpegError, OSError or ValueError if the video cannot be read.
    """
    target = Path(target)
    if target.is_file():
        return "skipped", 0
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.stem + PARTIAL_STEM + target.suffix)
    try:
        count = _encode(source, partial, options)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return "prepared", count


def _prepare_one(video, video_root, out_root, options):
    """Worker: never raises for a bad video, so one failure does not stop the others."""
    try:
        status, count = prepare_video(Path(video_root) / video, Path(out_root) / prepared_name(video, options), options)
    except (av.FFmpegError, OSError, ValueError) as error:
        return Outcome(video, "failed", error=f"{type(error).__name__}: {error}")
    return Outcome(video, status, count)


def prepare_all(videos, video_root, out_root, options=EncodeOptions(), workers=1, progress=True):
    """Re-encodes every video (relative to `video_root`) into `out_root`; Outcomes in the order of `videos`."""
    job = functools.partial(_prepare_one, video_root=video_root, out_root=out_root, options=options)
    return run_per_video(job, videos, workers, progress, "preparing videos")


def write_video_list(path, entries, outcomes, options=EncodeOptions()):
    """`<file> <label>` of the prepared file of every (video, label) entry that did not fail."""
    lines = [f"{prepared_name(video, options)} {label}" for (video, label), outcome in zip(entries, outcomes)
             if outcome.status != "failed"]
    write_list(path, lines)
    return len(lines)


def parse_args(argv=None):
    parser = ProgramParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="a folder of videos or a video list `<file> <label>`")
    parser.add_argument("--out", type=Path, required=True, help="root of the prepared videos")
    parser.add_argument("--video-root", type=Path, help="folder the paths of a video list are relative to")
    parser.add_argument("--video-list", type=Path, help="write the prepared `<file> <label>` list here (needs a list)")
    parser.add_argument("--short-side", type=int, default=256,
                        help="resize the shorter side to this (default: %(default)s); 0 keeps it")
    parser.add_argument("--codec", choices=tuple(CONTAINERS), default="mjpeg",
                        help="mjpeg: every frame a keyframe, fastest to train from (default); h264: smaller files")
    parser.add_argument("--keyframe-seconds", type=float, default=1.0,
                        help="h264: seconds between keyframes (default: %(default)s; shorter: faster seeking, larger)")
    parser.add_argument("--quality", type=int, default=0,
                        help="mjpeg qmax (default 4) or x264 crf (default 20); lower is better and larger")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="processes (default: one per CPU)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if not args.source.exists():
        parser.error(f"source {args.source} does not exist")
    if args.source.is_file() and args.video_root is None:
        parser.error("--video-root is required when the source is a video list")
    if args.video_list and not args.source.is_file():
        parser.error("--video-list needs a video list as the source (the labels come from it)")
    if args.keyframe_seconds <= 0:
        parser.error("--keyframe-seconds must be positive")
    return args


def main(argv=None):
    """Returns the exit status: 0 when every video is done, 1 when some failed."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    entries, videos, video_root = source_videos(args.source, args.video_root)
    options = EncodeOptions(args.short_side, args.codec, args.keyframe_seconds, args.quality)
    outcomes = prepare_all(videos, video_root, args.out, options, args.workers, not args.no_progress)
    counts = log_outcomes(outcomes, "prepared")
    if args.video_list:
        logger.info("video list %s: %d lines", args.video_list, write_video_list(args.video_list, entries, outcomes,
                                                                             options))
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(run_program(main))
