"""tools/predict.py: scores equal test.py's for the same video and views; the plot shows the model's VCS weights."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import test as test_program
from datasets.decoding import SampleReadError
from datasets.transforms import normalize_on_device
from tests.tiny_run import FP32, one_video_config, write_tiny_checkpoint
from tools import predict
from utils.config import load_config
from utils.errors import UsageError
from workflows.prediction import Predictor, parse_class_names, saliency_figure

VIEWS = ["--test_crops", "3", "--test_clips", "2"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("predict_ckpt") / "model_best.pt", seed=0)


@pytest.mark.parametrize("modality", ["video", "RGB"])
def test_scores_equal_test_py_for_the_same_video_and_views(modality, tiny_config, checkpoint, tmp_path):
    config, video = one_video_config(tiny_config, tmp_path, modality)
    test_program.main(["--config", config, "--weights", checkpoint, *VIEWS, "--cpu", "--no_progress",
                       "--save_scores", str(tmp_path / "scores.pt")])
    saved = torch.load(tmp_path / "scores.pt", weights_only=True)
    assert (saved["weights"], saved["video_list"]) == (checkpoint, str(tmp_path / "one.txt"))  # for titles
    expected = saved["scores"][0]

    predictions = predict.main(["--config", config, "--weights", checkpoint, video, *VIEWS, "--cpu",
                                "--output", str(tmp_path / "out.json")])
    torch.testing.assert_close(predictions[0].scores, expected, atol=1e-6, rtol=1e-5)
    written = json.loads((tmp_path / "out.json").read_text())
    names = load_config(config).data.label_list
    assert list(written[0]["scores"]) == parse_class_names(names)
    np.testing.assert_allclose(list(written[0]["scores"].values()), expected.numpy(), rtol=1e-5, atol=1e-6)
    assert written[0]["top"][0] == parse_class_names(names)[int(expected.argmax())]


def test_plot_shows_the_header_vcs_weights(tiny_config, checkpoint, tmp_path, monkeypatch):
    config_path, video = one_video_config(tiny_config, tmp_path, "RGB")
    config = load_config(config_path)
    predictor = Predictor(config, ["moving left", "growing", "rotating", "vanishing"], checkpoint)
    prediction = predictor.predict(video)
    classes = [i for i, _ in prediction.top(3)]
    shown = {}
    monkeypatch.setattr(predict, "plot_saliency", lambda p, saliency, *rest: shown.setdefault("weights", saliency))
    predict.main(["--config", config_path, "--weights", checkpoint, video, "--cpu",
                  "--classes", "moving left,growing,rotating,vanishing"])  # without --plot: nothing drawn
    assert shown == {}

    with torch.no_grad():  # the model's own path: header.aggregate, then its concept weights
        frames = predictor.encoder.encode_video(normalize_on_device(prediction.frames[None]))
        direct = predictor.header.concept_weights(predictor.header.aggregate(frames), predictor.tokens[classes])
    torch.testing.assert_close(predictor.saliency(prediction.frames, classes), direct[:, 0], rtol=0, atol=0)
    assert torch.allclose(direct.sum(-1), torch.ones(3, 1))

    predict.main(["--config", config_path, "--weights", checkpoint, video, "--cpu", *FP32,  # as the Predictor
                  "--classes", "moving left,growing,rotating,vanishing", "--plot", str(tmp_path / "x.png")])
    torch.testing.assert_close(shown["weights"], direct[:, 0], rtol=0, atol=0)


def test_plot_png_is_drawn(tiny_config, checkpoint, tmp_path):
    config, video = one_video_config(tiny_config, tmp_path, "video")
    predict.main(["--config", config, "--weights", checkpoint, video, "--cpu", "--plot", str(tmp_path / "s.png")])
    with Image.open(tmp_path / "s.png") as image:
        assert image.size == (800, 650)  # 4 frames: the 8 x 6.5 inch minimum at 100 dpi
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    assert pixels.std() > 0


def test_calibrated_probabilities_and_the_panels_that_show_them(tiny_config, checkpoint, tmp_path):
    config_path, video = one_video_config(tiny_config, tmp_path, "RGB")
    predictor = Predictor(load_config(config_path), ["moving left", "growing", "rotating", "vanishing"], checkpoint,
                          test_clips=2, test_crops=3)
    prediction = predictor.predict(video)
    with torch.no_grad():  # cosine similarities of the 6 views, by the model's own path
        views = normalize_on_device(predictor.views(video))
        frames = predictor.encoder.encode_video(views)
        cosine = predictor.header(frames, predictor.tokens, predictor.eot).float()
    scale = predictor.encoder.clip.logit_scale.exp().item()
    torch.testing.assert_close(prediction.scores, cosine.softmax(-1).mean(0))  # test.py's, no logit scale
    torch.testing.assert_close(prediction.probabilities, (scale * cosine).softmax(-1).mean(0))
    assert prediction.logit_scale == pytest.approx(scale)

    classes = [i for i, _ in prediction.top(3)]
    figure = saliency_figure(prediction, predictor.saliency(prediction.frames, classes), predictor.class_names,
                             classes, top=4)
    score_axis, probability_axis = figure.axes[-2:]
    assert "no logit scale" in score_axis.get_title() and f"{scale:.1f} x cosine" in probability_axis.get_title()
    order = [i for i, _ in prediction.top(4)]
    for axis, values in ((score_axis, prediction.scores), (probability_axis, prediction.probabilities)):
        shown = sorted(text.get_text() for text in axis.texts)  # the bars' numbers
        assert shown == sorted(f"{values[i]:.3f}" for i in order)
        top_value = max(values.max().item(), 0.25)
        assert top_value < axis.get_xlim()[1] <= 1.3 * top_value + 1e-9  # scaled to the data, not 0-1
    top_down = sorted(zip(score_axis.get_yticks(), score_axis.get_yticklabels()), key=lambda tick: -tick[0])
    assert [label.get_text() for _, label in top_down] == [predictor.class_names[i] for i in order]


def test_clear_errors(tiny_config, checkpoint, tmp_path):
    config, video = one_video_config(tiny_config, tmp_path, "video")
    base = ["--config", config, "--weights", checkpoint, "--cpu"]
    missing = str(tmp_path / "nope.mp4")
    with pytest.raises(FileNotFoundError, match="nope.mp4 does not exist"):
        predict.main([*base, missing])
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all" * 10)
    with pytest.raises(SampleReadError, match="broken.mp4"):
        predict.main([*base, str(tmp_path / "broken.mp4")])
    with pytest.raises(UsageError, match="names no classes"):
        predict.main([*base, video, "--classes", " , "])
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(UsageError, match="empty.txt names no classes"):
        predict.main([*base, video, "--classes", str(tmp_path / "empty.txt")])


def test_the_checkpoint_epoch_is_counted_as_in_the_training_log(tiny_config, checkpoint, tmp_path, caplog):
    config, video = one_video_config(tiny_config, tmp_path, "RGB")
    with caplog.at_level("INFO"):
        predict.main(["--config", config, "--weights", checkpoint, video, "--cpu"])
    assert f"loaded {checkpoint} (epoch 8)" in caplog.text  # the original's field 'epoch' is 0-based: 7

    saved = torch.load(checkpoint, weights_only=True) | {"epoch": 11, "config": {"solver": {"epochs": 12}}}
    torch.save(saved, tmp_path / "last.pt")
    caplog.clear()
    with caplog.at_level("INFO"):
        predict.main(["--config", config, "--weights", str(tmp_path / "last.pt"), video, "--cpu"])
    assert f"loaded {tmp_path / 'last.pt'} (epoch 12/12)" in caplog.text
