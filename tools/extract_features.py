"""Extract features of every video of a list: CLIP frame embeddings and the model's video embeddings per view.

    python tools/extract_features.py --config CFG [--weights CKPT] --out DIR [--list LIST --root ROOT | --inputs INPUT ...]
        [--test_clips N] [--test_crops K] [--dense] [--float16] [--shard_size 256] [--skip_unreadable]
    torchrun --nproc_per_node=G tools/extract_features.py ...        # one process per GPU, no shared disk needed

The list (default data.val_list under data.val_root; frame folders or video files, the project's list
formats), or the video files / frame folders / folders of videos of --inputs (as tools/predict.py takes
them; no labels), is read and sampled exactly as test.py reads it, with the same views. Without --weights the model
is zero-shot CLIP network.arch with the configured header. DIR receives extraction.json (settings),
shard-NNNNN.safetensors (tensors frames, temporal [N, views, T, D] and, for the DP interaction, pooled
[N, views, D]) and index.csv (path, label, shard, row, views, frames, error). Running the same command
again after an interruption computes only the shards that are missing.
"""
import argparse
import logging
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from datasets.build import build_dataset  # noqa: E402
from utils.config import check_file_lists, check_files  # noqa: E402
from utils.distributed import run_program  # noqa: E402
from utils.errors import UsageError  # noqa: E402
from utils.logger import counted  # noqa: E402
from workflows.feature_extraction import (extract_features, extraction_settings, named_by_inputs,  # noqa: E402
                                          write_inputs_list)
from workflows.inference import load_video_model  # noqa: E402
from workflows.options import (ProgramParser, add_config_argument, add_override_arguments,  # noqa: E402
                               add_program_arguments, add_view_arguments, positive_int)
from workflows.startup import start_program  # noqa: E402
from workflows.training import seed_everything  # noqa: E402

logger = logging.getLogger(__name__)


def parse_args(argv=None):
    parser = ProgramParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_argument(parser)
    parser.add_argument("--weights", default=None, help="BIKE checkpoint; default: zero-shot CLIP of network.arch")
    parser.add_argument("--out", required=True, help="folder of the shards, index.csv and extraction.json")
    parser.add_argument("--list", default=None, help="video list (default data.val_list)")
    parser.add_argument("--root", default=None, help="folder the --list paths are relative to (default data.val_root)")
    parser.add_argument("--inputs", nargs="+", default=None, metavar="INPUT",
                        help="video files, frame folders or folders of videos instead of a list (no labels)")
    add_view_arguments(parser, dense_help="dense (I3D-style) sampling")
    parser.add_argument("--float16", action="store_true", help="store the features as float16 (default float32)")
    parser.add_argument("--shard_size", type=positive_int, default=256, help="videos per shard (default 256)")
    parser.add_argument("--batch_size", type=positive_int, default=None,
                        help="videos per batch (default data.batch_size)")
    parser.add_argument("--skip_unreadable", action="store_true",
                        help="record an unreadable video in the index (its error) and go on, instead of stopping")
    add_program_arguments(parser)
    add_override_arguments(parser, example="data.num_segments=16")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    run = start_program(args, given_files={"weights": args.weights, "list": args.list, "root": args.root})
    ctx, config, precision = run.ctx, run.config, run.precision
    if args.list and args.inputs:
        raise UsageError("give --list or --inputs, not both")
    data = config.data
    scratch = tempfile.TemporaryDirectory(prefix="extract-inputs-")  # this process's list of --inputs
    if args.inputs:
        data.val_list = str(write_inputs_list(args.inputs, Path(scratch.name) / "inputs.txt", data.image_tmpl,
                                              data.index_bias))
        data.val_root, data.modality = "", None
    elif args.list:
        data.val_list, data.val_root = args.list, args.root or ""
    check_files(config, ("data.val_list", "data.label_list"))
    check_file_lists(config, "tools/extract_features.py")
    views = {"test_clips": args.test_clips or data.test_clips, "test_crops": args.test_crops or data.test_crops,
             "dense": bool(args.dense or data.dense)}
    logger.info("precision %s", run.precision_label)
    dtype = torch.float16 if args.float16 else torch.float32
    dataset = build_dataset(config, "test", test_crops=views["test_crops"], test_clips=views["test_clips"],
                            dense=views["dense"])
    if args.inputs:
        named_by_inputs(dataset)
    seed_everything(config.seed)  # the same model in every process, even a randomly initialised one
    encoder, header = load_video_model(config, args.weights, ctx.device, precision)
    settings = extraction_settings(config, args.weights, views, precision, dtype, args.shard_size)
    if args.inputs:  # the list is temporary: record what it was made of
        settings.update(video_list=None, inputs=list(args.inputs))
        settings["config"]["data"]["val_list"] = None
    count = extract_features(encoder, header, dataset, args.out, settings, shard_size=args.shard_size,
                             batch_size=args.batch_size or data.batch_size, workers=data.workers, device=ctx.device,
                             autocast=run.autocast, dtype=dtype,
                             skip_unreadable=args.skip_unreadable, rank=ctx.rank, world_size=ctx.world_size,
                             progress=run.show_progress, labelled=not args.inputs)
    scratch.cleanup()
    if ctx.is_main:
        logger.info("features of %s in %s", counted(count, "video"), args.out)
    return count


if __name__ == "__main__":
    run_program(main)
