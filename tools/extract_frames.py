"""Decode videos into JPEG frame folders (short side resized) and write the frame list.

    python tools/extract_frames.py VIDEOS_DIR --out FRAMES_DIR [--short-side 320] [--workers 8]
    python tools/extract_frames.py videos.txt --video-root VIDEOS_DIR --out FRAMES_DIR \\
        --frame-list frames.txt

The source is a folder (every video below it) or a video list (`<file> <label>` lines, paths relative to
--video-root). Video `a/b.mp4` becomes the folder `a/b` holding img_00001.jpg, img_00002.jpg, ...
Given a video list, --frame-list writes `<dir> <num_frames> <label>` lines in the list's order.

Resumable: frames are written to `<dir>.partial` and renamed when the video is done, so a finished folder
is skipped on the next run and an interrupted one is redone. Frames are written upright (rotation metadata
applied, as every reader returns them). A video that cannot be decoded is reported and left out; the others
go on, and the exit status is 1 if any failed.
"""
import argparse
import functools
import logging
import multiprocessing
import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.annotations import AnnotationError, write_list  # noqa: E402
from datasets.decoding import VIDEO_EXTENSIONS, rgb_frame  # noqa: E402
from utils.distributed import run_program  # noqa: E402
from workflows.options import ProgramParser  # noqa: E402

logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"


@dataclass(frozen=True)
class FrameOptions:
    """How frames are written. short_side 0 keeps the size; fps None keeps every frame."""

    short_side: int = 320
    fps: float = None
    image_tmpl: str = "img_{:05d}.jpg"
    start_index: int = 1
    quality: int = 90


@dataclass(frozen=True)
class Outcome:
    """What happened to one video: 'extracted', 'skipped' (already done) or 'failed' (with the error)."""

    video: str
    status: str
    num_frames: int = 0
    error: str = ""


def count_frames(folder):
    """Number of files in a frame folder."""
    return sum(1 for entry in os.scandir(folder) if entry.is_file())


def find_videos(folder):
    """Paths (relative to `folder`, sorted) of the video files below it."""
    folder = Path(folder)
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*")
                  if path.suffix.lower() in VIDEO_EXTENSIONS and path.is_file())


def read_video_list(list_file):
    """(file, label) pairs of a `<file> <label>` list; a frame count between them is tolerated."""
    entries = []
    with open(list_file, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) not in (2, 3) or not fields[-1].lstrip("-").isdigit():
                raise AnnotationError(f"{list_file}:{number}: expected `<file> <label>`, got {line.strip()!r}")
            entries.append((fields[0], int(fields[-1])))
    if not entries:
        raise AnnotationError(f"video list {list_file} is empty")
    return entries


def frame_folder_name(video):
    """The frame folder of a video: its relative path without the extension."""
    return Path(video).with_suffix("").as_posix()


def resized(width, height, short_side):
    """(width, height) with the shorter side scaled to `short_side` (0: unchanged), aspect ratio kept."""
    if not short_side:
        return width, height
    scale = short_side / min(width, height)
    return (short_side, round(height * scale)) if width <= height else (round(width * scale), short_side)


def _frame_name(options, video_id, index):
    fields = options.image_tmpl.count("{")
    return options.image_tmpl.format(video_id, index) if fields == 2 else options.image_tmpl.format(index)


def _decode_into(video_path, folder, video_id, options):
    """Write the (optionally fps-subsampled) frames of a video into `folder`; returns how many."""
    count, next_time = 0, None
    with av.open(str(video_path)) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            if options.fps and frame.time is not None:  # keep the first frame at or after each 1/fps step
                if next_time is not None and frame.time + 1e-6 < next_time:
                    continue
                next_time = (frame.time if next_time is None else next_time) + 1.0 / options.fps
            width, height = resized(frame.width, frame.height, options.short_side)
            image = Image.fromarray(np.ascontiguousarray(rgb_frame(frame, width, height, "BICUBIC").numpy()))
            image.save(folder / _frame_name(options, video_id, options.start_index + count), quality=options.quality)
            count += 1
    if count == 0:
        raise ValueError("no frames decoded")
    return count


def extract_video(video_path, folder, options=FrameOptions()):
    """Frames of one video into `folder`, via a `.partial` folder renamed at the end.

    Returns ('skipped', n) if `folder` is already finished, else ('extracted', n).
    Raises av.FFmpegError, OSError or ValueError if the video cannot be read.
    """
    folder = Path(folder)
    if folder.is_dir():
        return "skipped", count_frames(folder)
    partial = folder.with_name(folder.name + PARTIAL_SUFFIX)
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        count = _decode_into(video_path, partial, folder.name, options)
        os.replace(partial, folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)  # nothing left after the rename; the remains of an error
    return "extracted", count


