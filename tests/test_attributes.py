"""Attributes: the original JSON layout, located errors, generation against an independent computation,
a label-aware retriever, interruption and multi-process resumption that give the same file, fusion."""
import json
import os
import textwrap

import pytest
import torch
import torch.nn.functional as F

import clip
from datasets import VideoDataset, normalize_on_device
from datasets.attributes import AttributesDataset, AttributesError, read_attributes, write_attributes
from datasets.build import build_dataset
from modules import VideoHeader
from modules.video_clip import VideoEncoder
from tools import generate_attributes as generate_tool
from workflows.attribute_generation import ChunkLog, generate_attributes, read_lexicon
from workflows.fusion import evaluate_fusion, fuse_scores
from utils.config import load_config
from workflows.training import build_clip, seed_everything
from tests.tiny_run import FP32

# A file as the original authors distribute them: pretty-printed, phrases only (no scores).
ORIGINAL_LAYOUT = textwrap.dedent("""\
    {
        "abseiling/-7kbO0v4hag_000107_000117": {
            "classname_topk": ["abseiling", "rock climbing", "ice climbing", "climbing a rope", "bungee jumping"]
        },
        "zumba/-0hyIDc4Tz8_000031_000041": {
            "classname_topk": ["zumba", "dancing macarena", "belly dancing", "tap dancing", "salsa dancing"]
        }
    }
""")


@pytest.fixture
def original_files(tmp_path):
    """A frame list, a labels CSV and an attributes JSON in the original layout."""
    (tmp_path / "list.txt").write_text("abseiling/-7kbO0v4hag_000107_000117 300 0\nzumba/-0hyIDc4Tz8_000031_000041 250 1\n")
    (tmp_path / "labels.csv").write_text("id,name\n0,abseiling\n1,zumba\n")
    (tmp_path / "attributes.json").write_text(ORIGINAL_LAYOUT)
    videos = VideoDataset(tmp_path / "list.txt", tmp_path / "labels.csv", mode="test")
    return videos, tmp_path / "attributes.json"


def test_a_file_in_the_original_layout_gives_the_originals_sentences(original_files):
    videos, attributes_file = original_files
    sentences = AttributesDataset(videos, attributes_file, topk=3)
    assert sentences.sentences == ["This is a video about abseiling, rock climbing, ice climbing",
                                   "This is a video about zumba, dancing macarena, belly dancing"]
    # The original joins the phrases with "," alone; CLIP's tokenizer reads both the same.
    tokens, label = sentences[1]
    assert torch.equal(tokens, clip.tokenize("This is a video about zumba,dancing macarena,belly dancing")[0])
    assert label == 1 and len(sentences) == 2


def test_written_files_keep_the_layout_and_order(tmp_path, original_files):
    _, attributes_file = original_files
    entries = read_attributes(attributes_file)
    entries["zumba/-0hyIDc4Tz8_000031_000041"]["classname_topk_scores"] = [0.31, 0.3, 0.29, 0.2, 0.1]
    copy = tmp_path / "copy.json"
    write_attributes(entries, copy)
    assert list(json.loads(copy.read_text())) == list(entries)
    umask = os.umask(0)
    os.umask(umask)
    assert copy.stat().st_mode & 0o777 == 0o666 & ~umask  # readable like any file, not private to its writer
    assert read_attributes(copy) == json.loads(attributes_file.read_text()) | {
        "zumba/-0hyIDc4Tz8_000031_000041": entries["zumba/-0hyIDc4Tz8_000031_000041"]}


def test_malformed_json_is_an_error_naming_file_and_position(tmp_path, original_files):
    videos, _ = original_files
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "abseiling/-7kbO0v4hag_000107_000117": {"classname_topk": ["abseiling",]}\n}\n')
    with pytest.raises(AttributesError, match=rf"{broken}: not valid JSON at line 2, column"):
        AttributesDataset(videos, broken)
    broken.write_text('["not", "a", "mapping"]')
    with pytest.raises(AttributesError, match="expected an object mapping video paths"):
        read_attributes(broken)


