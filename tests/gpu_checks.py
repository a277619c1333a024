"""The Python halves of scripts/gpu_smoke.sh: checks of the GPU paths that CPU tests cannot make.

    python tests/gpu_checks.py prepare DIR                        tiny data, config, a checkpoint, in DIR
    python tests/gpu_checks.py compare-step OUT TEXT DEVICE PRECISION   rank 0's file of tests/ddp_step.py
                                                                  against one process on the combined batch
    python tests/gpu_checks.py compare-scores ONE TWO             test.py --save_scores of 1 and 2 processes
    python tests/gpu_checks.py amp-skips-inf CONFIG DEVICE        amp: an inf gradient skips the step
    python tests/gpu_checks.py weights-moved CONFIG CHECKPOINT    trained weights moved from the initial ones
Each prints PASS with figures, or fails with an AssertionError.
"""
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from workflows import training_run  # noqa: E402
from datasets.synthetic import ensure_demo_dataset  # noqa: E402
from modules import text_prompt  # noqa: E402
from modules.video_clip import VideoEncoder  # noqa: E402
from tests import ddp_step  # noqa: E402
from tests.tiny_run import TinyConfig  # noqa: E402
from utils.checkpoint import MODEL_KEY, save_atomically  # noqa: E402
from utils.config import load_config  # noqa: E402
from workflows.training import ClassTexts, train_one_epoch  # noqa: E402
from utils.precision import autocast_for  # noqa: E402

TOLERANCES = {"fp32": dict(atol=1e-5, rtol=1e-4), "amp": dict(atol=1e-3, rtol=2e-2)}


def prepare(folder):
    """DIR/tiny.yaml (8 train, 8 val videos), DIR/odd.yaml (7 val videos) and DIR/model_best.pt (random weights)."""
    folder = Path(folder)
    tiny = TinyConfig(ensure_demo_dataset(folder / "data", num_per_class=2, workers=0, progress=False), folder)
    tiny.write("tiny.yaml", solver={"epochs": 1})
    val_lines = Path(tiny.values["data"]["val_list"]).read_text().splitlines()[:7]
    (folder / "val7.txt").write_text("\n".join(val_lines) + "\n")
    tiny.write("odd.yaml", data={"val_list": str(folder / "val7.txt"), "batch_size": 2})
    clip_model, header = training_run.build_models(load_config(folder / "tiny.yaml"), torch.device("cpu"))
    save_atomically({"epoch": 0, MODEL_KEY: clip_model.state_dict(), "fusion_model_state_dict": header.state_dict()},
                    folder / "model_best.pt")
    print(f"PASS prepared {folder}")


def compare_step(path, text, device, precision):
    distributed = torch.load(path, weights_only=True)
    loss, gradients = ddp_step.loss_and_gradients(0, 1, fix_text=text == "fixed", distributed=False,
                                                  device=device, precision=precision)
    tolerance = TOLERANCES[precision]
    torch.testing.assert_close(distributed["loss"], loss, **tolerance)
    assert set(distributed["gradients"]) == set(gradients)
    worst = 0.0
    for name, gradient in gradients.items():
        torch.testing.assert_close(distributed["gradients"][name], gradient, msg=name, **tolerance)
        worst = max(worst, (distributed["gradients"][name] - gradient).abs().max().item())
    print(f"PASS 2-process step == 1-process combined batch ({device}, {precision}, text {text}): loss "
          f"{loss.item():.6f}, {len(gradients)} gradients, largest difference {worst:.2e}")


def compare_scores(one, two):
    one, two = (torch.load(path, weights_only=True) for path in (one, two))
    assert torch.equal(one["labels"], two["labels"]) and one["scores"].shape == two["scores"].shape
    torch.testing.assert_close(two["scores"], one["scores"], atol=1e-5, rtol=1e-4)
    print(f"PASS test.py scores of 2 processes == 1 process ({one['scores'].shape[0]} videos, uneven shards)")


def amp_skips_inf(config_path, device):
    """One amp step whose gradients hold an inf leaves the weights alone and halves the scale; the next one trains."""
    device = torch.device(device)
    config = load_config(config_path)
    clip_model, header = training_run.build_models(config, device)
    encoder, autocast = VideoEncoder(clip_model), autocast_for("amp", device)
    texts = ClassTexts.build(encoder, text_prompt(["a", "b", "c", "d"]), False, device, autocast)
    optimizer = torch.optim.AdamW([p for p in clip_model.parameters() if p.requires_grad], lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    scaler = torch.amp.GradScaler(device.type, init_scale=2.0 ** 10)  # low enough for a clean second step
    batch = [(torch.randint(0, 256, (4, 4, 3, 32, 32), dtype=torch.uint8), torch.arange(4))]
    poisoned = clip_model.visual.conv1.weight.register_hook(lambda grad: grad * float("inf"))
    before = {k: v.clone() for k, v in clip_model.state_dict().items()}
    start_scale = scaler.get_scale()
    train_one_epoch(encoder, header, batch, optimizer, scheduler, scaler, texts, config, 0, device, autocast, False)
    unchanged = all(torch.equal(before[k], v) for k, v in clip_model.state_dict().items())
    assert unchanged, "a step with an inf gradient changed the weights"
    assert scaler.get_scale() == start_scale / 2, (start_scale, scaler.get_scale())
    poisoned.remove()
    train_one_epoch(encoder, header, batch, optimizer, scheduler, scaler, texts, config, 1, device, autocast, False)
    assert not torch.equal(before["visual.conv1.weight"], clip_model.state_dict()["visual.conv1.weight"]), (
        f"the next step did not train either (scale now {scaler.get_scale():g})")
    print(f"PASS amp skipped the step with an inf gradient (scale {start_scale:g} -> {start_scale / 2:g}), "
          "then trained")


def weights_moved(config_path, checkpoint):
    """The image tower's linear weights in CHECKPOINT are float32 and most of them moved from the seeded start."""
    initial, _ = training_run.build_models(load_config(config_path), torch.device("cpu"))
    trained = torch.load(checkpoint, map_location="cpu", weights_only=True)[MODEL_KEY]
    names = [f"visual.{name}.weight" for name, module in initial.visual.named_modules()
             if isinstance(module, torch.nn.Linear)]
    moved = []
    for name in names:
        assert trained[name].dtype == torch.float32, f"{name} is {trained[name].dtype}"
        moved.append((trained[name] != initial.state_dict()[name]).float().mean().item())
    assert min(moved) > 0.9, f"only {min(moved):.0%} of some linear weight moved"
    print(f"PASS {len(names)} linear weights float32, each moved in at least {min(moved):.0%} of its elements")


COMMANDS = {"prepare": prepare, "compare-step": compare_step, "compare-scores": compare_scores,
            "amp-skips-inf": amp_skips_inf, "weights-moved": weights_moved}

if __name__ == "__main__":
    COMMANDS[sys.argv[1]](*sys.argv[2:])
