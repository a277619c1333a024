"""Several processes: torchrun with 2 CPU processes (gloo) against one process, failures, device choice."""
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch

import test as test_program
import train
from tests import ddp_step, ddp_training
from tools import generate_attributes
from tests.processes import REPO, torchrun
from tests.tiny_run import original_layout
from utils import distributed
from utils.config import load_config


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_failing_rank_ends_the_job_at_once_with_its_traceback():
    start = time.monotonic()
    completed = torchrun([str(REPO / "tests" / "ddp_failure.py"), "fail"], check=False, timeout=90)
    elapsed = time.monotonic() - start
    assert completed.returncode != 0
    assert "[rank 1] ValueError: cannot decode video_042.mp4 (simulated failure of rank 1)" in completed.stderr
    assert "rank 0 done" not in completed.stdout
    assert elapsed < 60, f"the job took {elapsed:.0f} s to end"


@pytest.mark.slow
def test_a_successful_job_leaves_the_process_group_in_every_process():
    completed = torchrun([str(REPO / "tests" / "ddp_failure.py"), "succeed"], timeout=90)
    assert completed.stdout.count("left the process group") == 2


@pytest.mark.slow
def test_ranks_build_the_same_model_and_accumulate_gradients_with_one_all_reduce_per_step(tiny_config, tmp_path):
    # network.init False: the text tower is random, so class features differ unless every rank seeds alike.
    config_path = tiny_config.write(solver={"grad_accumulation_steps": 2})
    torchrun([str(REPO / "tests" / "ddp_training.py"), config_path, str(tmp_path / "ranks.pt")])
    ranks = torch.load(tmp_path / "ranks.pt", weights_only=True)
    assert torch.equal(ranks["class_features"][0], ranks["class_features"][1])
    assert all(torch.equal(ranks["heads"][0][k], ranks["heads"][1][k]) for k in ranks["heads"][0])
    first, second, third, fourth = ranks["all_reduces"]  # DDP's all-reduces during each micro-step
    assert first == third == 0 and second > 0 and fourth > 0
    weights, _ = ddp_training.train_accumulated(load_config(config_path), 0, 1, distributed=False)
    assert set(ranks["weights"]) == set(weights)
    for name, value in weights.items():
        torch.testing.assert_close(ranks["weights"][name], value, atol=1e-6, rtol=1e-4, msg=name)


@pytest.mark.parametrize("local_rank, local_world_size, device_count, expected", [
    (0, 1, 1, 0), (1, 2, 2, 1), (3, 4, 8, 3),  # plain torchrun: every process sees every GPU of the node
    (3, 4, 1, 0), (1, 2, 1, 0),  # SLURM / Kubernetes: each process sees only its own GPU
])
def test_the_local_rank_maps_onto_the_visible_gpus(local_rank, local_world_size, device_count, expected):
    assert distributed.cuda_device_index(local_rank, local_world_size, device_count) == expected


def test_more_processes_than_visible_gpus_is_an_error_that_says_what_to_start():
    with pytest.raises(RuntimeError, match=r"4 processes .* only 2 GPUs .*share a GPU.*--nproc_per_node=2"):
        distributed.cuda_device_index(2, 4, 2)


def test_init_picks_the_mapped_gpu_and_passes_the_timeout(monkeypatch):
    chosen, joined = [], {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda **kwargs: joined.update(kwargs))
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    args = train.parse_args(["--config", "x.yaml", "--dist_timeout", "90"])
    context = distributed.init_distributed(timeout_minutes=args.dist_timeout)
    assert context.device == torch.device("cuda", 0) and chosen == [torch.device("cuda", 0)]
    assert joined["backend"] == "nccl" and joined["timeout"] == timedelta(minutes=90)
    assert train.parse_args(["--config", "x.yaml"]).dist_timeout == distributed.DEFAULT_TIMEOUT_MINUTES >= 30


@pytest.mark.slow
def test_attribute_generation_gathers_the_shares_of_nodes_without_a_shared_file_system(tiny_config, tmp_path):
    options = ["--config", tiny_config.write(), "--split", "val", "--save_every", "3", "--topk", "2", "--cpu",
               "--no_progress"]
    generate_attributes.main([*options, "--output", str(tmp_path / "one.json")])
    torchrun([str(REPO / "tests" / "ddp_attributes.py"), str(tmp_path / "nodes"), *options, "--output", "two.json"])
    assert (tmp_path / "nodes" / "rank0" / "two.json").read_bytes() == (tmp_path / "one.json").read_bytes()
    assert [path.name for path in (tmp_path / "nodes").rglob("*") if path.is_file()] == ["two.json"]  # logs removed
