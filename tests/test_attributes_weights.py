"""test.py --attributes_weights: the original's separately trained video + attributes pair, fused.

The attributes file is a tiny checkpoint in the layout of the original `train_attributes.py` (its CLIP
under 'model_state_dict', the query_fc/sentence_fc head under 'fusion_model_state_dict', `module.`
prefixes), whose CLIP differs from the video checkpoint's. The reference scores are plain tensor math on
that file's weights, with OpenAI's tokenizer.
"""
import json
import re
from pathlib import Path

import pytest
import torch

import test as test_program
from datasets.annotations import load_class_names
from datasets.attributes import AttributesError
from modules import AttributesHead, VideoHeader
from tests import clip_math
from tests.equivalence import perturbed, reference_tokenize
from tests.tiny_run import FP32, attributes_checkpoint, original_layout, tiny_clip
from utils.errors import UsageError

LINE = r"Overall Prec@1 (\d+\.\d{3})% Prec@5 (\d+\.\d{3})%"


@pytest.fixture
def pair(tiny_config, tmp_path):
    """(config, video checkpoint, attributes checkpoint, attributes CLIP state, head state, phrases per video)."""
    video_model = tiny_clip(0)
    torch.save(original_layout(video_model, VideoHeader.for_clip("Transf", "VCS", video_model), "module."),
               tmp_path / "video.pt")
    attributes_model = tiny_clip(1)
    head_state = perturbed(AttributesHead(attributes_model.config.embed_dim).state_dict(), seed=2, scale=0.3)
    attributes = attributes_checkpoint(attributes_model, head_state, tmp_path / "attributes.pt")

    names = load_class_names(tiny_config.values["data"]["label_list"])
    videos = [line.split()[0] for line in Path(tiny_config.values["data"]["val_list"]).read_text().splitlines()]
    generator = torch.Generator().manual_seed(3)
    phrases = {video: [names[i] for i in torch.randperm(len(names), generator=generator)[:3].tolist()]
               for video in videos}
    (tmp_path / "val_attributes.json").write_text(json.dumps(
        {video: {"classname_topk": ranked, "classname_topk_scores": [0.3, 0.2, 0.1]}
         for video, ranked in phrases.items()}))
    config = tiny_config.write(data={"attributes_val_path": str(tmp_path / "val_attributes.json"),
                                     "select_topk_attributes": 2})
    return config, str(tmp_path / "video.pt"), attributes, attributes_model.state_dict(), head_state, phrases


def plain_attribute_scores(clip_state, head_state, sentences, class_names, tokenizer):
    """Softmax over the classes of cosine(sentence_fc(sentence), query_fc(class prompt)), from raw weights."""
    def features(texts):
        eot, _ = clip_math.text_features(clip_state, reference_tokenize(tokenizer, texts))
        return eot / eot.norm(dim=-1, keepdim=True)

    def mlp(x, name):
        hidden = torch.relu(x @ head_state[f"{name}.0.weight"].T + head_state[f"{name}.0.bias"])
        out = hidden @ head_state[f"{name}.2.weight"].T + head_state[f"{name}.2.bias"]
        return out / out.norm(dim=-1, keepdim=True)

    with torch.no_grad():
        queries = mlp(features([f"This is a video about {name}" for name in class_names]), "query_fc")
        return (mlp(features(sentences), "sentence_fc") @ queries.T).softmax(dim=-1)


def top1_top5(scores, labels):
    top = scores.topk(5, dim=1).indices
    return [100.0 * (top[:, :k] == labels[:, None]).any(dim=1).float().mean().item() for k in (1, 5)]


def test_attributes_branch_uses_the_attributes_files_text_tower_and_head(pair, tiny_config, openai_reference,
                                                                           tmp_path, capsys):
    config, video, attributes, clip_state, head_state, phrases = pair
    test_program.main(["--config", config, "--weights", video, "--attributes_weights", attributes, "--cpu",
                       *FP32, "--no_progress", "--save_scores", str(tmp_path / "scores.pt")])
    printed = capsys.readouterr().out
    saved = torch.load(tmp_path / "scores.pt", weights_only=True)

    tokenizer = openai_reference.simple_tokenizer.SimpleTokenizer()
    names = load_class_names(tiny_config.values["data"]["label_list"])
    sentences = ["This is a video about " + ",".join(ranked[:2]) for ranked in phrases.values()]  # the original's join
    expected = plain_attribute_scores(clip_state, head_state, sentences, names, tokenizer)
    torch.testing.assert_close(saved["attributes_scores"], expected, rtol=1e-5, atol=1e-6)
    # The video checkpoint's text tower would give other scores: the file's own one is what is used.
    other = plain_attribute_scores(tiny_clip(0).state_dict(), head_state, sentences, names, tokenizer)
    assert (other - expected).abs().max() > 1e-3
    torch.testing.assert_close(saved["fused_scores"], 0.7 * saved["scores"] + 0.3 * saved["attributes_scores"])

    labels = saved["labels"]
    video_line = re.search(rf"^{LINE}$", printed, re.M)
    attributes_line = re.search(rf"^attributes branch: {LINE}$", printed, re.M)
    fused_line = re.search(rf"^fused \(0\.7 video \+ 0\.3 attributes\): {LINE}$", printed, re.M)
    assert video_line and attributes_line and fused_line, printed
    assert video_line.groups() == tuple(f"{v:.3f}" for v in top1_top5(saved["scores"], labels))
    assert attributes_line.groups() == tuple(f"{v:.3f}" for v in top1_top5(expected, labels))
    fused = 0.7 * saved["scores"] + 0.3 * expected
    assert fused_line.groups() == tuple(f"{v:.3f}" for v in top1_top5(fused, labels))


