"""Zero-shot protocols: half-class subsets, restricted top-k, aggregation, test_zeroshot.py end to end."""
import contextlib
import math
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import test as test_program
import test_zeroshot
from datasets.annotations import load_class_names
from datasets.build import build_dataset
from tests import clip_math
from tests.data_factory import write_labels_csv, write_text
from tests.equivalence import reference_tokenize
from tests.tiny_run import original_layout
from datasets.transforms import normalize_on_device
from utils.config import load_config
from utils.distributed import init_distributed
from workflows import inference
from tests.tiny_run import FP32
from workflows.zeroshot import (HALF_CLASS_SEEDS, MeanStd, half_class_subset, splits_summary, subset_topk,
                            zero_shot_result)

REPO = Path(__file__).resolve().parent.parent
FULL_LINE = re.compile(r"^Full-classes: Top1 (\d+\.\d{3})% Top5 (\d+\.\d{3})%$", re.M)
HALF_LINE = re.compile(r"^Half-classes: Top1 mean (\d+\.\d{3})% std (\d+\.\d{3})%, "
                       r"Top5 mean (\d+\.\d{3})% std (\d+\.\d{3})%$", re.M)
VIDEO_FULL_LINE = re.compile(r"^Video-level scores, all classes: Top1 (\d+\.\d{3})% Top5 (\d+\.\d{3})%$", re.M)
VIDEO_HALF_LINE = re.compile(r"^Video-level scores, half classes: Top1 mean (\d+\.\d{3})% std (\d+\.\d{3})%, "
                             r"Top5 mean (\d+\.\d{3})% std (\d+\.\d{3})%$", re.M)
PUBLISHED_LABEL = re.compile(r"^(Full|Half)-classes", re.M)


# --- half-class subsets -------------------------------------------------------------------------------

