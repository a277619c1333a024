"""Generate the synthetic demo dataset (JPEG frame folders, H.264 MP4s, train/val lists, labels.csv).

    python tools/make_demo_data.py [--out .cache/demo_data] [--num-per-class 48] [--seed 0]

Does nothing when a finished dataset with the same settings is already in --out (use --force to redo).

    python tools/make_demo_data.py --long_video long.mp4 [--long_classes "moving left,growing"] [--repeats 2]

writes instead one untrimmed video for tools/predict.py --timeline: one clip of each class (default all
eight, in label order) played --repeats times, class after class; it prints where each class is.
"""
import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.synthetic import (CLASS_NAMES, DEFAULT_ROOT, FPS, ensure_demo_dataset, generate_demo_dataset,  # noqa: E402
                                long_video_frames, write_mp4)
from utils.errors import UsageError  # noqa: E402
from utils.distributed import run_program  # noqa: E402
from utils.logger import track  # noqa: E402
from workflows.options import ProgramParser  # noqa: E402


def parse_args(argv=None):
    parser = ProgramParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_ROOT, help="output folder (default: %(default)s)")
    parser.add_argument("--num-per-class", type=int, default=48, help="clips per class (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--val-fraction", type=float, default=0.25,
                        help="share of each class's clips in the val split (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=None, help="threads (default: one per CPU)")
    parser.add_argument("--force", action="store_true", help="regenerate even if a finished dataset is there")
    parser.add_argument("--long_video", type=Path, default=None, metavar="MP4",
                        help="write only an untrimmed video of demo clips of several classes, here")
    parser.add_argument("--long_classes", default=",".join(CLASS_NAMES), metavar="NAMES",
                        help="comma-separated classes of --long_video, in order (default: all eight)")
    parser.add_argument("--repeats", type=int, default=2, help="times each class's clip plays (default 2)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress report (default: a bar on a terminal, about 10 log lines otherwise)")
    args = parser.parse_args(argv)
    if args.num_per_class < 2:
        parser.error(f"--num-per-class must be at least 2 (one train and one val clip), got {args.num_per_class}")
    if not 0 < args.val_fraction < 1:
        parser.error(f"--val-fraction must be between 0 and 1, got {args.val_fraction}")
    return args


def write_long_video(args):
    names = [name.strip() for name in args.long_classes.split(",") if name.strip()]
    unknown = [name for name in names if name not in CLASS_NAMES]
    if unknown or not names or args.repeats < 1:
        raise UsageError(f"--long_classes must name demo classes ({', '.join(CLASS_NAMES)}) and --repeats be at "
                         f"least 1; got {args.long_classes!r}, {args.repeats}")
    frames, parts = long_video_frames([CLASS_NAMES.index(name) for name in names], args.repeats, args.seed)
    write_mp4(args.long_video, frames)
    print(f"{args.long_video}: {len(frames) / FPS:.2f} s")
    for class_index, start, end in parts:
        print(f"{start / FPS:9.2f} s - {end / FPS:9.2f} s  {CLASS_NAMES[class_index]}")


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.long_video:
        return write_long_video(args)
    make = generate_demo_dataset if args.force else ensure_demo_dataset
    paths = make(args.out, num_per_class=args.num_per_class, seed=args.seed, val_fraction=args.val_fraction,
                 workers=args.workers, progress=None if args.no_progress else track)
    logging.info("frames: %s  videos: %s\nlists: %s %s %s %s\nlabels: %s", paths.frames_root, paths.videos_root,
                 paths.train_frames, paths.val_frames, paths.train_videos, paths.val_videos, paths.labels)


if __name__ == "__main__":
    run_program(main)
