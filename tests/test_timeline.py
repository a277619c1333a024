"""tools/predict.py --timeline: on a long video made of demo clips of known classes, with a model trained here on
those classes, the merged segments recover the classes in order with boundaries within one stride; the
streaming reader decodes the frames the seeking reader decodes; each frame is decoded once; the attributes
fusion reaches every window; mistakes are one-line errors."""
import csv
import json
import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import train as train_program
from datasets import synthetic
from datasets.annotations import write_labels_csv, write_list
from datasets.decoding import PyAVVideo, SampleReadError
from datasets.streaming import StreamingVideo
from modules import AttributesHead
from tests.codec_files import set_mp4_rotation
from tests.data_factory import frame_image, truncate_file, write_video
from tests.tiny_run import attributes_checkpoint, tiny_clip
from tests.tiny_run import FP32, TinyConfig
from tools import make_demo_data, predict
from utils.errors import UsageError
from workflows import timeline as timeline_module
from workflows.prediction import AttributesFusion
from workflows.timeline import Window, merge_segments, window_starts

CLASSES = (0, 2, 6)  # moving left, growing, appearing: one class of three demo pairs
REPEATS = 3  # each class's clip plays this many times in a row
WINDOW, STRIDE = 2.0, 0.5


SEED = 11


def class_clip(class_index):
    """The clip of the class that `long_video_frames` plays."""
    return synthetic.render_clip(class_index, synthetic.clip_params_for(SEED, class_index // 2, 0))


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    """(config, checkpoint, video, [(class name, start s, end s)]): a model trained on one clip per class, and
    the video where each clip plays REPEATS times, one class after another."""
    folder = tmp_path_factory.mktemp("timeline")
    names = [synthetic.CLASS_NAMES[c] for c in CLASSES]
    clips = [class_clip(c) for c in CLASSES]
    lines = []
    for label, frames in enumerate(clips):
        synthetic.write_jpeg_folder(folder / "frames" / str(label), frames)
        lines += [f"{label} {len(frames)} {label}"] * 16
    write_list(folder / "train.txt", lines)
    write_labels_csv(folder / "labels.csv", names)
    tiny = TinyConfig(SimpleNamespace(frames_root="", train_frames="", val_frames="", labels=""), folder)
    config = tiny.write(data={"train_root": str(folder / "frames"), "train_list": str(folder / "train.txt"),
                              "val_root": str(folder / "frames"), "val_list": str(folder / "train.txt"),
                              "label_list": str(folder / "labels.csv"), "num_classes": 3, "batch_size": 12,
                              "min_crop_scale": 1.0, "flip": False},
                        network={"sim_header": "None", "interaction": "DP", "fix_text": True},
                        solver={"epochs": 12, "lr": 1e-2}, logging={"print_freq": 10, "eval_freq": 4})
    # fp32: in the CPU's default bf16 the tiny model's scores differ between AMX and AVX512-BF16 machines by
    # enough to move a boundary window's label.
    train_program.main(["--config", config, "--log_time", "run", "--cpu", "--no_progress", *FP32])
    frames, parts = synthetic.long_video_frames(CLASSES, REPEATS, seed=SEED)
    truth = [(synthetic.CLASS_NAMES[label], start / synthetic.FPS, end / synthetic.FPS) for label, start, end in parts]
    video = folder / "long.mp4"
    synthetic.write_mp4(video, frames)
    return config, str(tiny.run_folder("run") / "model_best.pt"), str(video), truth


@pytest.mark.slow
def test_merged_segments_recover_the_classes_in_order_within_one_stride(long_video, tmp_path):
    config, weights, video, truth = long_video
    output = tmp_path / "timeline.json"
    timeline = predict.main(["--config", config, "--weights", weights, video, "--cpu", "--timeline", str(WINDOW),
                             "--stride", str(STRIDE), "--output", str(output), "--plot", str(tmp_path / "t.png")])
    found = [(timeline.class_names[s.label], s.start, s.end) for s in timeline.segments]
    assert [name for name, *_ in found] == [name for name, *_ in truth], found
    for (_, start, end), (_, true_start, true_end) in zip(found, truth):
        assert abs(start - true_start) <= STRIDE and abs(end - true_end) <= STRIDE, (found, truth)
    written = json.loads(output.read_text())
    assert [s["class"] for s in written["segments"]] == [name for name, *_ in truth]
    assert len(written["windows"]) == len(timeline.windows) and written["windows"][0]["start"] == 0
    assert (tmp_path / "t.png").stat().st_size > 10_000


@pytest.mark.slow
def test_csv_output_has_windows_and_segments_files(long_video, tmp_path):
    config, weights, video, truth = long_video
    predict.main(["--config", config, "--weights", weights, video, "--cpu", "--timeline", "3", "--topk", "2",
                  "--output", str(tmp_path / "t.csv")])
    windows = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert list(windows[0]) == ["start", "end", "top1", "probability1", "score1", "top2", "probability2", "score2"]
    assert [float(w["start"]) for w in windows[:3]] == [0.0, 1.5, 3.0]  # default stride: half a window
    segments = list(csv.DictReader((tmp_path / "t_segments.csv").open()))
    assert [s["class"] for s in segments] == [name for name, *_ in truth]


@pytest.mark.slow
def test_each_sampled_frame_is_decoded_and_transformed_once(long_video, monkeypatch):
    config, weights, video, _ = long_video
    decoded, transformed = [], []
    frames = StreamingVideo.frames

    def counting_frames(self, wanted):
        for index, frame in frames(self, wanted):
            decoded.append(index)
            yield index, frame
    monkeypatch.setattr(StreamingVideo, "frames", counting_frames)
    stream_windows = timeline_module.stream_windows

    def counting_transform(video_, windows, transform, strip=None):
        def once(frame):
            transformed.append(frame.clone())
            return transform(frame)
        return stream_windows(video_, windows, once, strip)
    monkeypatch.setattr(timeline_module, "stream_windows", counting_transform)
    timeline = predict.main(["--config", config, "--weights", weights, video, "--cpu", "--timeline", str(WINDOW),
                             "--stride", str(STRIDE)])
    assert len(decoded) == len(set(decoded)) and decoded == sorted(decoded)
    assert len(transformed) <= len(decoded) < 4 * len(timeline.windows)  # 4 frames a window, windows overlap


def test_streaming_frames_equal_the_seeking_readers(tmp_path):
    path = write_video(str(tmp_path / "v.mp4"), 90, keyframe_interval=16)
    wanted = {0, 5, 17, 18, 64, 89}
    streamed = dict(StreamingVideo(path).frames(wanted))
    assert sorted(streamed) == sorted(wanted)
    expected = PyAVVideo(path).get_frames(sorted(wanted))
    for frame, index in zip(expected, sorted(wanted)):
        assert torch.equal(streamed[index], frame), index
    assert len(StreamingVideo(path)) == 90


@pytest.mark.parametrize("degrees", [90, 180])
def test_streamed_frames_of_a_rotated_phone_video_are_upright_as_the_seeking_readers(tmp_path, degrees):
    path = set_mp4_rotation(write_video(str(tmp_path / "phone.mp4"), 8), degrees)
    streamed = dict(StreamingVideo(path).frames({3}))[3].permute(1, 2, 0).float()
    upright = np.rot90(frame_image(3), k=-degrees // 90).astype(np.float32)  # turned clockwise, as played
    assert streamed.shape == upright.shape
    assert (streamed - torch.from_numpy(upright.copy())).abs().mean() < 2


def test_the_timeline_figure_gives_every_segment_class_a_colour_and_a_legend_entry():
    """Five classes hold segments; the figure draws the top 2 by default rules, and the other three too."""
    probabilities = [torch.eye(6)[label] * 0.9 + 0.02 for label in (0, 1, 2, 3, 4, 0)]
    windows = [Window(k, k + 2, p, p) for k, p in enumerate(probabilities)]
    timeline = timeline_module.Timeline("v.mp4", [f"class {k}" for k in range(6)], 25.0, 7.0, 2.0, 1.0, windows,
                                        merge_segments(windows, 7.0), [])
    figure = timeline_module.timeline_figure(timeline, top=2)
    legend = [text.get_text() for text in figure.axes[-1].get_legend().get_texts()]
    assert sorted(legend) == [f"class {k}" for k in range(5)]
    bands = [patch.get_facecolor() for patch in figure.axes[-1].patches]
    assert len(bands) == len(timeline.segments) and all(colour[:3] != (0.6, 0.6, 0.6) for colour in bands)


def test_a_video_shorter_than_a_window_is_one_window_with_a_warning_and_the_log_names_the_reader(tiny_config, tmp_path, caplog):
    short = write_video(str(tmp_path / "short.mp4"), 25)  # one second at 25 fps
    output = tmp_path / "timeline.json"
    with caplog.at_level(logging.INFO):
        predict.main(["--config", tiny_config.write(), short, "--cpu", "--timeline", "4", "--output", str(output)])
    assert len(json.loads(output.read_text())["windows"]) == 1
    assert any("shorter than a window of 4 s" in message for message in caplog.messages), caplog.messages
    # the log says how the timeline decodes (it said TorchCodec, the configured reader, while PyAV streamed)
    assert f"{short}: the timeline decodes it once, front to back, with PyAV" in caplog.messages


def test_a_truncated_video_names_the_file(tmp_path):
    path = truncate_file(write_video(str(tmp_path / "cut.mp4"), 60), 0.4)
    with pytest.raises(SampleReadError, match="cut.mp4"):
        video = StreamingVideo(path)
        list(video.frames(set(range(len(video) + 30))))


def test_windows_cover_the_video_and_segments_split_halfway_between_centres():
    assert window_starts(100, 30, 20) == [0, 20, 40, 60, 70]  # the last one ends at the last frame
    assert window_starts(10, 30, 5) == [0]
    a, b = torch.tensor([0.9, 0.1]), torch.tensor([0.2, 0.8])
    windows = [Window(0, 2, a, a), Window(1, 3, a, a), Window(2, 4, b, b), Window(3, 5, torch.tensor([0.6, 0.4]),
                                                                                   torch.tensor([0.6, 0.4]))]
    segments = merge_segments(windows, 5.0)
    assert [(s.label, s.start, s.end, s.windows) for s in segments] == [(0, 0, 2.5, 2), (1, 2.5, 3.5, 1),
                                                                       (0, 3.5, 5.0, 1)]
    assert segments[0].probability == pytest.approx(0.9)
    assert [(s.label, s.end) for s in merge_segments(windows, 5.0, threshold=0.7)] == [(0, 2.5), (1, 3.5)]


@pytest.mark.slow
def test_timeline_mistakes_are_one_line_errors(long_video, tmp_path, capsys):
    config, weights, video, _ = long_video
    with pytest.raises(SystemExit):
        predict.parse_args(["--config", config, video, "--stride", "1"])
    assert "--stride goes with --timeline" in capsys.readouterr().err
    with pytest.raises(UsageError, match="one video file"):
        predict.main(["--config", config, "--weights", weights, video, video, "--cpu", "--timeline", "2"])
    with pytest.raises(UsageError, match="--long_classes"):
        make_demo_data.main(["--long_video", str(tmp_path / "x.mp4"), "--long_classes", "dancing"])


@pytest.mark.slow
def test_attributes_fusion_adds_the_video_attribute_scores_to_every_window(long_video, tmp_path):
    config, weights, video, truth = long_video
    model = tiny_clip(1)
    attributes = attributes_checkpoint(model, AttributesHead(model.config.embed_dim).state_dict(), tmp_path / "a.pt")
    phrases = tmp_path / "phrases.json"
    phrases.write_text(json.dumps({video: {"classname_topk": ["growing", "appearing"],
                                           "classname_topk_scores": [0.3, 0.2]}}))
    common = ["--config", config, "--weights", weights, video, "--cpu", *FP32, "--timeline", "3"]
    plain = predict.main(common)
    fused = predict.main([*common, "--attributes_weights", attributes, "--attributes", str(phrases),
                          "--fusion_weights", "0.6", "0.4"])
    branch = AttributesFusion(attributes, str(phrases), [name for name, *_ in truth]).scores(video)
    assert len(fused.windows) == len(plain.windows) > 3
    for one, other in zip(plain.windows, fused.windows):
        torch.testing.assert_close(other.probabilities, 0.6 * one.probabilities + 0.4 * branch)
        torch.testing.assert_close(other.scores, 0.6 * one.scores + 0.4 * branch)
