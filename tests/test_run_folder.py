"""The run folder is output_path/dataset/<arch>/<run>, with network.arch as one folder name: training from
a weight file (absolute or relative path) names the folder after the file's stem."""
import pytest
import torch

import clip
import train as train_program


@pytest.mark.parametrize("arch, folder", [("ViT-B/32", "ViT-B-32"), ("ViT-L/14@336px", "ViT-L-14@336px"),
                                          ("RN50", "RN50"), ("RN-Tiny", "RN-Tiny"), ("ViT-Tiny/16", "ViT-Tiny-16"),
                                          ("/weights/clip_tiny.pt", "clip_tiny"),
                                          ("../weights/clip tiny.v2.pth", "clip-tiny.v2"),
                                          ("open_clip:ViT-B-32", "open_clip-ViT-B-32")])
def test_arch_folder_names(arch, folder):
    assert clip.arch_folder_name(arch) == folder


def test_training_from_a_weight_file_writes_its_run_folder_named_after_the_file(tiny_config, tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "weights" / "clip_tiny.pt"
    weights.parent.mkdir()
    torch.save(clip.create_model("ViT-Tiny/16", image_resolution=32).state_dict(), weights)
    config = tiny_config.write(network={"arch": str(weights), "init": True}, solver={"epochs": 1})
    train_program.main(["--config", config, "--log_time", "run", "--cpu", "--no_progress"])

    run = tmp_path / "exps" / "tiny" / "clip_tiny" / "run"
    assert (run / "last_model.pt").is_file() and (run / "log.txt").is_file()
    assert sorted(p.name for p in (tmp_path / "exps" / "tiny").iterdir()) == ["clip_tiny"]
    assert torch.load(run / "last_model.pt", weights_only=True)["config"]["network"]["arch"] == str(weights)
