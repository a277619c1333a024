"""Export a trained model as one file that runs without this project (ONNX for onnxruntime, or torch.export).

    python tools/export.py --config CFG [--weights CKPT] --frame_size HEIGHTxWIDTH --out model.onnx|model.pt2
        [--classes labels.csv|classes.txt|"a,b,c"] [--test_clips N] [--test_crops K] [--precision fp32|fp16|bf16]

The file takes uint8 RGB frames [batch, test_clips x frames per clip, HEIGHT, WIDTH, 3] and returns test.py's
class scores [batch, classes] and the VCS temporal saliency [batch, classes, frames]; it resizes, crops
and normalises itself, and holds the class text features (no tokenizer at run time). Its metadata
(classes, views, sizes, source checkpoint) is printed at the end. Without --weights: zero-shot CLIP of
network.arch. After writing, the file is loaded and its outputs are compared with the eager model's.
"""
import argparse
import logging
import re
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from utils.distributed import run_program  # noqa: E402
from utils.errors import check_given_files  # noqa: E402
from workflows.export import (PRECISIONS, build_recognizer, check_exportable, example_frames, export,  # noqa: E402
                              export_format, load_onnx, load_pt2)
from workflows.options import (ProgramParser, add_config_argument, add_override_arguments,  # noqa: E402
                               add_precision_argument, add_view_arguments)
from workflows.prediction import parse_class_names  # noqa: E402
from workflows.startup import load_program_config  # noqa: E402

logger = logging.getLogger(__name__)


def frame_size(text):
    """'240x320' -> (240, 320)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or 0 in (int(match[1]), int(match[2])):
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 240x320, got {text!r}")
    return int(match[1]), int(match[2])


def parse_args(argv=None):
    parser = ProgramParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_argument(parser)
    parser.add_argument("--weights", default=None, help="BIKE checkpoint; default: zero-shot CLIP of network.arch")
    parser.add_argument("--out", required=True, help="the file to write: .onnx (onnxruntime) or .pt2 (torch.export)")
    parser.add_argument("--frame_size", type=frame_size, required=True, metavar="HEIGHTxWIDTH",
                        help="size of the decoded frames the file takes (resize other videos to it before)")
    parser.add_argument("--classes", default=None,
                        help="labels CSV, text file (a name a line) or comma-separated names; default data.label_list")
    add_view_arguments(parser, dense_help="record dense (I3D-style) sampling in the metadata")
    add_precision_argument(parser, choices=tuple(PRECISIONS), default="fp32",
                           help="weights and compute of the file (bf16: .pt2 only)")
    parser.add_argument("--attributes_weights", default=None, metavar="FILE",
                        help="not exportable: named so that the program says why")
    add_override_arguments(parser, positional=False)
    return parser.parse_args(argv)


def check_file(recognizer, path):
    """Loads the written file as its users will and logs how far its outputs are from the eager model's."""
    frames = example_frames(recognizer.metadata)
    with torch.no_grad():
        expected = recognizer(frames)
        if export_format(path) == "onnx":
            session, _ = load_onnx(path)
            outputs = [torch.from_numpy(array) for array in session.run(None, {"frames": frames.numpy()})]
        else:
            module, _ = load_pt2(path)
            outputs = module(frames)
    differences = [(got - want).abs().max().item() for got, want in zip(outputs, expected)]
    logger.info("checked %s on random frames: max |difference| to the eager model: scores %.2g, saliency %.2g",
                path, *differences)


def run(args):
    config = load_program_config(args)
    export_format(args.out, args.precision)
    check_exportable(config, args.attributes_weights)
    check_given_files(weights=args.weights)
    class_names = parse_class_names(args.classes or config.data.label_list)
    recognizer = build_recognizer(config, args.weights, class_names, args.frame_size, args.test_clips,
                                  args.test_crops, args.dense or None, args.precision)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    export(recognizer, args.out)
    check_file(recognizer, args.out)
    print(recognizer.metadata.to_json())
    logger.info("wrote %s", args.out)
    return recognizer


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run(parse_args(argv))


if __name__ == "__main__":
    run_program(main)
