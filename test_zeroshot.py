"""Zero-shot evaluation: `python test_zeroshot.py --config CFG --weights CKPT [options] [key=value ...]`.

By default the published protocol (the original test_zeroshot.py's, which gives the paper's figures):
per-frame CLIP embeddings of the fine-tuned image encoder against the normalised class embeddings, a
softmax per frame, averaged; the video header is not used. Prints `Full-classes: Top1 X% Top5 Y%` and
the half-class protocol (10 random halves of the classes, seeds 0..9) as
`Half-classes: Top1 mean A% std B%, Top5 mean C% std D%`. `--scoring video` scores with the whole model
as test.py does and prints under `Video-level scores, ...` labels instead. Several label/list splits are
evaluated in one run by repeating --config (e.g. Kinetics-600's three 160-class splits:
--config configs/k600/k600_zero_shot_split1.yaml --config ...split2.yaml --config ...split3.yaml,
with --scoring video for the figures the original README publishes for them); each
split is reported, then the full-class mean and std over the splits. Overrides apply to every config.
Runs under torchrun too.
"""
import argparse
import logging
from pathlib import Path

from utils.checkpoint import save_atomically
from utils.config import check_file_lists
from utils.distributed import run_program
from utils.logger import counted
from workflows.inference import add_evaluation_arguments, class_texts, load_video_model, test_loader
from workflows.options import ProgramParser, add_config_argument
from workflows.startup import start_program
from workflows.zeroshot import (SCORINGS, averaged_softmax, predict_logits, splits_summary, units_per_video,
                                zero_shot_result)

logger = logging.getLogger(__name__)


def parse_args(argv=None):
    parser = ProgramParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_argument(parser, action="append", help="config of one label/list split; repeat it for several splits")
    parser.add_argument("--scoring", choices=SCORINGS, default=SCORINGS[0],
                        help="frames (default): the published protocol, the original test_zeroshot.py's per-frame "
                             "CLIP scores without the video header; video: the model's video-level scores, as "
                             "test.py (printed under other labels)")
    add_evaluation_arguments(parser, save_scores_help="write {'scores', 'labels', 'logits'} here (torch.save); "
                                                      "with several splits FILE.splitN.pt for split N")
    return parser.parse_args(argv)


def scores_path(path: str, split: int, num_splits: int) -> str:
    if num_splits == 1:
        return path
    path = Path(path)
    return str(path.with_name(f"{path.stem}.split{split}{path.suffix or '.pt'}"))


def evaluate_split(config_path, config, run):
    """(logits [N, K, C], labels) of one config's list, scored against its class names."""
    args, ctx, autocast = run.args, run.ctx, run.autocast
    check_file_lists(config, "test_zeroshot.py")
    # Before the data: a bad checkpoint fails fast.
    encoder, header = load_video_model(config, args.weights, ctx.device, run.precision)
    crops = args.test_crops or config.data.test_crops
    clips = args.test_clips or config.data.test_clips
    loader = test_loader(config, ctx, crops, clips, args.dense or config.data.dense)
    logger.info("%s: %s x %s x %s, %s, %s; precision %s", config_path, counted(len(loader.dataset), "video"),
                counted(clips, "clip"), counted(crops, "crop"), counted(loader.dataset.num_classes, "class", "classes"),
                run.processes, run.precision_label)
    eot, tokens = class_texts(encoder, loader.dataset.class_names, ctx.device, autocast)
    return predict_logits(encoder, header, loader, eot, tokens, ctx.device, autocast, views=crops * clips,
                          units=units_per_video(config, crops * clips, args.scoring), scoring=args.scoring,
                          progress=run.show_progress)


def main(argv=None):
    args = parse_args(argv)
    # Every split's config, its files checked, before anything is built.
    run = start_program(args, ("data.val_list", "data.label_list"), given_files={"weights": args.weights})
    ctx, results = run.ctx, []
    for split, (config_path, config) in enumerate(zip(args.config, run.config), start=1):
        logits, labels = evaluate_split(config_path, config, run)
        results.append(zero_shot_result(logits, labels))
        if not ctx.is_main:
            continue
        if len(args.config) > 1:
            print(f"Split {split}/{len(args.config)}: {config_path}", flush=True)
        print(results[-1].summary(args.scoring), flush=True)
        if args.save_scores:
            path = scores_path(args.save_scores, split, len(args.config))
            save_atomically({"scores": averaged_softmax(logits), "labels": labels, "logits": logits}, path)
            logger.info("scores saved to %s", path)
    if len(results) > 1 and ctx.is_main:
        print(splits_summary(results, args.scoring), flush=True)
    return results


if __name__ == "__main__":
    run_program(main)
