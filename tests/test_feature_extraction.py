"""tools/extract_features.py: the features give test.py's scores again (plain tensor math); a killed and rerun
extraction ends with the files of an uninterrupted one; 2 processes under torchrun give the features of 1;
unreadable videos are named, or recorded with --skip_unreadable."""
import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import clip
import test as test_program
from datasets.annotations import load_class_names
from datasets.synthetic import DemoDataset
from modules import VideoHeader
from tests.data_factory import truncate_file
from tests.tiny_run import original_layout
from tests.processes import torchrun
from tools import extract_features
from utils.config import load_config
from utils.errors import UnusableFileError, report_user_errors
from workflows.inference import class_texts, load_video_model
from tests.tiny_run import FP32

REPO = Path(__file__).resolve().parent.parent
VIEWS = ["--test_crops", "3", "--test_clips", "2"]


def checkpoint_for(folder, sim_header, interaction):
    torch.manual_seed(0)
    model = clip.create_model("ViT-Tiny/16", image_resolution=32)
    header = VideoHeader.for_clip(sim_header, interaction, model)
    path = folder / f"{sim_header}-{interaction}.pt"
    torch.save(original_layout(model, header, "module."), path)
    return str(path)


def read_output(folder):
    """(tensors of every shard in order, index rows)."""
    shards = sorted(Path(folder).glob("shard-*.safetensors"))
    tensors = {}
    for shard in shards:
        for name, value in load_file(shard).items():
            tensors.setdefault(name, []).append(value)
    rows = list(csv.DictReader((Path(folder) / "index.csv").open()))
    return {name: torch.cat(values) for name, values in tensors.items()}, rows


def vcs_scores(temporal, eot, tokens):
    """test.py's score from the temporal features [N, V, T, D]: Video Concept Spotting written out."""
    frames = temporal / temporal.norm(dim=-1, keepdim=True)
    tokens = tokens / tokens.norm(dim=-1, keepdim=True)
    classes = eot / eot.norm(dim=-1, keepdim=True)
    similarity = torch.einsum("cwd,nvtd->nvcwt", tokens, frames)
    weights = torch.softmax(similarity / 0.01, dim=-1).mean(dim=3)  # [N, V, C, T]
    spotted = torch.einsum("nvct,nvtd->nvcd", weights, frames)
    cosine = torch.einsum("nvcd,cd->nvc", spotted, classes)
    return torch.softmax(cosine, dim=-1).mean(dim=1)


@pytest.mark.parametrize("sim_header, interaction", [("Transf", "VCS"), ("None", "DP")])
def test_features_give_test_py_scores_again(sim_header, interaction, tiny_config, tmp_path):
    weights = checkpoint_for(tmp_path, sim_header, interaction)
    config = tiny_config.write(network={"sim_header": sim_header, "interaction": interaction})
    test_program.main(["--config", config, "--weights", weights, *VIEWS, "--cpu", *FP32, "--no_progress",
                       "--save_scores", str(tmp_path / "scores.pt")])
    expected = torch.load(tmp_path / "scores.pt", weights_only=True)
    count = extract_features.main(["--config", config, "--weights", weights, *VIEWS, "--cpu", *FP32,
                                   "--no_progress", "--out", str(tmp_path / "features"), "--shard_size", "3"])
    tensors, rows = read_output(tmp_path / "features")
    assert count == len(rows) == len(expected["labels"]) == len(tensors["frames"])
    assert [int(r["label"]) for r in rows] == expected["labels"].tolist()
    assert [(r["shard"], r["row"]) for r in rows[:4]] == [("0", "0"), ("0", "1"), ("0", "2"), ("1", "0")]
    assert tensors["frames"].shape[1:3] == (6, 4) and rows[0]["views"] == "6" and rows[0]["frames"] == "4"
    encoder, _ = load_video_model(load_config(config), weights)
    eot, tokens = class_texts(encoder, load_class_names(load_config(config).data.label_list), "cpu",
                              contextlib.nullcontext)
    if interaction == "DP":
        assert sim_header == "None" and torch.equal(tensors["temporal"], tensors["frames"])
        pooled = tensors["temporal"].mean(dim=2)
        torch.testing.assert_close(tensors["pooled"], pooled / pooled.norm(dim=-1, keepdim=True))
        cosine = tensors["pooled"] @ (eot / eot.norm(dim=-1, keepdim=True)).t()
        scores = torch.softmax(cosine, dim=-1).mean(dim=1)
    else:
        assert "pooled" not in tensors
        scores = vcs_scores(tensors["temporal"], eot, tokens)
    torch.testing.assert_close(scores, expected["scores"], atol=1e-6, rtol=1e-5)
    settings = json.loads((tmp_path / "features" / "extraction.json").read_text())
    assert settings["views"] == {"test_clips": 2, "test_crops": 3, "dense": False}
    assert settings["checkpoint"] == weights and settings["dtype"] == "float32" and settings["project_version"]


