"""Convert official annotations into BIKE's lists (labels CSV + video or frame lists); see lists/README.md.

    python tools/convert_annotations.py ucf101 ucfTrainTestlist --out lists/ucf101 [--frames-root FRAMES]
    python tools/convert_annotations.py hmdb51 testTrainMulti_7030_splits --out lists/hmdb51 [--frames-root FRAMES]
    python tools/convert_annotations.py kinetics train.csv validate.csv --out lists/k400 [--frames-root FRAMES]
    python tools/convert_annotations.py charades Charades_v1_train.csv --classes Charades_v1_classes.txt \\
        --out lists/charades

Without --frames-root the lists are video lists (`<file> <label>`); with it, frame lists
(`<dir> <num_frames> <label>`) whose frames are counted in the folders tools/extract_frames.py made.
"""
import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.annotations import convert_charades, convert_hmdb51, convert_kinetics, convert_ucf101  # noqa: E402
from tools.annotations.kinetics import DEFAULT_NAME_FORMAT  # noqa: E402
from utils.distributed import run_program  # noqa: E402
from workflows.options import ProgramParser  # noqa: E402


def _add_list_options(parser):
    parser.add_argument("--out", type=Path, required=True, help="folder for the lists and the labels CSV")
    parser.add_argument("--frames-root", type=Path,
                        help="root of extracted frame folders: write frame lists with counted frames")
    parser.add_argument("--skip-missing", action="store_true",
                        help="with --frames-root: leave out videos without frames instead of failing")


def parse_args(argv=None):
    parser = ProgramParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="dataset", required=True)

    ucf = commands.add_parser("ucf101", help="classInd.txt, trainlist0k.txt, testlist0k.txt")
    ucf.add_argument("annotations", type=Path, help="the ucfTrainTestlist folder")
    ucf.add_argument("--splits", type=int, nargs="+", default=[1, 2, 3], help="default: 1 2 3")
    _add_list_options(ucf)

    hmdb = commands.add_parser("hmdb51", help="<class>_test_split<k>.txt files")
    hmdb.add_argument("annotations", type=Path, help="the testTrainMulti_7030_splits folder")
    hmdb.add_argument("--splits", type=int, nargs="+", default=[1, 2, 3], help="default: 1 2 3")
    _add_list_options(hmdb)

    kinetics = commands.add_parser("kinetics", help="label,youtube_id,time_start,time_end,split CSVs")
    kinetics.add_argument("csv", type=Path, nargs="+", help="official CSVs (train.csv, validate.csv, ...)")
    kinetics.add_argument("--classes", type=Path,
                          help="an existing `id,name` labels CSV fixing the class ids (default: sorted labels)")
    kinetics.add_argument("--name-format", default=DEFAULT_NAME_FORMAT,
                          help="video file name; fields youtube_id, time_start, time_end, label, split "
                               "(default: %(default)s)")
    _add_list_options(kinetics)

    charades = commands.add_parser("charades", help="Charades_v1_train.csv to one row per action instance")
    charades.add_argument("csv", type=Path, help="Charades_v1_train.csv")
    charades.add_argument("--classes", type=Path, required=True, help="Charades_v1_classes.txt")
    charades.add_argument("--out", type=Path, required=True, help="output folder")
    charades.add_argument("--name", default="Charades_train_split_label.csv", help="output file (default: %(default)s)")
    return parser.parse_args(argv)


def convert(args):
    """Run the converter the arguments name; returns the written paths."""
    if args.dataset == "charades":
        return convert_charades(args.csv, args.classes, args.out, args.name)
    lists = dict(frames_root=args.frames_root, skip_missing=args.skip_missing)
    if args.dataset == "ucf101":
        return convert_ucf101(args.annotations, args.out, tuple(args.splits), **lists)
    if args.dataset == "hmdb51":
        return convert_hmdb51(args.annotations, args.out, tuple(args.splits), **lists)
    return convert_kinetics(args.csv, args.out, args.classes, args.name_format, **lists)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    for path in convert(args):
        logging.info("wrote %s", path)


if __name__ == "__main__":
    run_program(main)
