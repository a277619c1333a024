"""Generate attributes: the top-k lexicon phrases of every video of a list, as the attributes branch reads them.

    python tools/generate_attributes.py --config CFG --split train [--weights CKPT] [--lexicon classes ...]
    bash scripts/generate_attributes.sh CFG --split val ...        # torchrun, one process per GPU

Each video's sampled frames are encoded by CLIP and scored against every phrase of the lexicons (prompted
"This is a video about {phrase}"). Without --weights the retriever is zero-shot CLIP `network.arch`
(pretrained weights; the frame embeddings are averaged and normalised); with --weights, a trained BIKE
checkpoint with its own video header. The output (default: data.attributes_<split>_path) is JSON in the
original layout, `{"<video>": {"classname_topk": [...], "classname_topk_scores": [...]}}`. It is saved
every --save_every videos; running the same command again after an interruption skips the videos done.
"""
import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.build import build_dataset  # noqa: E402
from modules import VideoHeader  # noqa: E402
from modules.video_clip import VideoEncoder  # noqa: E402
from utils.config import ConfigError, check_file_lists, check_files  # noqa: E402
from utils.distributed import run_program  # noqa: E402
from utils.errors import check_given_files  # noqa: E402
from utils.precision import inference_weight_dtype  # noqa: E402
from workflows.attribute_generation import CLASS_LEXICON, generate_attributes, read_lexicon  # noqa: E402
from workflows.inference import load_video_model  # noqa: E402
from workflows.options import (ProgramParser, add_config_argument, add_override_arguments,  # noqa: E402
                               add_program_arguments, add_view_arguments, positive_int)
from workflows.startup import start_program  # noqa: E402
from workflows.training import build_clip, seed_everything  # noqa: E402

logger = logging.getLogger(__name__)


def parse_args(argv=None):
    parser = ProgramParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_argument(parser, help="YAML config: data settings, labels, network.arch")
    parser.add_argument("--split", choices=("train", "val"), default="val",
                        help="which list of the config (data.<split>_list, data.<split>_root); default val")
    parser.add_argument("--list", default=None, help="another list instead (with --root)")
    parser.add_argument("--root", default=None, help="folder the --list paths are relative to")
    parser.add_argument("--output", default=None, help="JSON file (default: data.attributes_<split>_path)")
    parser.add_argument("--weights", default=None,
                        help="a trained BIKE checkpoint as the retriever (default: zero-shot CLIP network.arch)")
    parser.add_argument("--lexicon", action="append", default=None,
                        help=f"'{CLASS_LEXICON}' (the class names, default), a labels CSV or a text file with one "
                             "phrase per line; repeat to combine several")
    parser.add_argument("--topk", type=positive_int, default=5, help="phrases kept per video (default 5)")
    parser.add_argument("--batch_size", type=positive_int, default=None,
                        help="videos per batch (default data.batch_size)")
    parser.add_argument("--save_every", type=positive_int, default=256, help="videos between saves (default 256)")
    add_view_arguments(parser)
    add_program_arguments(parser)
    add_override_arguments(parser, example="network.arch=ViT-L/14")
    return parser.parse_args(argv)


def load_retriever(config, weights, device, precision):
    """(VideoEncoder, header) with weights in the dtype of `precision`: a BIKE checkpoint with its header, or
    zero-shot CLIP with mean pooling."""
    if weights:
        return load_video_model(config, weights, device, precision)
    clip_model = build_clip(config)
    if not config.network.init:
        logger.warning("network.init is off: zero-shot attributes from a CLIP that is not pretrained are noise")
    header = VideoHeader("None", "DP", embed_dim=clip_model.config.embed_dim)
    dtype = inference_weight_dtype(precision)
    return VideoEncoder(clip_model).to(device, dtype).eval(), header.to(device, dtype).eval()


def select_list(config, args):
    """Points the config's evaluation list at the list to annotate; returns the output path."""
    data = config.data
    if args.list:
        data.val_list, data.val_root = args.list, args.root or ""
    elif args.split == "train":
        data.val_list, data.val_root = data.train_list, data.train_root
    output = args.output or data[f"attributes_{args.split}_path"]
    if not output:
        raise ConfigError(f"{config.source}: give --output or set data.attributes_{args.split}_path")
    return output


def main(argv=None):
    args = parse_args(argv)
    run = start_program(args, given_files={"list": args.list, "weights": args.weights})
    ctx, config, precision = run.ctx, run.config, run.precision
    output = select_list(config, args)
    check_files(config, ("data.val_list", "data.label_list"))
    check_file_lists(config, "tools/generate_attributes.py")
    for lexicon in args.lexicon or []:
        check_given_files(lexicon=None if lexicon == CLASS_LEXICON else lexicon)
    logger.info("precision %s", run.precision_label)
    dataset = build_dataset(config, "test", test_crops=args.test_crops or config.data.test_crops,
                            test_clips=args.test_clips or config.data.test_clips, dense=args.dense or None)
    phrases = read_lexicon(args.lexicon or [CLASS_LEXICON], dataset.class_names)
    seed_everything(config.seed)  # the same model in every process, even a randomly initialised one
    encoder, header = load_retriever(config, args.weights, ctx.device, precision)
    entries = generate_attributes(encoder, header, dataset, phrases, output, topk=args.topk,
                                  batch_size=args.batch_size or config.data.batch_size, workers=config.data.workers,
                                  device=ctx.device, autocast=run.autocast, save_every=args.save_every, rank=ctx.rank,
                                  world_size=ctx.world_size, progress=run.show_progress)
    if ctx.is_main:
        logger.info("attributes of %d videos written to %s", len(entries), output)
    return entries


if __name__ == "__main__":
    run_program(main)
