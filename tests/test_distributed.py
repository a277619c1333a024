"""torchrun with 2 CPU processes: training gradients and test scores equal those of one process."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import test as test_program
from tests import ddp_step
from tests.test_checkpoint import original_layout

REPO = Path(__file__).resolve().parent.parent


def torchrun(args, cwd=REPO, processes=2, timeout=240):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *args]
    completed = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed


@pytest.mark.parametrize("text", ["fixed", "trained"])
def test_two_process_step_equals_one_process_with_the_combined_batch(text, tmp_path):
    torchrun([str(REPO / "tests" / "ddp_step.py"), str(tmp_path / "ddp.pt"), text])
    distributed = torch.load(tmp_path / "ddp.pt", weights_only=True)
    loss, gradients = ddp_step.loss_and_gradients(0, 1, fix_text=text == "fixed", distributed=False)
    torch.testing.assert_close(distributed["loss"], loss, atol=1e-6, rtol=1e-5)
    assert set(distributed["gradients"]) == set(gradients)
    assert any(k.startswith("clip.transformer.") for k in gradients) == (text == "trained")
    for name, gradient in gradients.items():
        torch.testing.assert_close(distributed["gradients"][name], gradient, atol=1e-6, rtol=1e-4, msg=name)


def test_two_process_test_scores_equal_one_process_with_an_odd_number_of_videos(tiny_config, tmp_path):
    import clip
    from modules import VideoHeader
    torch.manual_seed(0)
    model = clip.create_model("ViT-Tiny/16", image_resolution=32)
    header = VideoHeader.for_clip("Transf", "VCS", model)
    torch.save(original_layout(model, header, "module."), tmp_path / "model_best.pt")
    val_lines = Path(tiny_config.values["data"]["val_list"]).read_text().splitlines()[:7]
    (tmp_path / "val7.txt").write_text("\n".join(val_lines) + "\n")
    config = tiny_config.write(data={"val_list": str(tmp_path / "val7.txt"), "batch_size": 2})
    common = ["--config", config, "--weights", str(tmp_path / "model_best.pt"), "--test_crops", "3", "--cpu",
              "--no_progress"]

    completed = torchrun([str(REPO / "test.py"), *common, "--save_scores", str(tmp_path / "two.pt")])
    assert "Overall Prec@1" in completed.stdout
    test_program.main([*common, "--save_scores", str(tmp_path / "one.pt")])
    one, two = (torch.load(tmp_path / f"{n}.pt", weights_only=True) for n in ("one", "two"))
    assert one["scores"].shape == (7, 8)
    assert torch.equal(one["labels"], torch.tensor([int(line.split()[-1]) for line in val_lines]))
    assert torch.equal(two["labels"], one["labels"])
    torch.testing.assert_close(two["scores"], one["scores"], atol=1e-6, rtol=1e-5)