@pytest.fixture(scope="module")
def uninterrupted(tiny_dataset, tmp_path_factory):
    """A checkpoint, a config, and the output of one uninterrupted extraction in 3-video shards (float16)."""
    from tests.tiny_run import TinyConfig
    folder = tmp_path_factory.mktemp("extraction")
    tiny = TinyConfig(tiny_dataset, folder)
    config = tiny.write()
    weights = checkpoint_for(folder, "Transf", "VCS")
    arguments = ["--config", config, "--weights", weights, "--cpu", "--no_progress", "--shard_size", "3",
                 "--float16"]
    extract_features.main(arguments + ["--out", str(folder / "whole")])
    return arguments, folder / "whole"


def files_of(folder):
    return {path.name: path.read_bytes() for path in sorted(Path(folder).iterdir())}


@pytest.mark.slow
def test_a_killed_and_rerun_extraction_ends_with_the_files_of_an_uninterrupted_one(uninterrupted, tmp_path):
    arguments, whole = uninterrupted
    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="")
    process = subprocess.Popen([sys.executable, str(REPO / "tests" / "slow_extraction.py"), "3", *arguments,
                                "--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (out / "shard-00000.safetensors").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    left = sorted(path.name for path in out.iterdir())
    assert "shard-00000.safetensors" in left and "index.csv" not in left, left
    assert "shard-00001.safetensors" not in left, "the run went on before it could be killed"
    (out / ".shard-00001.safetensors.k1ll.tmp").write_bytes(b"half a shard")  # as a kill while writing leaves it
    extract_features.main(arguments + ["--out", str(out)])
    assert files_of(out) == files_of(whole)


def test_a_rerun_skips_finished_shards_and_refuses_other_settings(uninterrupted, tmp_path, monkeypatch):
    arguments, whole = uninterrupted
    computed = []
    from workflows import feature_extraction
    compute = feature_extraction.compute_shard
    monkeypatch.setattr(feature_extraction, "compute_shard",
                        lambda *a, **k: computed.append(k["number"]) or compute(*a, **k))
    extract_features.main(arguments + ["--out", str(whole)])
    assert computed == []
    with pytest.raises(UnusableFileError, match="views"):
        extract_features.main(arguments + ["--out", str(whole), "--test_clips", "2"])


@pytest.mark.slow
def test_two_processes_under_torchrun_give_the_features_of_one(uninterrupted, tmp_path):
    arguments, whole = uninterrupted
    torchrun([str(REPO / "tools" / "extract_features.py"), *arguments, "--out", str(tmp_path / "two")], timeout=300)
    two, one = read_output(tmp_path / "two"), read_output(whole)
    assert two[1] == one[1]
    for name, value in one[0].items():
        torch.testing.assert_close(two[0][name], value, atol=2e-3, rtol=2e-3, msg=name)  # float16 storage
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in whole.iterdir())


def test_an_unreadable_video_is_named_or_recorded(tiny_config, tmp_path, capsys):
    demo = DemoDataset.at(Path(load_config(tiny_config.write()).data.val_list).parent)
    lines = demo.val_videos.read_text().splitlines()[:3]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes((demo.videos_root / lines[1].split()[0]).read_bytes())
    truncate_file(str(broken), 0.3)
    (tmp_path / "list.txt").write_text(f"{lines[0]}\n{broken} 1\n{lines[2]}\n")
    config = tiny_config.write(data={"modality": "video"})
    arguments = ["--config", config, "--list", str(tmp_path / "list.txt"), "--root", str(demo.videos_root), "--cpu",
                 "--no_progress", "--out"]
    with pytest.raises(SystemExit):
        report_user_errors(extract_features.main, arguments + [str(tmp_path / "stop")])
    assert "broken.mp4" in capsys.readouterr().err.strip().splitlines()[-1]
    extract_features.main(arguments + [str(tmp_path / "skip"), "--skip_unreadable"])
    tensors, rows = read_output(tmp_path / "skip")
    assert [r["row"] for r in rows] == ["0", "-1", "1"] and len(tensors["frames"]) == 2
    assert "broken.mp4" in rows[1]["error"] and rows[0]["error"] == "" and rows[2]["error"] == ""


def test_inputs_given_as_files_are_extracted_without_labels(tiny_config, tmp_path):
    demo = DemoDataset.at(Path(load_config(tiny_config.write()).data.val_list).parent)
    videos = sorted(demo.videos_root.rglob("*.mp4"))[:2]
    count = extract_features.main(["--config", tiny_config.write(), "--cpu", "--no_progress", "--out",
                                   str(tmp_path / "f"), "--inputs", *map(str, videos)])
    tensors, rows = read_output(tmp_path / "f")
    assert count == 2 and [r["path"] for r in rows] == list(map(str, videos)) and [r["label"] for r in rows] == ["", ""]
    settings = json.loads((tmp_path / "f" / "extraction.json").read_text())
    assert settings["inputs"] == list(map(str, videos)) and settings["model"] == "zero-shot ViT-Tiny/16"
