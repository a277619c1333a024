"""Generate the synthetic demo dataset (JPEG frame folders, H.264 MP4s, train/val lists, labels.csv).

    python tools/make_demo_data.py [--out .cache/demo_data] [--num-per-class 48] [--seed 0]

Does nothing when a finished dataset with the same settings is already in --out (use --force to redo).
"""
import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.synthetic import DEFAULT_ROOT, ensure_demo_dataset, generate_demo_dataset  # noqa: E402
from utils.distributed import run_program  # noqa: E402
from utils.logger import track  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_ROOT, help="output folder (default: %(default)s)")
    parser.add_argument("--num-per-class", type=int, default=48, help="clips per class (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--val-fraction", type=float, default=0.25,
                        help="share of each class's clips in the val split (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=None, help="threads (default: one per CPU)")
    parser.add_argument("--force", action="store_true", help="regenerate even if a finished dataset is there")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress report (default: a bar on a terminal, about 10 log lines otherwise)")
    args = parser.parse_args(argv)
    if args.num_per_class < 2:
        parser.error(f"--num-per-class must be at least 2 (one train and one val clip), got {args.num_per_class}")
    if not 0 < args.val_fraction < 1:
        parser.error(f"--val-fraction must be between 0 and 1, got {args.val_fraction}")
    return args


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    make = generate_demo_dataset if args.force else ensure_demo_dataset
    paths = make(args.out, num_per_class=args.num_per_class, seed=args.seed, val_fraction=args.val_fraction,
                 workers=args.workers, progress=None if args.no_progress else track)
    logging.info("frames: %s  videos: %s\nlists: %s %s %s %s\nlabels: %s", paths.frames_root, paths.videos_root,
                 paths.train_frames, paths.val_frames, paths.train_videos, paths.val_videos, paths.labels)


if __name__ == "__main__":
    run_program(main)
