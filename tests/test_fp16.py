"""--precision fp16 is amp: float32 weights, fp16 autocast and loss scaling, so CLIP's small learning rates
still move the weights (AdamW on float16 weights rounds such updates to zero)."""
import copy

import pytest
import torch

import train
from utils.config import load_config
from utils.solver import build_optimizer
from workflows.training import ClassTexts, autocast_for, resolve_precision, train_one_epoch
from modules import text_prompt
from modules.video_clip import VideoEncoder


def test_fp16_means_amp_on_a_gpu_and_is_refused_on_the_cpu():
    assert resolve_precision("fp16", torch.device("cuda", 0)) == "amp"
    with pytest.raises(ValueError, match="needs a GPU"):
        resolve_precision("fp16", torch.device("cpu"))


def test_fp16_training_computes_in_float16_and_moves_float32_weights_at_the_configs_learning_rate(tiny_config):
    config = load_config(tiny_config.write(solver={"lr": 5e-6, "lr_warmup_step": 0}))
    cpu = torch.device("cpu")
    precision = resolve_precision("fp16", torch.device("cuda"))  # what the mode means, run here on the CPU
    autocast = autocast_for(precision, cpu)
    clip_model, header = train.build_models(config, cpu)
    before = copy.deepcopy(clip_model.visual.state_dict())
    encoder = VideoEncoder(clip_model)
    texts = ClassTexts.build(encoder, text_prompt([f"class {i}" for i in range(4)]), False, cpu, autocast)
    output_dtypes = set()
    clip_model.visual.transformer.register_forward_hook(lambda module, inputs, output: output_dtypes.add(output.dtype))
    optimizer = build_optimizer(config.solver, clip_model, [header])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    generator = torch.Generator().manual_seed(0)
    loader = [(torch.randint(0, 256, (4, 4, 3, 32, 32), dtype=torch.uint8, generator=generator), torch.arange(4))
              for _ in range(3)]
    scaler = torch.amp.GradScaler("cpu")
    train_one_epoch(encoder, header, loader, optimizer, scheduler, scaler, texts, config, 0, cpu, autocast,
                    show_progress=False)

    assert output_dtypes == {torch.float16}
    after = clip_model.visual.state_dict()
    linear_weights = [name for name, module in clip_model.visual.named_modules() if isinstance(module, torch.nn.Linear)]
    assert linear_weights
    for name in linear_weights:
        weight = after[f"{name}.weight"]
        assert weight.dtype == torch.float32
        changed = (weight != before[f"{name}.weight"]).float().mean().item()
        assert changed > 0.9, f"{name}: only {changed:.0%} of the weights moved"