def _extract_one(video, video_root, out_root, options):
    """Worker: never raises for a bad video, so one failure does not stop the others."""
    try:
        status, count = extract_video(Path(video_root) / video, Path(out_root) / frame_folder_name(video), options)
    except (av.FFmpegError, OSError, ValueError) as error:
        return Outcome(video, "failed", error=f"{type(error).__name__}: {error}")
    return Outcome(video, status, count)


def run_per_video(job, videos, workers=1, progress=True, desc="videos"):
    """Outcomes of `job(video)` for every video, in the order of `videos`, in `workers` processes, with a
    progress bar; failures are logged. `job` must be picklable and return an Outcome, never raise."""
    bar = tqdm(total=len(videos), desc=desc, unit="video", disable=not progress)
    outcomes = {}
    if workers > 1:
        # Forked workers inherit this process's thread pools without their threads: FFmpeg's conversions are
        # single-threaded (rgb_frame), and one torch thread each keeps them out of the inherited OpenMP pool.
        # The workers are the parallelism.
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                 initializer=torch.set_num_threads, initargs=(1,)) as pool:
            for future in as_completed([pool.submit(job, video) for video in videos]):
                outcome = future.result()
                outcomes[outcome.video] = outcome
                bar.update()
    else:
        for video in videos:
            outcomes[video] = job(video)
            bar.update()
    bar.close()
    for outcome in outcomes.values():
        if outcome.status == "failed":
            logger.error("failed: %s: %s", outcome.video, outcome.error)
    return [outcomes[video] for video in videos]


def extract_all(videos, video_root, out_root, options=FrameOptions(), workers=1, progress=True):
    """Extract every video (relative to `video_root`) into `out_root`; Outcomes in the order of `videos`."""
    job = functools.partial(_extract_one, video_root=video_root, out_root=out_root, options=options)
    return run_per_video(job, videos, workers, progress, "extracting frames")


def source_videos(source, video_root):
    """(the list's (video, label) entries or None, the videos, the folder they are relative to) of a
    video list or of a folder of videos."""
    if source.is_file():
        entries = read_video_list(source)
        return entries, [video for video, _ in entries], video_root
    return None, find_videos(source), source


def log_outcomes(outcomes, done):
    """Logs how many videos were `done` ('extracted', 'prepared'), already done and failed; returns the counts."""
    counts = {status: sum(o.status == status for o in outcomes) for status in (done, "skipped", "failed")}
    logger.info("%d videos: %d %s, %d already done, %d failed", len(outcomes), counts[done], done, counts["skipped"],
                counts["failed"])
    return counts


def write_frame_list(path, entries, outcomes):
    """`<dir> <num_frames> <label>` for every (video, label) entry that was extracted or already there."""
    by_video = {outcome.video: outcome for outcome in outcomes}
    lines = [f"{frame_folder_name(video)} {by_video[video].num_frames} {label}" for video, label in entries
             if by_video[video].status != "failed"]
    write_list(path, lines)
    return len(lines)


def parse_args(argv=None):
    parser = ProgramParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="a folder of videos or a video list `<file> <label>`")
    parser.add_argument("--out", type=Path, required=True, help="root of the frame folders")
    parser.add_argument("--video-root", type=Path, help="folder the paths of a video list are relative to")
    parser.add_argument("--frame-list", type=Path, help="write `<dir> <num_frames> <label>` here (needs a list)")
    parser.add_argument("--short-side", type=int, default=320, help="resize the shorter side to this; 0 keeps it")
    parser.add_argument("--fps", type=float, help="keep this many frames per second (default: every frame)")
    parser.add_argument("--image-tmpl", default="img_{:05d}.jpg",
                        help="frame file names; with two fields the first is the video's name (default: %(default)s)")
    parser.add_argument("--start-index", type=int, default=1, help="number of the first frame (default: 1)")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="processes (default: one per CPU)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.source.is_file() and args.video_root is None:
        parser.error("--video-root is required when the source is a video list")
    if args.frame_list and not args.source.is_file():
        parser.error("--frame-list needs a video list as the source (the labels come from it)")
    if not args.source.exists():
        parser.error(f"source {args.source} does not exist")
    if args.image_tmpl.count("{") not in (1, 2):
        parser.error(f"--image-tmpl needs a frame-number field, like img_{{:05d}}.jpg; got {args.image_tmpl!r}")
    return args


def main(argv=None):
    """Returns the exit status: 0 when every video is done, 1 when some failed."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    entries, videos, video_root = source_videos(args.source, args.video_root)
    options = FrameOptions(args.short_side, args.fps, args.image_tmpl, args.start_index, args.quality)
    outcomes = extract_all(videos, video_root, args.out, options, args.workers, not args.no_progress)
    counts = log_outcomes(outcomes, "extracted")
    if args.frame_list:
        written = write_frame_list(args.frame_list, entries, outcomes)
        logger.info("frame list %s: %d lines", args.frame_list, written)
    if counts["failed"]:
        logger.error("failed videos:\n%s", "\n".join(o.video for o in outcomes if o.status == "failed"))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_program(main))
