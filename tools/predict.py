"""Top classes of your own videos, with any class names (open vocabulary).

    python tools/predict.py --config CFG [--weights CKPT] INPUT [INPUT ...] [--classes labels.csv|classes.txt|"a,b,c"]
        [--test_clips N] [--test_crops K] [--topk 5] [--output results.csv|results.json] [--plot saliency.png]

INPUT: a video file, a frame folder (frames named by data.image_tmpl) or a folder of videos. Without
--weights the model is zero-shot CLIP from network.arch. Frames are sampled, cropped and scored as in
test.py, so the scores equal test.py's for the same view settings. --plot (one video) draws the sampled
frames, the VCS temporal saliency of the top-3 classes, and for the top classes test.py's score beside
the model's calibrated probability (softmax of the learnt logit scale times the cosine similarities).
--attributes_weights ATTR.pt --attributes JSON fuses the attributes branch of an original
train_attributes.py checkpoint (0.7 video + 0.3 attributes, as test.py) for inputs whose phrases the JSON
holds under the input path as given.

    python tools/predict.py --config CFG [--weights CKPT] VIDEO --timeline SECONDS [--stride SECONDS]
        [--threshold P] [--output timeline.csv|timeline.json] [--plot timeline.png]

--timeline (one video file, any length): windows of SECONDS every --stride seconds (default half a window),
each sampled and scored like a test clip, from one streaming decode of the file; prints the merged segments
(consecutive windows with the same most probable class, at least --threshold). --output writes every
window's top classes (CSV, with the segments beside it in NAME_segments.csv, or one JSON); --plot draws the
probabilities of the top classes over time under a strip of frames.
"""
import argparse
import csv
import json
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tqdm import tqdm  # noqa: E402

from datasets.decoding import VIDEO_BACKENDS, open_video  # noqa: E402
from datasets.attributes import DEFAULT_TOPK  # noqa: E402
from workflows.fusion import DEFAULT_FUSION_WEIGHTS  # noqa: E402
from utils.distributed import run_program  # noqa: E402
from utils.errors import UsageError, check_output_folders  # noqa: E402
from utils.logger import counted  # noqa: E402
from workflows.prediction import AttributesFusion, Predictor, find_inputs, parse_class_names, plot_saliency  # noqa: E402
from workflows.timeline import plot_timeline, predict_timeline, write_timeline  # noqa: E402
from workflows.options import (ProgramParser, add_config_argument, add_override_arguments,  # noqa: E402
                               add_precision_argument, add_view_arguments, positive_int)
from workflows.startup import start_program  # noqa: E402

logger = logging.getLogger(__name__)
SALIENCY_CLASSES = 3


def parse_args(argv=None):
    parser = ProgramParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_argument(parser)
    parser.add_argument("--weights", default=None, help="BIKE checkpoint; default: zero-shot CLIP of network.arch")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="video file, frame folder or folder of videos")
    parser.add_argument("--classes", default=None,
                        help="labels CSV, text file (a name a line) or comma-separated names; default data.label_list")
    add_view_arguments(parser, dense_help="dense (I3D-style) sampling")
    parser.add_argument("--topk", type=positive_int, default=5, help="classes shown per video (default 5)")
    parser.add_argument("--output", default=None, help="all class probabilities of every video: .csv or .json")
    parser.add_argument("--plot", default=None,
                        help="PNG of frames, temporal saliency, scores and calibrated probabilities (one video)")
    parser.add_argument("--attributes_weights", default=None, metavar="FILE",
                        help="checkpoint of the original train_attributes.py: fuse its attributes branch "
                             "(needs --attributes)")
    parser.add_argument("--attributes", default=None, metavar="JSON",
                        help="attribute phrases of the inputs (original layout, keyed by the INPUT paths as given)")
    parser.add_argument("--fusion_weights", type=float, nargs=2, default=DEFAULT_FUSION_WEIGHTS,
                        metavar=("VIDEO", "ATTRIBUTES"), help="weights of the fused scores; default 0.7 0.3")
    parser.add_argument("--timeline", type=float, default=None, metavar="SECONDS",
                        help="one video: windows of SECONDS sliding along it, scored, and merged into segments")
    parser.add_argument("--stride", type=float, default=None, metavar="SECONDS",
                        help="seconds between window starts (default: half the --timeline window)")
    parser.add_argument("--threshold", type=float, default=0.0, metavar="P",
                        help="windows whose best probability is below P belong to no segment (default 0)")
    parser.add_argument("--video_backend", choices=("auto",) + VIDEO_BACKENDS, default=None,
                        help="video reader (default data.video_backend: auto, TorchCodec where FFmpeg's libraries "
                             "load, else PyAV)")
    add_precision_argument(parser)
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even where a GPU exists")
    add_override_arguments(parser, positional=False)
    args = parser.parse_args(argv)
    if args.timeline is not None and args.timeline <= 0 or args.stride is not None and args.stride <= 0:
        parser.error("--timeline and --stride must be positive seconds")
    if args.stride is not None and args.timeline is None:
        parser.error("--stride goes with --timeline")
    return args


