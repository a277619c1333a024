"""Training curves of a run as one PNG: loss (per logged step and per-epoch mean), learning rate, and
validation top-1/top-5 or mAP, read from the run folder's log.txt.

    python tools/plot_curves.py RUN_FOLDER [--out curves.png]
"""
import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workflows.curves import plot_curves, read_run  # noqa: E402
from utils.distributed import run_program  # noqa: E402
from workflows.options import ProgramParser  # noqa: E402

logger = logging.getLogger(__name__)


def parse_args(argv=None):
    parser = ProgramParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_folder", type=Path, help="a run folder of train.py (holding log.txt)")
    parser.add_argument("--out", type=Path, default=None, help="the PNG to write (default: RUN_FOLDER/curves.png)")
    return parser.parse_args(argv)


def main(argv=None) -> Path:
    args = parse_args(argv)
    curves = read_run(args.run_folder)
    out = args.out or args.run_folder / "curves.png"
    plot_curves(curves, out, title=str(args.run_folder))
    logger.info("%d epochs, %d validations: curves in %s", len(curves.epoch_loss.x),
                max(len(curves.top1.x), len(curves.mean_ap.x)), out)
    return out


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run_program(main)
