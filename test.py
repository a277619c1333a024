"""Multi-view evaluation of a trained model: `python test.py --config CFG --weights CKPT [options] [key=value ...]`.

Prints `Overall Prec@1 X% Prec@5 Y%` (and mAP for ActivityNet and multi-label data); runs under torchrun too.
"""
import logging

from utils.checkpoint import save_atomically
from utils.distributed import run_program
from utils.logger import counted
from workflows.attributes_branch import fused_evaluation, load_attributes_branch
from workflows.evaluation import predict, score_metrics
from workflows.fusion import DEFAULT_FUSION_WEIGHTS
from workflows.inference import add_evaluation_arguments, class_texts, load_video_model, test_loader
from utils.errors import check_output_folders
from workflows.options import ProgramParser, add_config_argument
from workflows.startup import start_program

logger = logging.getLogger(__name__)


def parse_args(argv=None):
    parser = ProgramParser(description=__doc__)
    add_config_argument(parser)
    parser.add_argument("--fusion_weights", type=float, nargs=2, default=DEFAULT_FUSION_WEIGHTS,
                        metavar=("VIDEO", "ATTRIBUTES"), help="weights of the fused scores of a train_co.py checkpoint "
                        "or of --attributes_weights (with data.attributes_val_path); default 0.7 0.3")
    parser.add_argument("--attributes_weights", default=None, metavar="FILE",
                        help="checkpoint of the original train_attributes.py: its CLIP text tower and attributes head "
                             "score data.attributes_val_path, fused with the video branch of --weights")
    return add_evaluation_arguments(parser).parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    attributes_keys = ("data.attributes_val_path",) if args.attributes_weights else ()
    check_output_folders(save_scores=args.save_scores)
    run = start_program(args, ("data.val_list", "data.label_list") + attributes_keys,
                        given_files={"weights": args.weights, "attributes_weights": args.attributes_weights})
    ctx, config, precision, autocast = run.ctx, run.config, run.precision, run.autocast
    attributes_branch = load_attributes_branch(args.attributes_weights, ctx.device) if args.attributes_weights else None
    crops = args.test_crops or config.data.test_crops
    clips = args.test_clips or config.data.test_clips
    # A checkpoint that does not fit fails here.
    encoder, header = load_video_model(config, args.weights, ctx.device, precision)
    loader = test_loader(config, ctx, crops, clips, args.dense or config.data.dense)
    logger.info("%s x %s x %s, %s; precision %s", counted(loader.dataset.list_size, "video"), counted(clips, "clip"),
                counted(crops, "crop"), run.processes, run.precision_label)

    eot, tokens = class_texts(encoder, loader.dataset.class_names, ctx.device, autocast)
    scores, labels = predict(encoder, header, loader, eot, tokens, ctx.device, autocast, run.show_progress)
    # mAP: on the original's scores and conventions; multi-label data also gets the original's printed
    # running-average figure, which depends on the batch size and the number of processes.
    result = score_metrics(scores, labels, with_map=str(config.data.dataset).lower().startswith("anet"),
                           original_batches=(config.data.batch_size, ctx.world_size))
    # Attributes branch: from --attributes_weights, or the checkpoint's own head (train_co.py); then fused.
    fusion = fused_evaluation(encoder, args.weights, config, loader.dataset, scores, labels, ctx, autocast,
                              args.fusion_weights, attributes_branch)
    if ctx.is_main:
        print(result.summary(), flush=True)
        if fusion:
            print(fusion.summary(), flush=True)
        if args.save_scores:
            extra = {"attributes_scores": fusion.attributes.scores, "fused_scores": fusion.fused.scores} if fusion else {}
            inputs = {"weights": args.weights, "video_list": config.data.val_list}  # for the tools' titles
            save_atomically({"scores": scores, "labels": labels, **inputs, **extra}, args.save_scores)
            logger.info("scores saved to %s", args.save_scores)
    return result


if __name__ == "__main__":
    run_program(main)
