"""Datasets on real files: sampled frames, frame folders vs videos, Charades, errors, skipping, few-shot."""
import logging
import os

import pytest
import torch
from torch.utils.data import DataLoader

from datasets import transforms
from datasets.annotations import AnnotationError
from datasets.charades import CharadesDataset
from datasets.decoding import VIDEO_BACKENDS, PyAVVideo, SampleReadError, available_video_backends, open_video
from datasets.video import VideoDataset
from tests.data_factory import (clip_indices, truncate_file, write_frame_folder, write_labels_csv, write_text,
                                write_video)

# torchvision 0.29 deprecates its image codecs in favour of TorchCodec; they still work and are fast.
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")

BACKENDS = [pytest.param(name, marks=pytest.mark.skipif(name not in available_video_backends(),
                                                        reason=f"video reader {name} cannot be used here: NOT tested"))
            for name in VIDEO_BACKENDS]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Frame folders and MP4s of the same videos (10 and 20 frames), a labels file with 3 classes."""
    root = tmp_path_factory.mktemp("media")
    for name, count in (("a", 10), ("b", 20)):
        write_frame_folder(root / "frames" / name, count)
        write_video(str(root / "videos" / f"{name}.mp4"), count)
    write_frame_folder(root / "frames0" / "a", 10, image_tmpl="frame{:d}.jpg", index_bias=0)
    labels = write_labels_csv(str(root / "labels.csv"), ["jump", "run", "swim"])
    frame_list = write_text(str(root / "frames.txt"), ["a 10 1", "b 20 2"])
    video_list = write_text(str(root / "videos.txt"), ["a.mp4 1", "b.mp4 2"])
    return root, labels, frame_list, video_list


def frames_dataset(media, **kwargs):
    root, labels, frame_list, _ = media
    kwargs.setdefault("num_segments", 4)
    return VideoDataset(frame_list, labels, str(root / "frames"), **kwargs)


def videos_dataset(media, backend, **kwargs):
    root, labels, _, video_list = media
    kwargs.setdefault("num_segments", 4)
    return VideoDataset(video_list, labels, str(root / "videos"), video_backend=backend, **kwargs)


def test_val_clip_has_the_hand_computed_frames_and_label(media):
    dataset = frames_dataset(media, mode="val")
    assert dataset.modality == "RGB" and dataset.class_names == ["jump", "run", "swim"] and len(dataset) == 2
    clip, label = dataset[0]
    assert clip.shape == (4, 3, 48, 64) and clip.dtype == torch.uint8 and label == 1
    assert clip_indices(clip) == [0, 2, 5, 7]  # tick 10 / 4 = 2.5
    assert clip_indices(dataset[1][0]) == [0, 5, 10, 15]


def test_index_bias_zero_reads_frames_numbered_from_zero(media):
    root, labels, _, _ = media
    frame_list = write_text(str(root / "frames0.txt"), ["a 10 0"])
    dataset = VideoDataset(frame_list, labels, str(root / "frames0"), num_segments=4, mode="val",
                           image_tmpl="frame{:d}.jpg", index_bias=0)
    assert clip_indices(dataset[0][0]) == [0, 2, 5, 7]


def test_train_clips_draw_one_frame_per_segment(media):
    torch.manual_seed(0)
    dataset = frames_dataset(media, mode="train")
    segments = [(0, 2), (2, 4), (4, 7), (7, 9)]  # borders round(2.25 k), see test_sampling
    seen = set()
    for _ in range(30):
        indices = clip_indices(dataset[0][0])
        assert all(low <= i <= high for i, (low, high) in zip(indices, segments))
        seen.add(tuple(indices))
    assert len(seen) > 5


def test_train_without_random_shift_gives_the_val_clip(media):
    assert clip_indices(frames_dataset(media, mode="train", random_shift=False)[0][0]) == [0, 2, 5, 7]


def test_test_mode_returns_all_clips_and_crops_clip_major(media):
    raw = frames_dataset(media, mode="test", test_clips=3)[0][0]
    assert raw.shape == (3, 4, 3, 48, 64)
    assert [clip_indices(clip) for clip in raw] == [[0, 2, 5, 7], [0, 2, 5, 7], [1, 3, 6, 8]]
    views = frames_dataset(media, mode="test", test_clips=3, transform=transforms.test_transform(32, 3))[0][0]
    assert views.shape == (9, 4, 3, 32, 32)
    assert torch.equal(views[:3], views[3:6]) and not torch.equal(views[:3], views[6:])


def test_dense_sampling_wraps_around_short_videos(media):
    # 20 frames, window 128, interval 32: (0, 32, 64, 96) % 20
    assert clip_indices(frames_dataset(media, mode="val", dense=True)[1][0]) == [0, 12, 4, 16]
    clips = frames_dataset(media, mode="test", dense=True, test_clips=2)[1][0]
    assert [clip_indices(clip) for clip in clips] == [[0, 12, 4, 16]] * 2


def test_seg_length_reads_consecutive_frames(media):
    clip = frames_dataset(media, mode="val", num_segments=2, seg_length=3)[0][0]
    assert clip_indices(clip) == [0, 1, 2, 5, 6, 7]


def test_train_transform_output(media):
    torch.manual_seed(0)
    clip, _ = frames_dataset(media, mode="train", transform=transforms.train_transform(32))[1]
    assert clip.shape == (4, 3, 32, 32) and clip.dtype == torch.uint8


@pytest.mark.parametrize("backend", BACKENDS)
def test_video_file_gives_the_same_clip_as_its_frame_folder(media, backend):
    for mode, kwargs in (("val", {}), ("test", {"test_clips": 3}), ("val", {"dense": True})):
        from_frames = frames_dataset(media, mode=mode, **kwargs)
        from_video = videos_dataset(media, backend, mode=mode, **kwargs)
        assert from_video.modality == "video"
        for index in range(2):
            (frames, label), (decoded, video_label) = from_frames[index], from_video[index]
            assert label == video_label and frames.shape == decoded.shape
            assert clip_indices(frames.flatten(0, -4)) == clip_indices(decoded.flatten(0, -4))
            assert (frames.float() - decoded.float()).abs().mean() < 3  # JPEG q95 vs H.264 crf 8


@pytest.mark.parametrize("seek_gap", [0, 64, 10_000])
def test_pyav_seeks_to_exact_frames_of_a_long_video(tmp_path, monkeypatch, seek_gap):
    path = write_video(str(tmp_path / "long.mp4"), 240, keyframe_interval=12)
    monkeypatch.setattr(PyAVVideo, "seek_gap", seek_gap)
    video = open_video(path, "pyav")
    requested = [230, 5, 5, 100, 101, 0, 239, 60]
    assert len(video) == 240 and clip_indices(video.get_frames(requested)) == requested


def test_modality_is_detected_from_the_list(media):
    root, labels, frame_list, video_list = media
    assert VideoDataset(frame_list, labels, str(root), mode="val").modality == "RGB"
    assert VideoDataset(video_list, labels, str(root), mode="val", modality="RGB").modality == "video"
    mixed = write_text(str(root / "mixed.txt"), ["a 10 1", "b.mp4 2"])
    with pytest.raises(AnnotationError, match=rf"{mixed}:2: expected `<dir> <num_frames> <label>`"):
        VideoDataset(mixed, labels, str(root), modality="RGB")


@pytest.mark.parametrize("image_tmpl", ["img.jpg", "{}_{}_{:05d}.jpg"])
def test_frame_template_without_frame_number_is_rejected(media, image_tmpl):
    with pytest.raises(ValueError, match=r"data.image_tmpl must have a field"):
        frames_dataset(media, image_tmpl=image_tmpl)


def test_short_videos_are_dropped_from_training_only(media):
    root, labels, _, _ = media
    frame_list = write_text(str(root / "short.txt"), ["a 10 1", "b 5 2"])
    assert len(VideoDataset(frame_list, labels, str(root / "frames"), mode="train")) == 1
    assert len(VideoDataset(frame_list, labels, str(root / "frames"), mode="val")) == 2


@pytest.fixture()
def broken(media, tmp_path):
    """A list whose first line is unreadable in various ways and whose second line is fine."""
    _, labels, _, _ = media
    root = tmp_path
    write_frame_folder(root / "good", 10)
    write_frame_folder(root / "few", 5)
    write_frame_folder(root / "corrupt", 10)
    with open(root / "corrupt" / "img_00006.jpg", "wb") as handle:
        handle.write(b"this is not a JPEG")

    def make(first_line):
        return write_text(str(root / "list.txt"), [first_line, "good 10 2"]), labels, str(root)
    return make


@pytest.mark.parametrize("line, message", [
    ("missing 10 0", r"list.txt:1: frame folder \S*missing does not exist"),
    ("few 10 0", r"list.txt:1: frame \S*few/img_00006.jpg does not exist"),
    ("corrupt 10 0", r"list.txt:1: cannot decode frame \S*corrupt/img_00006.jpg"),
    ("good 0 0", r"list.txt:1: \S*good has no frames"),
])
def test_unreadable_frames_raise_naming_file_and_line(broken, line, message):
    dataset = VideoDataset(*broken(line), num_segments=4, mode="val")
    with pytest.raises(SampleReadError, match=message):
        dataset[0]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("faststart", [False, True])
def test_truncated_video_raises_naming_file_and_line(media, tmp_path, backend, faststart):
    _, labels, _, _ = media
    truncate_file(write_video(str(tmp_path / "cut.mp4"), 40, faststart=faststart))
    video_list = write_text(str(tmp_path / "list.txt"), ["cut.mp4 0"])
    dataset = VideoDataset(video_list, labels, str(tmp_path), num_segments=4, mode="val", video_backend=backend)
    with pytest.raises(SampleReadError, match=r"list.txt:1: .*video \S*cut.mp4"):
        dataset[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_video_raises_naming_it(media, tmp_path, backend):
    _, labels, _, _ = media
    video_list = write_text(str(tmp_path / "list.txt"), ["gone.mp4 0"])
    dataset = VideoDataset(video_list, labels, str(tmp_path), num_segments=4, mode="val", video_backend=backend)
    with pytest.raises(SampleReadError, match=r"list.txt:1: video \S*gone.mp4 does not exist"):
        dataset[0]


def test_training_can_skip_unreadable_samples_and_counts_them(broken, caplog):
    dataset = VideoDataset(*broken("missing 10 0"), num_segments=4, mode="train", skip_unreadable=True)
    with caplog.at_level(logging.WARNING):
        clip, label = dataset[0]
    assert label == 2 and clip.shape[0] == 4  # the next sample, "good"
    assert dataset.num_skipped == 1
    assert "list.txt:1" in caplog.text and "missing" in caplog.text


def test_skip_counts_add_up_over_dataloader_workers(broken):
    # fork only: spawn workers take ~5 s each to start here (checked by hand that spawn works too)
    dataset = VideoDataset(*broken("missing 10 0"), num_segments=4, mode="train", skip_unreadable=True)
    loader = DataLoader(dataset, batch_size=1, num_workers=2, multiprocessing_context="fork")
    labels = [label.item() for _ in range(2) for _, label in loader]
    assert labels == [2, 2] * 2 and dataset.num_skipped == 2


def test_evaluation_never_skips(broken):
    with pytest.raises(ValueError, match="training only"):
        VideoDataset(*broken("missing 10 0"), num_segments=4, mode="val", skip_unreadable=True)


def test_skipping_gives_up_when_nothing_is_readable(broken):
    list_file, labels, root = broken("missing 10 0")
    write_text(list_file, ["missing 10 0"])
    dataset = VideoDataset(list_file, labels, root, num_segments=4, mode="train", skip_unreadable=True)
    with pytest.raises(SampleReadError, match="consecutive unreadable samples"):
        dataset[0]


def test_few_shot_keeps_k_videos_per_class_repeated_to_the_epoch_length(media, tmp_path):
    root, labels, _, _ = media
    lines = [f"a 10 {label}" for label in (0, 1, 2) for _ in range(5)]
    frame_list = write_text(str(tmp_path / "many.txt"), [f"{line.split()[0]} 10 {line.split()[2]}" for line in lines])
    dataset = VideoDataset(frame_list, labels, str(root / "frames"), mode="train", shot=2, seed=3)
    assert len(dataset) == 12  # 6 selected, repeated 15 // 6 = 2 times
    assert sorted(record.label for record in dataset.records) == [0] * 4 + [1] * 4 + [2] * 4


def write_charades(root, class_count=5):
    frames = root / "Charades_v1_rgb"
    write_frame_folder(frames / "VID01", 12, image_tmpl="{}-{:06d}.jpg")
    classes = write_text(str(root / "classes.txt"), [f"c{i:03d} action {i}" for i in range(class_count)])
    videos = write_text(str(root / "Charades_v1_test.csv"), [
        "id,subject,scene,actions,length",
        'VID01,S1,Kitchen,"c003 0.00 5.00;c001 1.00 2.00;c003 3.00 4.00",12.0',
    ])
    instances = write_text(str(root / "Charades_train_split_label.csv"), [
        "video_id,label,start_time,end_time,total_time",
        "VID01,c004,2.00,9.00,12.0",
    ])
    return str(frames), classes, videos, instances


def test_charades_videos_have_multi_hot_targets_and_counted_frames(tmp_path):
    frames, classes, videos, _ = write_charades(tmp_path)
    dataset = CharadesDataset(videos, classes, frames, num_segments=4, mode="test", test_clips=2)
    clips, target = dataset[0]
    assert target.tolist() == [0.0, 1.0, 0.0, 1.0, 0.0] and target.dtype == torch.float32
    assert [clip_indices(clip) for clip in clips] == [[0, 3, 6, 9], [2, 5, 8, 11]]  # 12 frames counted


def test_charades_instances_sample_inside_their_time_span(tmp_path):
    torch.manual_seed(0)
    frames, classes, _, instances = write_charades(tmp_path)
    # fps 1: frames 2..8 (start 2 s, end 9 s); TSN chunks of 7 frames: borders 0, 1, 3, 5, 7
    dataset = CharadesDataset(instances, classes, frames, fps=1, num_segments=4, mode="train")
    chunks = [(2, 2), (3, 4), (5, 6), (7, 8)]
    for _ in range(20):
        clip, label = dataset[0]
        assert label == 4
        assert all(low <= i <= high for i, (low, high) in zip(clip_indices(clip), chunks))


def test_charades_missing_folder_names_file_and_line(tmp_path):
    frames, classes, videos, _ = write_charades(tmp_path)
    os.rename(os.path.join(frames, "VID01"), os.path.join(frames, "gone"))
    with pytest.raises(SampleReadError, match=r"Charades_v1_test.csv:2: frame folder \S*VID01 does not exist"):
        CharadesDataset(videos, classes, frames, num_segments=4, mode="val")[0]
