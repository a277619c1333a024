"""tools/export.py: the ONNX and .pt2 files score as test.py does on the same frames, without the project.

test.py's saved scores are the reference (its own dataset, transforms and view scoring). The exported
file's frames are decoded here with PyAV and sampled by the formula of docs/deployment.md, so its recipe is
what is checked. Tolerances are measured: a resized pixel may differ from torchvision's uint8 resize by 1.
"""
import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import onnx
import pytest
import torch

import test as test_program
from datasets.sampling import segment_test_indices
from datasets.transforms import normalize_on_device
from modules import VideoHeader
from tests.tiny_run import FP32, write_tiny_checkpoint
from tests.tiny_run import one_video_config
from tools import export as export_tool
from utils.config import load_config
from utils.errors import UnusableFileError, UsageError
from workflows.export import METADATA_KEY, build_recognizer, load_onnx, load_pt2
from workflows.prediction import Predictor

REPO = Path(__file__).resolve().parent.parent
VIEWS = ["--test_clips", "2", "--test_crops", "3"]
CLASSES = "moving left,growing,rotating clockwise,vanishing,appearing"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A random tiny checkpoint (seed 3: scores that tell the classes apart by more than 0.01)."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("export_ckpt") / "model_best.pt", seed=3)


def decoded_views(video, metadata):
    """uint8 [1, N, H, W, 3] of `video`: every frame decoded by PyAV, then test.py's sampled indices."""
    with av.open(video) as container:
        frames = np.stack([frame.to_ndarray(format="rgb24", threads=1) for frame in container.decode(video=0)])
    indices = segment_test_indices(len(frames), metadata.num_segments, metadata.test_clips, metadata.seg_length)
    return frames[indices.reshape(-1)][None]


@pytest.fixture(scope="module")
def one_video(tiny_dataset, trained, tmp_path_factory):
    """A config of one demo video, its frame size and test.py's scores of it (2 clips x 3 crops)."""
    from tests.tiny_run import TinyConfig

    folder = tmp_path_factory.mktemp("export")
    config, video = one_video_config(TinyConfig(tiny_dataset, folder), folder, "video")
    test_program.main(["--config", config, "--weights", trained, *VIEWS, "--cpu", *FP32, "--no_progress",
                       "--save_scores", str(folder / "scores.pt")])
    with av.open(video) as container:
        stream = container.streams.video[0]
        size = f"{stream.height}x{stream.width}"
    scores = torch.load(folder / "scores.pt", weights_only=True)["scores"][0]
    return {"folder": folder, "config": config, "video": video, "size": size, "scores": scores}


@pytest.fixture(scope="module")
def exported(one_video, trained):
    """fp32 .onnx and .pt2 files of the one-video config, written by the tool."""
    files = {}
    for suffix in ("onnx", "pt2"):
        files[suffix] = one_video["folder"] / f"model.{suffix}"
        recognizer = export_tool.main(["--config", one_video["config"], "--weights", trained,
                                       "--frame_size", one_video["size"], *VIEWS, "--out", str(files[suffix])])
    return {**one_video, "recognizer": recognizer, **files}


def test_onnx_and_pt2_score_as_test_py_on_the_same_frames(exported):
    session, metadata = load_onnx(exported["onnx"])
    module, pt2_metadata = load_pt2(exported["pt2"])
    assert metadata == pt2_metadata == exported["recognizer"].metadata
    frames = decoded_views(exported["video"], metadata)
    expected = exported["scores"]
    assert expected.max() - expected.min() > 0.01  # scores that tell classes apart
    onnx_scores, onnx_saliency = (torch.from_numpy(a) for a in session.run(None, {"frames": frames}))
    with torch.no_grad():
        eager_scores, eager_saliency = exported["recognizer"](torch.from_numpy(frames))
        pt2_scores, pt2_saliency = module(torch.from_numpy(frames))
    for scores in (eager_scores, onnx_scores, pt2_scores):  # measured: 2e-6 (resized pixels off by 1)
        torch.testing.assert_close(scores[0], expected, atol=2e-5, rtol=0)
    assert eager_saliency.shape == (1, len(metadata.classes), metadata.num_frames)
    torch.testing.assert_close(onnx_saliency, eager_saliency, atol=1e-4, rtol=0)  # measured 3e-6
    torch.testing.assert_close(pt2_saliency, eager_saliency, atol=0, rtol=0)
    torch.testing.assert_close(eager_saliency.sum(-1), torch.full((1, len(metadata.classes)), 2.0))  # 1 a clip
    batch = np.concatenate([frames, frames[:, ::-1]])  # dynamic batch: two videos at once
    two = torch.from_numpy(session.run(None, {"frames": batch})[0])
    torch.testing.assert_close(two[0], onnx_scores[0], atol=1e-6, rtol=0)



def test_pt2_program_reads_the_class_texts_as_normalised_constants(exported):
    """Speed: the class texts are normalised when the file is written, not in every call. Before, the program
    normalised the class tokens [C, 77, D] twice a call (once for the scores, once for the saliency) and the
    EOT embeddings once: about 8% of a ViT-B/32 call, what kept .pt2 below the eager path (benchmarks/README.md)."""
    program = torch.export.load(str(exported["pt2"]))
    nodes = {node.name: node for node in program.graph.nodes}
    readers = {target: [str(user.target) for user in nodes[name].users]
               for name, target in program.graph_signature.inputs_to_buffers.items() if "class" in target}
    assert readers == {"unit_class_eot": ["aten.einsum.default"], "unit_class_tokens": ["aten.einsum.default"]}

