"""Every shipped config builds its model and finds its class names; broken configs fail before any heavy
work, naming the problem."""
import dataclasses
from pathlib import Path

import pytest
import torch

import train as train_program
from workflows import training_run
from clip import open_clip_backbone, random_init_models
from clip.architectures import architecture
from clip.model import CLIP
from datasets.annotations import load_class_names
from datasets.synthetic import CLASS_NAMES as DEMO_CLASS_NAMES, DEFAULT_ROOT as DEMO_ROOT
from modules import VideoHeader
from tools import pretrain_demo_clip
from utils.config import ConfigError, load_config

REPO = Path(__file__).resolve().parent.parent
CONFIGS = sorted(str(p) for p in (REPO / "configs").rglob("*.yaml"))
DEMO_STAGE1 = {pretrain_demo_clip.default_out(arch): arch for arch in random_init_models()}  # file -> its arch


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: Path(p).relative_to(Path(p).parents[1]).as_posix())
def test_config_builds_its_model(path):
    config = load_config(path)
    network = config.network
    if open_clip_backbone.is_open_clip_arch(network.arch):  # built by open_clip, shapes only
        model = open_clip_backbone.load(network.arch, network.pretrained, load_weights=False, device="meta")
        clip_config = model.config
    elif Path(network.arch) in DEMO_STAGE1:  # written by the demo's stage 1, not shipped
        clip_config = dataclasses.replace(architecture(DEMO_STAGE1[Path(network.arch)]),
                                          image_resolution=config.data.input_size)
    else:
        clip_config = architecture(network.arch)
    with torch.device("meta"):  # shapes only: no memory, no weights needed
        if not open_clip_backbone.is_open_clip_arch(network.arch):
            model = CLIP(clip_config, num_frames=config.data.num_segments * config.data.seg_length,
                         drop_path=network.drop_out, emb_dropout=network.emb_dropout, joint_st=network.joint_st)
        header = VideoHeader.for_clip(network.sim_header, network.interaction, model)
    if network.arch not in random_init_models():  # random-init models take any input size
        assert clip_config.image_resolution == config.data.input_size
    assert config.data.num_segments <= header.frame_position_embeddings.num_embeddings if network.sim_header == "Transf" else True


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: Path(p).relative_to(Path(p).parents[1]).as_posix())
def test_config_label_list_is_shipped_with_its_num_classes_names(path):
    data = load_config(path).data
    if Path(data.label_list).parent == DEMO_ROOT:  # generated with the demo data, not shipped
        assert len(DEMO_CLASS_NAMES) == data.num_classes
        return
    names = load_class_names(REPO / data.label_list)
    assert len(names) == data.num_classes and len(set(names)) == len(names)
    assert all(name and name == name.strip() for name in names)


def test_shipped_class_names_are_the_published_ones(shared_lists):
    label_lists = {Path(load_config(path).data.label_list) for path in CONFIGS}
    shipped = sorted(path for path in label_lists if path.parts[0] == "lists")
    assert len(shipped) == 8  # K400, the three K600 splits, UCF-101, HMDB-51, ActivityNet, Charades
    for path in shipped:
        assert load_class_names(REPO / path) == load_class_names(shared_lists / path.relative_to("lists"))


def test_missing_list_file_fails_naming_the_key_before_building_anything(tiny_config, monkeypatch):
    config = tiny_config.write(data={"val_list": "/nonexistent/val.txt"})
    monkeypatch.setattr(training_run, "build_clip", lambda *_: pytest.fail("built a model before checking files"))
    with pytest.raises(ConfigError, match=r"data\.val_list.*/nonexistent/val\.txt"):
        train_program.main(["--config", config, "--cpu"])


def test_unknown_key_and_wrong_type_fail_naming_the_key(tiny_config):
    with pytest.raises(ConfigError, match=r"solver\.learning_rate"):
        train_program.main(["--config", tiny_config.write(), "--cpu", "solver.learning_rate=0.1"])
    with pytest.raises(ConfigError, match=r"data\.num_segments"):
        train_program.main(["--config", tiny_config.write(data={"num_segments": "eight"}), "--cpu"])