def test_a_video_without_attributes_is_an_error_naming_video_line_and_file(tmp_path, original_files):
    videos, _ = original_files
    partial = tmp_path / "partial.json"
    partial.write_text('{"abseiling/-7kbO0v4hag_000107_000117": {"classname_topk": ["abseiling"]}}')
    with pytest.raises(AttributesError, match=r"list\.txt:2: video 'zumba/-0hyIDc4Tz8_000031_000041' has no "
                                              rf"attributes in {partial}"):
        AttributesDataset(videos, partial)
    partial.write_text('{"abseiling/-7kbO0v4hag_000107_000117": {"topk": ["abseiling"]},'
                       ' "zumba/-0hyIDc4Tz8_000031_000041": {"classname_topk": ["zumba"]}}')
    with pytest.raises(AttributesError, match=r"list\.txt:1: .*'abseiling/.*' must hold 'classname_topk'"):
        AttributesDataset(videos, partial)


def test_lexicons_combine_in_order_without_repeats(tmp_path):
    phrases = tmp_path / "phrases.txt"
    phrases.write_text("a red square\n\nmoving left\nspinning\n")
    assert read_lexicon(["classes", phrases], ["moving left", "growing"]) == [
        "moving left", "growing", "a red square", "spinning"]
    with pytest.raises(FileNotFoundError, match="lexicon missing.txt does not exist"):
        read_lexicon(["missing.txt"], [])


def test_generated_phrases_and_scores_match_an_independent_computation(tiny_config, tmp_path):
    """Zero-shot CLIP: mean of the frame embeddings, normalised, cosine with the prompted phrases."""
    config_path = tiny_config.write(network={"arch": "ViT-Tiny/16", "init": False})
    lexicon = tmp_path / "phrases.txt"
    lexicon.write_text("a red square\nmoving left\nspinning\n")
    output = tmp_path / "val.json"
    generate_tool.main(["--config", config_path, "--output", str(output), "--lexicon", "classes", "--lexicon",
                        str(lexicon), "--topk", "4", "--batch_size", "3", "--save_every", "5", "--cpu",
                        *FP32, "--no_progress"])

    config = load_config(config_path)
    seed_everything(config.seed)
    model = build_clip(config).eval()
    dataset = build_dataset(config, "test")
    phrases = list(dataset.class_names) + ["a red square", "spinning"]
    generated = read_attributes(output)
    assert list(generated) == [record.path for record in dataset.records]
    with torch.no_grad():
        text = F.normalize(model.encode_text(clip.tokenize([f"This is a video about {p}" for p in phrases])), dim=-1)
        for index, record in enumerate(dataset.records):
            frames = normalize_on_device(dataset[index][0], "cpu")[0]
            video = F.normalize(model.encode_image(frames).mean(0), dim=-1)
            scores, best = (text @ video).topk(4)
            entry = generated[record.path]
            assert entry["classname_topk"] == [phrases[i] for i in best], record.path
            torch.testing.assert_close(torch.tensor(entry["classname_topk_scores"]), scores, atol=2e-6, rtol=0)


class Built(Exception):
    """Raised by a stand-in for build_dataset, carrying its keyword arguments."""


@pytest.mark.parametrize("options, views", [([], (2, 3)), (["--test_clips", "4", "--test_crops", "5"], (4, 5))])
def test_views_default_to_the_configs_as_in_every_other_tool(tiny_config, monkeypatch, options, views):
    config_path = tiny_config.write(data={"test_clips": 2, "test_crops": 3})

    def record(config, split, **views):
        raise Built(views)

    monkeypatch.setattr(generate_tool, "build_dataset", record)
    with pytest.raises(Built) as built:
        generate_tool.main(["--config", config_path, "--output", "unused.json", "--cpu", *FP32, *options])
    assert (built.value.args[0]["test_clips"], built.value.args[0]["test_crops"]) == views


class LabelAwareEncoder(VideoEncoder):
    """A retriever whose video features encode the label: it recognises each clip of `dataset` by its
    pixels and returns the text feature of its class prompt for every frame. Counts its calls and can
    stop with an error after `fail_after` of them, like an interrupted run."""

    def __init__(self, clip_model, dataset, fail_after=None):
        super().__init__(clip_model)
        with torch.no_grad():
            prompts = clip.tokenize([f"This is a video about {name}" for name in dataset.class_names])
            class_features = clip_model.encode_text(prompts)
        items = (dataset[index] for index in range(len(dataset)))
        self.known = [(normalize_on_device(views, "cpu")[0], class_features[label]) for views, label in items]
        self.calls, self.fail_after = 0, fail_after

    def encode_video(self, frames):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt("interrupted")
        features = [next(feature for clip_frames, feature in self.known if torch.equal(clip_frames, video))
                    for video in frames]
        return torch.stack(features)[:, None].expand(-1, frames.shape[1], -1)


