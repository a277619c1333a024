"""Everything evaluation programs share: the model from a checkpoint, class texts, the test data loader."""
import logging

import clip
from datasets.build import build_dataset
from modules import VideoHeader, text_prompt
from modules.video_clip import VideoEncoder, class_features
from clip.model import load_weights
from clip import open_clip_backbone
from utils.checkpoint import MODEL_KEY, load_header_weights, read_checkpoint, trained_epoch_label
from clip.weights import WeightsMismatchError, strip_module_prefix
from modules.aim import is_aim_parameter
from modules.peft import apply_peft
from workflows.evaluation import evaluation_loader
from utils.precision import inference_weight_dtype
from workflows.options import add_override_arguments, add_program_arguments, add_view_arguments
from workflows.training import build_clip

logger = logging.getLogger(__name__)


def add_evaluation_arguments(parser, save_scores_help="write {'scores', 'labels'} here (torch.save)"):
    """The options test.py and test_zeroshot.py share (all but --config)."""
    parser.add_argument("--weights", required=True, help="BIKE checkpoint (model_best.pt / last_model.pt)")
    add_view_arguments(parser)
    parser.add_argument("--save_scores", default=None, help=save_scores_help)
    add_program_arguments(parser)
    return add_override_arguments(parser)


def load_video_model(config, weights=None, device="cpu", precision="fp32"):
    """(VideoEncoder, VideoHeader) in eval mode, their weights in the dtype of `precision`
    (inference_weight_dtype).

    With `weights` (a BIKE checkpoint) the CLIP model is sized and loaded from the checkpoint itself, so
    no OpenAI weight file is needed; without, CLIP comes from `network.arch` (zero-shot).
    """
    network = config.network
    if weights:
        checkpoint = read_checkpoint(weights)
        clip_model = checkpoint_clip(checkpoint, config, weights)
        header = VideoHeader.for_clip(network.sim_header, network.interaction, clip_model)
        load_header_weights(checkpoint, header, weights)
        logger.info("loaded %s (%s)", weights, trained_epoch_label(checkpoint))
    else:
        clip_model = build_clip(config)
        header = VideoHeader.for_clip(network.sim_header, network.interaction, clip_model)
    dtype = inference_weight_dtype(precision)
    encoder = VideoEncoder(clip_model).to(device, dtype).eval()
    return encoder, header.to(device, dtype).eval()


def checkpoint_clip(checkpoint, config, path):
    """The CLIP model of a BIKE checkpoint, its weights loaded.

    OpenAI's is sized from the weights. An open_clip model is rebuilt (no download) from the arch and
    pretrained tag the checkpoint's config records (else the given config's), then loaded strictly. AIM
    adapters (a network.peft aim run's) are added as the checkpoint's config records them before loading; a
    LoRA run's checkpoint holds merged weights and loads as any other.
    """
    network = config.network
    recorded_config = checkpoint.get("config") or {}
    recorded = recorded_config.get("network") or {}
    arch = recorded.get("arch") or network.arch
    state = strip_module_prefix(checkpoint[MODEL_KEY])
    num_frames = config.data.num_segments * config.data.seg_length
    if not open_clip_backbone.is_open_clip_arch(arch):
        model = clip.build_model({k: v for k, v in state.items() if not is_aim_parameter(k)}, num_frames=num_frames,
                                 joint_st=network.joint_st)
    else:
        if arch != network.arch:
            logger.warning("%s was trained from %s, not network.arch %s: building %s", path, arch, network.arch,
                           arch)
        model = open_clip_backbone.load(arch, recorded.get("pretrained", network.pretrained), load_weights=False)
    if recorded.get("peft") == "aim":
        data = recorded_config.get("data") or {}
        trained_frames = data.get("num_segments", 8) * data.get("seg_length", 1)
        if trained_frames != num_frames:
            raise WeightsMismatchError(f"{path} has AIM adapters trained on clips of {trained_frames} frames, whose "
                                       f"temporal attention needs the same here: set data.num_segments x "
                                       f"data.seg_length to {trained_frames} (it is {num_frames})")
        apply_peft(model, recorded, num_frames)
    load_weights(model, state, what=f"'{MODEL_KEY}' of {path}")
    return model


def class_texts(encoder, class_names, device, autocast):
    """EOT and token features of the prompted class names (by the model's own tokenizer)."""
    with autocast():
        return class_features(encoder, text_prompt(class_names, tokenizer=encoder.tokenize).to(device))


def test_loader(config, ctx, test_crops, test_clips, dense):
    dataset = build_dataset(config, "test", test_crops=test_crops, test_clips=test_clips, dense=dense)
    return evaluation_loader(dataset, config.data.batch_size, config.data.workers, ctx.rank, ctx.world_size,
                             device=ctx.device)
