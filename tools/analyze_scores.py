"""Per-class accuracy, largest confusions and a confusion-matrix picture from test.py's saved scores.

    python tools/analyze_scores.py scores.pt --classes lists/ucf101/ucf_labels.csv [--out confusion.png]
        [--table per_class.csv] [--top 10]
"""
import argparse
import csv
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.annotations import load_class_names  # noqa: E402
from utils.distributed import run_program  # noqa: E402
from workflows.score_analysis import analyse, describe, load_scores, plot_confusion  # noqa: E402
from workflows.options import ProgramParser  # noqa: E402


def main(argv=None):
    parser = ProgramParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scores", help="file written by test.py --save_scores")
    parser.add_argument("--classes", required=True, help="labels CSV (id,name) of the evaluated list")
    parser.add_argument("--out", default=None, help="confusion-matrix PNG")
    parser.add_argument("--table", default=None, help="per-class accuracy as CSV (class, videos, accuracy)")
    parser.add_argument("--top", type=int, default=10, help="largest confusions to list")
    parser.add_argument("--title", default=None,
                        help="the picture's title (default: the weights and video list test.py recorded, top-1)")
    args = parser.parse_args(argv)
    saved = load_scores(args.scores)
    analysis = analyse(saved["scores"], saved["labels"], load_class_names(args.classes))
    videos = analysis.confusion.sum(1).tolist()
    accuracy = analysis.per_class_accuracy.tolist()
    print(f"{'class':<40} {'videos':>7} {'top-1':>7}")
    for name, count, value in sorted(zip(analysis.class_names, videos, accuracy), key=lambda row: row[2]):
        print(f"{name:<40} {count:>7} {value:>6.1f}%")
    print("\nlargest confusions (true -> predicted: videos):")
    for true, predicted, count in analysis.top_confusions(args.top):
        print(f"  {true} -> {predicted}: {count}")
    if args.table:
        with open(args.table, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["class", "videos", "top1"])
            writer.writerows(zip(analysis.class_names, videos, [f"{v:.2f}" for v in accuracy]))
    if args.out:
        plot_confusion(analysis, args.out, args.title or describe(saved, args.scores, analysis))
        print(f"confusion matrix written to {args.out}")
    return analysis


if __name__ == "__main__":
    run_program(main)