def test_saliency_is_the_headers_vcs_weights_of_each_clip_mean_over_its_crops(one_video, trained):
    """The saliency output against the header's VCS weights of test.py's own views (2 clips x 3 crops)."""
    config = load_config(one_video["config"])
    names = CLASSES.split(",")
    height, width = map(int, one_video["size"].split("x"))
    recognizer = build_recognizer(config, trained, names, (height, width), test_clips=2, test_crops=3)
    predictor = Predictor(config, names, trained, test_clips=2, test_crops=3)
    frames = decoded_views(one_video["video"], recognizer.metadata)
    with torch.no_grad():
        scores, saliency = recognizer(torch.from_numpy(frames))
        views = normalize_on_device(predictor.views(one_video["video"]))  # [clips x crops, T, 3, S, S]
        aggregated = predictor.header.aggregate(predictor.encoder.encode_video(views))
        weights = VideoHeader.concept_weights(aggregated, predictor.tokens)  # [C, views, T]
    reference = weights.view(len(names), 2, 3, -1).mean(2).flatten(1)  # each clip's frames, crops averaged
    torch.testing.assert_close(saliency[0], reference, atol=1e-3, rtol=0)  # measured 2.3e-4: VCS divides by 0.01
    torch.testing.assert_close(scores[0], predictor.predict(one_video["video"]).scores, atol=2e-5, rtol=0)


@pytest.mark.parametrize("precision,suffix,tolerance", [("fp16", "onnx", 2e-3), ("bf16", "pt2", 1e-2)])
def test_half_precision_files_are_close_to_fp32(one_video, trained, tmp_path, precision, suffix, tolerance):
    out = tmp_path / f"half.{suffix}"
    export_tool.main(["--config", one_video["config"], "--weights", trained, "--frame_size", one_video["size"],
                      "--precision", precision, "--out", str(out)])  # the config's views: 1 clip, 1 crop
    if suffix == "onnx":
        session, metadata = load_onnx(out)
        scores = torch.from_numpy(session.run(None, {"frames": decoded_views(one_video["video"], metadata)})[0])
    else:
        module, metadata = load_pt2(out)
        with torch.no_grad():
            scores = module(torch.from_numpy(decoded_views(one_video["video"], metadata)))[0]
    assert metadata.precision == precision and metadata.num_frames == 4
    predictor = Predictor(load_config(one_video["config"]), metadata.classes, trained)
    reference = predictor.predict(one_video["video"]).scores  # fp32, test.py's path
    torch.testing.assert_close(scores[0], reference, atol=tolerance, rtol=0)  # measured 6e-6 fp16, 7e-5 bf16


@pytest.mark.slow
def test_documented_recipes_run_without_the_project(exported, tmp_path):
    """The onnxruntime and torch snippets of docs/deployment.md, in a fresh interpreter that cannot import
    this project."""
    text = (REPO / "docs" / "deployment.md").read_text()
    section = text[text.index("### Run an exported model without this project"):]
    snippets = section.split("```python\n")[1:3]
    assert len(snippets) == 2
    (tmp_path / "model.onnx").symlink_to(exported["onnx"])
    (tmp_path / "model.pt2").symlink_to(exported["pt2"])
    (tmp_path / "video.mp4").symlink_to(exported["video"])
    metadata = exported["recognizer"].metadata
    best = metadata.classes[int(exported["scores"].argmax())]
    for snippet in snippets:
        code = snippet.split("```")[0]
        result = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stderr
        first = result.stdout.splitlines()[0]
        assert first.startswith(f"{best}: "), result.stdout
        assert float(first.split(": ")[1]) == pytest.approx(exported["scores"].max().item(), abs=6e-4)


def test_metadata_is_checked_when_loading(exported, tmp_path):
    model = onnx.load(exported["onnx"])
    entry = next(entry for entry in model.metadata_props if entry.key == METADATA_KEY)
    values = json.loads(entry.value)
    entry.value = json.dumps(values | {"classes": values["classes"][:-1]})
    onnx.save(model, tmp_path / "fewer.onnx")
    with pytest.raises(UnusableFileError, match="fewer.onnx: the model takes .* but its metadata says"):
        load_onnx(tmp_path / "fewer.onnx")
    del model.metadata_props[:]
    onnx.save(model, tmp_path / "bare.onnx")
    with pytest.raises(UnusableFileError, match="bare.onnx: no BIKE metadata"):
        load_onnx(tmp_path / "bare.onnx")
    (tmp_path / "junk.pt2").write_bytes(b"junk" * 100)
    with pytest.raises(UnusableFileError, match="junk.pt2: not a torch.export program"):
        load_pt2(tmp_path / "junk.pt2")


@pytest.mark.slow
def test_what_cannot_be_exported_is_one_error_line(one_video, trained, tmp_path):
    base = ["--config", one_video["config"], "--weights", trained, "--frame_size", one_video["size"]]
    for extra, message in ((["--out", str(tmp_path / "m.onnx"), "--precision", "bf16"], "bf16 cannot be exported "
                            "to ONNX"), (["--out", str(tmp_path / "m.onnx"), "--attributes_weights", trained],
                                         "--attributes_weights cannot be exported"),
                           (["--out", str(tmp_path / "m.pt2"), "--set", "network.joint_st=True"],
                            "network.joint_st=True cannot be exported"),
                           (["--out", str(tmp_path / "m.tflite")], "--out must end in .onnx or .pt2")):
        with pytest.raises(UsageError, match=message):
            export_tool.main(base + extra)
    result = subprocess.run([sys.executable, "tools/export.py", *base, "--out", str(tmp_path / "m.onnx"),
                             "--precision", "bf16"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [result.stderr.splitlines()[0]]  # one line, no traceback
    assert result.stderr.startswith("error: --precision bf16 cannot be exported to ONNX")
    assert not list(tmp_path.glob("m.*"))
