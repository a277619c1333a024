"""Co-training: train_co.py end to end on the tiny data, its checkpoint evaluated fused by test.py and checked
against plain math, resumption of both heads, and the config keys the branch needs."""
import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import clip
import test as test_program
import train_co
from clip.weights import strip_module_prefix
from datasets.annotations import load_class_names, read_video_list
from workflows.attributes_branch import ATTRIBUTES_HEAD_KEY
from tests.resume_checks import EpochRecorder, assert_resumed, keeping_each_epoch
from tests.tiny_run import FP32, TinyConfig, write_attribute_files
from utils.config import ConfigError, load_config

TOPK = 2


@pytest.fixture(scope="module")
def co_run(tiny_dataset, tmp_path_factory):
    """One 2-epoch joint co-training run (--branch joint) on the tiny data, keeping the checkpoint of every epoch."""
    folder = tmp_path_factory.mktemp("co")
    tiny_config = TinyConfig(tiny_dataset, folder)
    paths = write_attribute_files(tiny_dataset, folder)
    config = tiny_config.write(
        "co.yaml", data={"attributes_train_path": str(paths["train"]), "attributes_val_path": str(paths["val"]),
                         "select_topk_attributes": TOPK},
        network={"fix_text": True}, solver={"epochs": 2})
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(train_co, "save_epoch_checkpoints", keeping_each_epoch(train_co.save_epoch_checkpoints))
        report = train_co.main(["--config", config, "--branch", "joint", "--log_time", "co", "--cpu",
                                 *FP32, "--no_progress"])
    return SimpleNamespace(config=config, folder=tiny_config.run_folder("co"), report=report, tiny=tiny_config)


def head_scores(state, sentences, class_names):
    """The attributes branch's class probabilities by plain math from a checkpoint's weights."""
    model = clip.build_model(strip_module_prefix(state["model_state_dict"])).eval()
    head = strip_module_prefix(state[ATTRIBUTES_HEAD_KEY])

    def encode(texts):
        return F.normalize(model.encode_text(clip.tokenize(texts)), dim=-1)

    def mlp(x, name):
        hidden = torch.relu(x @ head[f"{name}.0.weight"].t() + head[f"{name}.0.bias"])
        return F.normalize(hidden @ head[f"{name}.2.weight"].t() + head[f"{name}.2.bias"], dim=-1)

    with torch.no_grad():
        classes = mlp(encode([f"This is a video about {name}" for name in class_names]), "query_fc")
        return (mlp(encode(sentences), "sentence_fc") @ classes.t()).softmax(dim=-1)


@pytest.mark.slow
def test_co_training_checkpoint_is_evaluated_fused_by_test_py(co_run, tiny_dataset, tmp_path):
    state = torch.load(co_run.folder / "last_model.pt", weights_only=True)
    assert {"epoch", "model_state_dict", "fusion_model_state_dict", "optimizer_state_dict",
            ATTRIBUTES_HEAD_KEY} <= set(state) and state["epoch"] == 1
    log = (co_run.folder / "log.txt").read_text()
    assert "attributes branch mean loss" in log and "fused (0.7 video + 0.3 attributes): Overall Prec@1" in log
    # N: the elements of AdamW's first moments (one per trained parameter); M: every saved model tensor
    trained = sum(moments["exp_avg"].numel() for moments in state["optimizer_state_dict"]["state"].values())
    total = sum(t.numel() for key in ("model_state_dict", "fusion_model_state_dict", ATTRIBUTES_HEAD_KEY)
                for t in state[key].values())
    assert f"trainable parameters: {trained:,} of {total:,} (" in log

    scores_file = tmp_path / "scores.pt"
    test_program.main(["--config", co_run.config, "--weights", str(co_run.folder / "last_model.pt"), "--cpu",
                       *FP32, "--no_progress", "--save_scores", str(scores_file)])
    saved = torch.load(scores_file, weights_only=True)
    # test.py's branches are those of the last validation of training ...
    torch.testing.assert_close(saved["scores"], co_run.report.video.scores)
    torch.testing.assert_close(saved["attributes_scores"], co_run.report.attributes.scores)
    # ... the attributes scores follow from the checkpoint by plain math, and the fusion is their weighted sum.
    names = load_class_names(tiny_dataset.labels)
    attributes = json.loads(open(load_config(co_run.config).data.attributes_val_path).read())
    records = read_video_list(tiny_dataset.val_frames, len(names), "RGB")
    sentences = ["This is a video about " + ", ".join(attributes[r.path]["classname_topk"][:TOPK]) for r in records]
    torch.testing.assert_close(saved["attributes_scores"], head_scores(state, sentences, names), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(saved["fused_scores"], 0.7 * saved["scores"] + 0.3 * saved["attributes_scores"])
    assert torch.equal(saved["labels"], torch.tensor([r.label for r in records]))


@pytest.mark.slow
def test_resumed_co_training_restores_both_heads(co_run, monkeypatch):
    recorder = EpochRecorder(train_co.train_one_epoch)
    monkeypatch.setattr(train_co, "train_one_epoch", recorder)
    train_co.main(["--config", co_run.config, "--branch", "joint", "--log_time", "resumed", "--cpu", *FP32,
                   "--no_progress",
                   f"resume={co_run.folder / 'epoch0.pt'}"])
    assert_resumed(recorder, torch.load(co_run.folder / "epoch0.pt", weights_only=True),
                   (co_run.tiny.run_folder("resumed") / "log.txt").read_text(), epochs=2)
    whole = torch.load(co_run.folder / "last_model.pt", weights_only=True)
    resumed = torch.load(co_run.tiny.run_folder("resumed") / "last_model.pt", weights_only=True)
    assert resumed["epoch"] == 1
    for key in (ATTRIBUTES_HEAD_KEY, "fusion_model_state_dict", "model_state_dict"):
        for name, value in whole[key].items():
            torch.testing.assert_close(resumed[key][name], value, atol=1e-6, rtol=1e-5, msg=f"{key} {name}")


def test_the_attribute_files_are_required_config_keys(tiny_config):
    with pytest.raises(ConfigError, match="data.attributes_train_path is not set"):
        train_co.main(["--config", tiny_config.write(), "--cpu"])