@pytest.fixture
def retrieval(tiny_config):
    config = load_config(tiny_config.write())
    seed_everything(config.seed)
    dataset = build_dataset(config, "test")
    model = build_clip(config).eval()
    return model, dataset, VideoHeader("None", "DP", model.config.embed_dim).eval()


def run_generation(retrieval, output, encoder=None, **options):
    model, dataset, header = retrieval
    encoder = encoder or LabelAwareEncoder(model, dataset)
    options = dict(topk=3, batch_size=2, save_every=3, progress=False) | options
    return generate_attributes(encoder, header, dataset, read_lexicon(["classes"], dataset.class_names), output,
                               **options)


def test_a_retriever_that_knows_the_classes_ranks_the_true_class_first(retrieval, tmp_path):
    _, dataset, _ = retrieval
    entries = run_generation(retrieval, tmp_path / "val.json")
    first = [entries[record.path]["classname_topk"][0] for record in dataset.records]
    assert first == [dataset.class_names[record.label] for record in dataset.records]
    assert all(entry["classname_topk_scores"][0] == pytest.approx(1.0, abs=1e-5) for entry in entries.values())


def test_an_interrupted_generation_resumes_to_the_same_file(retrieval, tmp_path):
    model, dataset, _ = retrieval
    whole = tmp_path / "whole.json"
    run_generation(retrieval, whole)

    resumed = tmp_path / "resumed.json"
    interrupted = LabelAwareEncoder(model, dataset, fail_after=3)  # chunks of 3 videos, batches of 2
    with pytest.raises(KeyboardInterrupt):
        run_generation(retrieval, resumed, interrupted)
    log = tmp_path / "resumed.json.part0of1"
    assert not resumed.exists() and list(ChunkLog.read(log)) == [record.path for record in dataset.records[:3]]
    with open(log, "a") as file:  # as if killed while saving the next chunk
        file.write('{"moving_right/moving_right_001": {"classname_topk": ["mov')

    restarted = LabelAwareEncoder(model, dataset)
    run_generation(retrieval, resumed, restarted)
    assert restarted.calls == 3  # only chunks 2 (two batches) and 3 (one batch of 2) were scored
    assert resumed.read_bytes() == whole.read_bytes() and not log.exists()


def test_processes_share_the_chunks_and_rank_0_merges_the_same_file(retrieval, tmp_path):
    whole = tmp_path / "whole.json"
    run_generation(retrieval, whole)
    merged = tmp_path / "new folder" / "merged.json"
    second = LabelAwareEncoder(*retrieval[:2])
    assert run_generation(retrieval, merged, second, rank=1, world_size=2) is None
    assert second.calls == 2 and [p.name for p in merged.parent.glob("merged.json.part*")] == ["merged.json.part1of2"]
    run_generation(retrieval, merged, rank=0, world_size=2)
    assert merged.read_bytes() == whole.read_bytes()
    assert not list(merged.parent.glob("merged.json.part*"))


def test_fusion_is_the_weighted_sum_and_the_grid_finds_the_best_weight():
    torch.manual_seed(0)
    labels = torch.arange(6) % 3
    video = torch.softmax(torch.randn(6, 3), dim=1)
    attributes = torch.softmax(torch.randn(6, 3) * 3, dim=1)
    report = evaluate_fusion(video, attributes, labels, (0.6, 0.4), grid_steps=4)
    torch.testing.assert_close(report.fused.scores, 0.6 * video + 0.4 * attributes)
    torch.testing.assert_close(fuse_scores(video, attributes), 0.7 * video + 0.3 * attributes)

    def top1(scores):
        return 100.0 * (scores.argmax(1) == labels).float().mean().item()

    grid = [top1(w * video + (1 - w) * attributes) for w in (0, 0.25, 0.5, 0.75, 1)]
    assert report.best.top1 == pytest.approx(max(grid))
    assert report.video.top1 == pytest.approx(top1(video)) and report.attributes.top1 == pytest.approx(top1(attributes))
    assert "fused (0.6 video + 0.4 attributes): Overall Prec@1" in report.summary()