def output_format(path) -> str:
    """'csv' or 'json': the format --output names by its ending."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".csv", ".json"):
        raise UsageError(f"--output must end in .csv or .json, got {path}")
    return suffix[1:]


def write_results(predictions, class_names, path):
    path = Path(path)
    if output_format(path) == "json":
        rows = [{"video": p.path, "top": [class_names[i] for i, _ in p.top(5)],
                 "scores": dict(zip(class_names, p.scores.tolist()))} for p in predictions]
        path.write_text(json.dumps(rows, indent=1))
    else:
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["video", "top1", *class_names])
            for p in predictions:
                writer.writerow([p.path, class_names[p.top(1)[0][0]], *(f"{s:.6g}" for s in p.scores.tolist())])


def run(args):
    """Every input and file is checked (each video opened) before the model is built."""
    if args.output:
        output_format(args.output)
    check_output_folders(output=args.output, plot=args.plot)
    if bool(args.attributes_weights) != bool(args.attributes):
        raise UsageError("--attributes_weights and --attributes go together (the attributes branch and the phrases "
                         "it reads)")
    started = start_program(args, given_files={"weights": args.weights, "attributes_weights": args.attributes_weights,
                                               "attributes": args.attributes}, local=True,
                            extra_overrides=[f"data.video_backend={args.video_backend}"] if args.video_backend else [])
    config, device, precision, autocast = started.config, started.ctx.device, started.precision, started.autocast
    class_names = parse_class_names(args.classes or config.data.label_list)
    inputs = find_inputs(args.inputs, config.data.image_tmpl, config.data.index_bias)
    if args.plot and len(inputs) != 1:
        raise UsageError(f"--plot draws one video; {len(inputs)} were given")
    if args.timeline is not None and (len(inputs) != 1 or not Path(inputs[0]).is_file()):
        raise UsageError(f"--timeline runs along one video file; {', '.join(inputs)} was given")
    for path in inputs:
        if Path(path).is_file():
            open_video(path, config.data.video_backend, config.data.decode_device)
    logger.info("precision %s", started.precision_label)
    predictor = Predictor(config, class_names, args.weights, device, precision, args.test_clips, args.test_crops,
                          args.dense or None)
    fusion = AttributesFusion(args.attributes_weights, args.attributes, class_names, device, autocast,
                              config.data.select_topk_attributes or DEFAULT_TOPK,
                              args.fusion_weights) if args.attributes_weights else None
    if args.timeline is not None:
        return run_timeline(args, predictor, fusion, inputs[0])
    predictions = []
    for path in tqdm(inputs, desc="predict", disable=len(inputs) < 2):
        prediction = fusion.fuse(predictor.predict(path)) if fusion else predictor.predict(path)
        predictions.append(prediction)
        top = ", ".join(f"{class_names[i]} {p:.3f}" for i, p in prediction.top(args.topk))
        tqdm.write(f"{path}: {top}" + (" (fused with attributes)" if fusion else ""))
    if args.output:
        write_results(predictions, class_names, args.output)
        logger.info("results written to %s", args.output)
    if args.plot:
        classes = [i for i, _ in predictions[0].top(SALIENCY_CLASSES)]
        plot_saliency(predictions[0], predictor.saliency(predictions[0].frames, classes), class_names, classes,
                      args.plot)
        logger.info("plot written to %s", args.plot)
    return predictions


def run_timeline(args, predictor, fusion, video):
    timeline = predict_timeline(predictor, video, args.timeline, args.stride, fusion=fusion,
                                threshold=args.threshold, batch_size=predictor.config.data.batch_size)
    names = timeline.class_names
    print(f"{video}: {counted(len(timeline.windows), 'window')} of {timeline.window:g} s every {timeline.stride:g} s, "
          f"{counted(len(timeline.segments), 'segment')}" + (" (fused with attributes)" if fusion else ""))
    for segment in timeline.segments:
        print(f"{segment.start:9.2f} s - {segment.end:9.2f} s  {names[segment.label]}  "
              f"(mean probability {segment.probability:.3f}, {counted(segment.windows, 'window')})")
    if args.output:
        written = write_timeline(timeline, args.output, args.topk)
        logger.info("timeline written to %s", ", ".join(map(str, written)))
    if args.plot:
        plot_timeline(timeline, args.plot)
        logger.info("plot written to %s", args.plot)
    return timeline


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run(parse_args(argv))


if __name__ == "__main__":
    run_program(main)