def test_fusion_weights_apply_to_an_attributes_file(pair, tmp_path):
    config, video, attributes, *_ = pair
    test_program.main(["--config", config, "--weights", video, "--attributes_weights", attributes, "--cpu",
                       "--no_progress", "--fusion_weights", "0.4", "0.6", "--save_scores", str(tmp_path / "s.pt")])
    saved = torch.load(tmp_path / "s.pt", weights_only=True)
    torch.testing.assert_close(saved["fused_scores"], 0.4 * saved["scores"] + 0.6 * saved["attributes_scores"])


def test_a_file_without_an_attributes_head_is_an_error_naming_it(pair, tmp_path):
    config, video, *_ = pair
    run = ["--config", config, "--weights", video, "--cpu", "--no_progress", "--attributes_weights"]
    with pytest.raises(ValueError, match=re.escape(video) + r".*no attributes head.*query_fc"):
        test_program.main(run + [video])  # a video checkpoint: its fusion_model_state_dict is a video header
    model = tiny_clip(1)
    torch.save({"epoch": 1, "model_state_dict": model.state_dict()}, tmp_path / "headless.pt")
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "headless.pt")) + r".*missing keys "
                                         r"\['fusion_model_state_dict'\]"):
        test_program.main(run + [str(tmp_path / "headless.pt")])
    head_state = AttributesHead(model.config.embed_dim).state_dict()
    del head_state["sentence_fc.2.bias"]
    broken = attributes_checkpoint(model, head_state, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match=re.escape(broken) + r"(.|\n)*missing keys \(1\): sentence_fc\.2\.bias"):
        test_program.main(run + [broken])


def test_attributes_file_needs_the_attributes_of_the_list(pair, tiny_config):
    _, video, attributes, *_ = pair
    config = tiny_config.write("no_attributes.yaml")
    with pytest.raises(ValueError, match=r"data\.attributes_val_path"):
        test_program.main(["--config", config, "--weights", video, "--attributes_weights", attributes, "--cpu"])


def test_predict_fuses_an_attributes_file_for_inputs_the_json_covers(pair, tiny_config, openai_reference, tmp_path):
    from tools import predict
    config, video, attributes, clip_state, head_state, phrases = pair
    folder = str(Path(tiny_config.values["data"]["val_root"]) / next(iter(phrases)))
    (tmp_path / "mine.json").write_text(json.dumps({folder: {"classname_topk": next(iter(phrases.values()))}}))
    common = ["--config", config, "--weights", video, "--cpu", *FP32, folder]
    [plain] = predict.main(common)
    [fused] = predict.main([*common, "--attributes_weights", attributes, "--attributes", str(tmp_path / "mine.json"),
                            "--output", str(tmp_path / "out.json")])

    names = load_class_names(tiny_config.values["data"]["label_list"])
    sentence = "This is a video about " + ",".join(next(iter(phrases.values()))[:2])  # select_topk_attributes 2
    tokenizer = openai_reference.simple_tokenizer.SimpleTokenizer()
    attribute_part = plain_attribute_scores(clip_state, head_state, [sentence], names, tokenizer)[0]
    expected = 0.7 * plain.scores + 0.3 * attribute_part
    torch.testing.assert_close(fused.scores, expected, rtol=1e-5, atol=1e-6)
    written = json.loads((tmp_path / "out.json").read_text())[0]["scores"]
    torch.testing.assert_close(torch.tensor([written[name] for name in names]), expected, rtol=1e-5, atol=1e-6)

    (tmp_path / "other.json").write_text(json.dumps({"elsewhere": {"classname_topk": ["growing"]}}))
    with pytest.raises(AttributesError, match=re.escape(folder) + ".*other.json"):
        predict.main([*common, "--attributes_weights", attributes, "--attributes", str(tmp_path / "other.json")])
    with pytest.raises(UsageError, match="--attributes_weights and --attributes go together"):
        predict.main([*common, "--attributes_weights", attributes])