@pytest.mark.parametrize("num_classes", [8, 51, 101, 160])
def test_half_class_subsets_are_the_originals_seeded_halves(num_classes):
    subsets = [half_class_subset(num_classes, seed) for seed in HALF_CLASS_SEEDS]
    for seed, subset in zip(HALF_CLASS_SEEDS, subsets):
        assert len(subset) == num_classes // 2 == len(set(subset.tolist()))
        assert subset.tolist() == sorted(subset.tolist())
        assert 0 <= subset.min() and subset.max() < num_classes
        np.random.seed(seed)  # the original's recipe: global seed, then a permutation's first half
        assert subset.tolist() == sorted(np.random.permutation(num_classes)[: num_classes // 2].tolist())
        assert torch.equal(half_class_subset(num_classes, seed), subset)
    distinct = len({tuple(s.tolist()) for s in subsets})
    assert distinct == len(subsets) if num_classes > 8 else distinct > 1  # 8 classes have only 70 halves


def test_half_class_subset_of_one_class_is_an_error():
    with pytest.raises(ValueError, match="at least 2 classes"):
        half_class_subset(1, 0)


# --- restricted top-k ---------------------------------------------------------------------------------

def brute_force_topk(logits, labels, classes, ks=(1, 5)):
    """Per video in plain Python: softmax over `classes` per unit, mean over units, rank of the label."""
    classes = [int(c) for c in classes]
    hits, counted = [0] * len(ks), 0
    for video_logits, label in zip(logits.tolist(), labels.tolist()):
        if label not in classes:
            continue
        counted += 1
        score = {c: 0.0 for c in classes}
        for unit in video_logits:
            total = sum(math.exp(unit[c]) for c in classes)
            for c in classes:
                score[c] += math.exp(unit[c]) / total / len(video_logits)
        better = sum(score[c] > score[label] for c in classes)
        for i, k in enumerate(ks):
            hits[i] += better < k
    return [100.0 * h / counted for h in hits]


@pytest.mark.parametrize("units", [1, 4])
def test_restricted_topk_equals_brute_force(units):
    generator = torch.Generator().manual_seed(units)
    logits = torch.randn(60, units, 12, generator=generator) * 2
    labels = torch.randint(0, 12, (60,), generator=generator)
    for classes in (torch.arange(12), torch.tensor([0, 3, 4, 7, 9, 11]), half_class_subset(12, 3)):
        expected = brute_force_topk(logits.double(), labels, classes)
        assert subset_topk(logits, labels, classes) == pytest.approx(expected)


def test_restricted_softmax_is_not_a_renormalisation_of_the_full_scores():
    # With several views, full-class probabilities restricted to a subset can rank it otherwise: class 2
    # takes nearly all of view 2's mass, so the full scores favour class 1 (view 1's choice) while the
    # softmax over {0, 1} lets view 2's strong preference for class 0 count.
    logits = torch.tensor([[[0.0, 0.5, 0.0], [5.0, 0.0, 10.0]]])
    full = logits.softmax(-1).mean(1)[0]
    assert full[1] > full[0]
    assert subset_topk(logits, torch.tensor([0]), torch.tensor([0, 1]), ks=(1,)) == [100.0]


def test_subset_without_videos_is_an_error():
    with pytest.raises(ValueError, match="none of the 2 videos"):
        subset_topk(torch.zeros(2, 1, 4), torch.tensor([0, 1]), torch.tensor([2, 3]))


# --- aggregation --------------------------------------------------------------------------------------

def test_mean_std_is_numpys_population_std():
    values = [70.0, 72.5, 68.0, 75.25]
    aggregate = MeanStd.of(values)
    assert (aggregate.mean, aggregate.std) == pytest.approx((np.mean(values), np.std(values)))
    assert MeanStd.of([1.0, 2.0, 3.0, 4.0]).std == pytest.approx(math.sqrt(1.25))


def test_half_class_result_averages_the_ten_halves():
    # One video per class; videos of "good" classes score their class highest, the others their class
    # lowest, so in any half the top-1 accuracy is the share of good classes among the selected ones.
    num_classes, good = 10, {0, 2, 3, 7}
    logits = torch.stack([F.one_hot(torch.tensor(c), num_classes).float() * (5 if c in good else -5)
                          for c in range(num_classes)])[:, None]
    result = zero_shot_result(logits, torch.arange(num_classes))
    shares = []
    for seed in HALF_CLASS_SEEDS:
        np.random.seed(seed)
        chosen = np.random.permutation(num_classes)[: num_classes // 2]
        shares.append(100.0 * len(good & set(chosen.tolist())) / len(chosen))
    assert (result.top1, result.top5) == (40.0, 40.0)  # the other videos rank their class last
    assert (result.half_top1.mean, result.half_top1.std) == pytest.approx((np.mean(shares), np.std(shares)))
    assert result.half_top5 == MeanStd(100.0, 0.0)  # 5 classes per half: every label is in the top 5
    full, half = result.summary().splitlines()
    assert full == "Full-classes: Top1 40.000% Top5 40.000%"
    assert half == (f"Half-classes: Top1 mean {np.mean(shares):.3f}% std {np.std(shares):.3f}%, "
                    "Top5 mean 100.000% std 0.000%")


def test_splits_summary_gives_mean_and_std_of_full_class_numbers():
    results = [zero_shot_result(torch.randn(20, 1, 6), torch.arange(20) % 6) for _ in range(3)]
    top1 = [r.top1 for r in results]
    top5 = [r.top5 for r in results]
    assert splits_summary(results) == (
        f"Splits (3): Full-classes: Top1 mean {np.mean(top1):.3f}% std {np.std(top1):.3f}%, "
        f"Top5 mean {np.mean(top5):.3f}% std {np.std(top5):.3f}%")


def test_multi_label_data_is_rejected():
    with pytest.raises(ValueError, match="single-label"):
        zero_shot_result(torch.zeros(2, 1, 4), torch.zeros(2, 4))


# --- the program, end to end --------------------------------------------------------------------------

@pytest.fixture
def checkpoint(tmp_path):
    import clip
    from modules import VideoHeader
    torch.manual_seed(0)
    model = clip.create_model("ViT-Tiny/16", image_resolution=32)
    header = VideoHeader.for_clip("Transf", "VCS", model)
    path = tmp_path / "model_best.pt"
    torch.save(original_layout(model, header, "module."), path)
    return str(path)


def both_lists(tiny_config, tmp_path):
    """All 16 tiny videos (train + val) in one list: two per class."""
    data = tiny_config.values["data"]
    lines = Path(data["train_list"]).read_text().splitlines() + Path(data["val_list"]).read_text().splitlines()
    return write_text(str(tmp_path / "all.txt"), lines), lines


def test_video_scoring_numbers_match_test_py_under_their_own_labels(tiny_config, checkpoint, tmp_path, capsys):
    val_list, _ = both_lists(tiny_config, tmp_path)
    config = tiny_config.write(data={"val_list": val_list})
    common = ["--config", config, "--weights", checkpoint, "--cpu", "--no_progress"]
    [result] = test_zeroshot.main([*common, "--scoring", "video", "--save_scores", str(tmp_path / "zs.pt")])
    printed = capsys.readouterr().out
    reference = test_program.main([*common, "--save_scores", str(tmp_path / "test.pt")])

    assert not PUBLISHED_LABEL.search(printed)  # cannot be mistaken for the published protocol
    full, half = VIDEO_FULL_LINE.findall(printed), VIDEO_HALF_LINE.findall(printed)
    assert full == [(f"{reference.top1:.3f}", f"{reference.top5:.3f}")] and len(half) == 1
    assert (result.top1, result.top5) == (reference.top1, reference.top5)
    saved, expected = (torch.load(tmp_path / name, weights_only=True) for name in ("zs.pt", "test.pt"))
    torch.testing.assert_close(saved["scores"], expected["scores"], rtol=0, atol=1e-7)
    assert torch.equal(saved["labels"], expected["labels"])
    # One view: a softmax over a subset equals test.py's probabilities renormalised over that subset.
    halves = []
    for seed in HALF_CLASS_SEEDS:
        subset = half_class_subset(8, seed).tolist()
        halves.append(brute_force_topk(expected["scores"].double().log()[:, None], expected["labels"], subset))
    top1, top5 = zip(*halves)
    expected_half = (np.mean(top1), np.std(top1), np.mean(top5), np.std(top5))
    assert (result.half_top1.mean, result.half_top1.std, result.half_top5.mean, result.half_top5.std) == \
        pytest.approx(expected_half)
    assert half[0] == tuple(f"{v:.3f}" for v in expected_half)


def test_two_splits_report_each_split_and_their_mean(tiny_config, checkpoint, tmp_path, capsys):
    _, lines = both_lists(tiny_config, tmp_path)
    names = load_class_names(tiny_config.values["data"]["label_list"])
    configs = []
    for split, classes in enumerate(([0, 1, 2, 3], [4, 6, 5, 7]), start=1):  # each split renumbers its classes
        labels = write_labels_csv(str(tmp_path / f"labels{split}.csv"), [names[c] for c in classes])
        entries = [f"{line.rsplit(' ', 1)[0]} {classes.index(int(line.split()[-1]))}"
                   for line in lines if int(line.split()[-1]) in classes]
        listed = write_text(str(tmp_path / f"list{split}.txt"), entries)
        configs.append(tiny_config.write(f"split{split}.yaml", data={"val_list": listed, "label_list": labels,
                                                                     "num_classes": 4}))
    common = ["--weights", checkpoint, "--cpu", "--no_progress", "--test_crops", "3"]
    results = test_zeroshot.main([*common, "--scoring", "video", "--config", configs[0], "--config", configs[1]])
    printed = capsys.readouterr().out

    references = [test_program.main([*common, "--config", c]) for c in configs]
    assert [(r.top1, r.top5) for r in results] == [(r.top1, r.top5) for r in references]
    assert printed.count("Split 1/2: " + configs[0]) == 1 and printed.count("Split 2/2: " + configs[1]) == 1
    assert VIDEO_FULL_LINE.findall(printed) == [(f"{r.top1:.3f}", f"{r.top5:.3f}") for r in references]
    assert len(VIDEO_HALF_LINE.findall(printed)) == 2 and not PUBLISHED_LABEL.search(printed)
    top1 = [r.top1 for r in references]
    top5 = [r.top5 for r in references]
    assert printed.rstrip().splitlines()[-1] == (
        f"Splits (2): Video-level scores, all classes: Top1 mean {np.mean(top1):.3f}% std {np.std(top1):.3f}%, "
        f"Top5 mean {np.mean(top5):.3f}% std {np.std(top5):.3f}%")


def original_multi_split_test(frame_embeddings, class_embeddings, labels):
    """The original test_zeroshot.py's figures in plain tensor math and numpy: per frame 100 x image
    embedding . normalised class embedding, softmax per frame, mean over frames; halves from
    `np.random.seed(split)` permutations, their subset the selected classes that label a video."""
    text = class_embeddings / class_embeddings.norm(dim=-1, keepdim=True)

    def accuracy(embeddings, text, labels):
        scores = (100.0 * embeddings @ text.T).softmax(dim=-1).mean(dim=1)
        top = scores.topk(5, dim=1).indices.numpy()
        return [100.0 * np.mean([label in row[:k] for row, label in zip(top, labels)]) for k in (1, 5)]

    full = accuracy(frame_embeddings, text, labels)
    halves = []
    for split in range(10):
        np.random.seed(split)
        selected = np.random.permutation(len(text))[: len(text) // 2]
        keep = np.array([label in selected for label in labels])
        subclasses = np.unique(labels[keep])
        assert len(subclasses) >= 5  # the original's top-5 needs 5 classes in every half
        new_labels = np.array([int(np.where(label == subclasses)[0][0]) for label in labels[keep]])
        halves.append(accuracy(frame_embeddings[torch.from_numpy(keep)], text[subclasses], new_labels))
    top1, top5 = np.array(halves).T
    return full, (np.mean(top1), np.std(top1), np.mean(top5), np.std(top5))


def test_default_is_the_published_per_frame_protocol(tiny_config, openai_reference, tmp_path, capsys):
    # 16 videos, each its own class, among 20 classes: the 4 classes without videos are dropped from the
    # halves that select them, as the original does, and every half keeps at least 5 classes.
    lines = both_lists(tiny_config, tmp_path)[1]
    names = load_class_names(tiny_config.values["data"]["label_list"])
    names = names + [f"{name} twice" for name in names] + ["juggling", "knitting", "rowing", "sneezing"]
    entries = [f"{line.rsplit(' ', 1)[0]} {index}" for index, line in enumerate(lines)]
    config = tiny_config.write(data={"val_list": write_text(str(tmp_path / "own.txt"), entries), "num_classes": 20,
                                     "label_list": write_labels_csv(str(tmp_path / "20.csv"), names)})
    import clip
    from modules import VideoHeader
    torch.manual_seed(0)
    model = clip.create_model("ViT-Tiny/16", image_resolution=32)
    with torch.no_grad():  # image embeddings of norm ~0.2: per-frame softmaxes that do not saturate (no ties)
        model.visual.proj.mul_(0.02)
    torch.save(original_layout(model, VideoHeader.for_clip("Transf", "VCS", model), "module."), tmp_path / "zs.pt")
    [result] = test_zeroshot.main(["--config", config, "--weights", str(tmp_path / "zs.pt"), "--cpu",
                                   *FP32, "--no_progress", "--save_scores", str(tmp_path / "scores.pt")])
    printed = capsys.readouterr().out

    # The same frames (the test dataset's one view per video), then plain math on the checkpoint's weights.
    state = model.state_dict()
    tokens = reference_tokenize(openai_reference.simple_tokenizer.SimpleTokenizer(),
                                [f"This is a video about {name}" for name in names])
    mean, std = torch.tensor(clip.CLIP_MEAN).view(3, 1, 1), torch.tensor(clip.CLIP_STD).view(3, 1, 1)
    dataset = build_dataset(load_config(config), "test")
    with torch.no_grad():
        class_embeddings, _ = clip_math.text_features(state, tokens)
        frame_embeddings = torch.stack([clip_math.vit_image_features(state, (views[0].float() / 255 - mean) / std)
                                        for views, _ in (dataset[i] for i in range(len(dataset)))])
    labels = np.arange(len(lines))
    (top1, top5), half = original_multi_split_test(frame_embeddings, class_embeddings, labels)

    expected_logits = 100.0 * frame_embeddings @ (class_embeddings / class_embeddings.norm(dim=-1, keepdim=True)).T
    saved = torch.load(tmp_path / "scores.pt", weights_only=True)
    torch.testing.assert_close(saved["logits"], expected_logits, rtol=1e-4, atol=5e-3)  # fp32 rounding (logits ~ 100)
    assert FULL_LINE.findall(printed) == [(f"{top1:.3f}", f"{top5:.3f}")]
    assert HALF_LINE.findall(printed) == [tuple(f"{value:.3f}" for value in half)]
    assert (result.half_top1.mean, result.half_top1.std, result.half_top5.mean, result.half_top5.std) == \
        pytest.approx(half)
    assert not VIDEO_FULL_LINE.search(printed)


def test_frames_scoring_is_the_originals_per_frame_clip_softmax(tiny_config, checkpoint, tmp_path):
    config_path = tiny_config.write()
    test_zeroshot.main(["--config", config_path, "--weights", checkpoint, "--cpu", *FP32, "--no_progress",
                        "--test_crops", "3", "--scoring", "frames", "--save_scores", str(tmp_path / "f.pt")])
    saved = torch.load(tmp_path / "f.pt", weights_only=True)

    config = load_config(config_path)
    loader = inference.test_loader(config, init_distributed(force_cpu=True), 3, 1, False)
    encoder, _ = inference.load_video_model(config, checkpoint)
    with torch.no_grad():
        text, _ = inference.class_texts(encoder, loader.dataset.class_names, "cpu", contextlib.nullcontext)
        text = text / text.norm(dim=-1, keepdim=True)  # the image embeddings stay unnormalised, as the original's
        expected = []
        for views, _ in loader:
            images = normalize_on_device(views, torch.device("cpu")).flatten(0, 2)  # [B * 3 views * 4 frames]
            per_frame = (100.0 * encoder.clip.encode_image(images) @ text.t()).view(len(views), 12, -1)
            expected.append(per_frame)
    torch.testing.assert_close(saved["logits"], torch.cat(expected), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(saved["scores"], torch.cat(expected).softmax(-1).mean(1), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_script_with_two_processes_equals_one_process(tiny_config, checkpoint, tmp_path):
    val_lines = Path(tiny_config.values["data"]["val_list"]).read_text().splitlines()[:7]
    config = tiny_config.write(data={"val_list": write_text(str(tmp_path / "val7.txt"), val_lines),
                                     "batch_size": 2})
    env = dict(os.environ, NPROC_PER_NODE="2", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(REPO))
    completed = subprocess.run(["bash", str(REPO / "scripts" / "run_test_zeroshot.sh"), config, checkpoint,
                                "--test_crops", "3", "--cpu", "--no_progress", "--save_scores",
                                str(tmp_path / "two.pt")], env=env, capture_output=True, text=True, timeout=240)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    [one] = test_zeroshot.main(["--config", config, "--weights", checkpoint, "--test_crops", "3", "--cpu",
                                "--no_progress", "--save_scores", str(tmp_path / "one.pt")])
    two, single = (torch.load(tmp_path / f"{n}.pt", weights_only=True) for n in ("two", "one"))
    assert single["logits"].shape == (7, 3 * 4, 8)  # per-frame units: 3 views x 4 frames
    assert torch.equal(two["labels"], single["labels"])
    torch.testing.assert_close(two["logits"], single["logits"], rtol=1e-5, atol=1e-6)
    assert FULL_LINE.findall(completed.stdout) == [(f"{one.top1:.3f}", f"{one.top5:.3f}")]
