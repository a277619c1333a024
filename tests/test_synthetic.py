"""The synthetic demo dataset: class semantics measured on the pixels, reproducibility, formats, resumption."""
import math

import av
import numpy as np
import pytest
from PIL import Image

from datasets import synthetic
from datasets.annotations import load_class_names, read_video_list
from tools import make_demo_data

NUM_PER_CLASS = 2


def _object_masks(frames, params):
    """Pixels that differ clearly from the clip's background, per frame."""
    background = synthetic.render_background(params)
    return np.abs(frames.astype(np.float32) - background).sum(axis=-1) > 60


def _centroid_x(mask):
    return np.nonzero(mask)[1].mean()


def _orientation(mask):
    """Angle of the mask's long axis in image coordinates (y down), from its second moments."""
    ys, xs = np.nonzero(mask)
    xs, ys = xs - xs.mean(), ys - ys.mean()
    return 0.5 * math.atan2(2 * np.mean(xs * ys), np.mean(xs * xs) - np.mean(ys * ys))


@pytest.mark.parametrize("clip_index", [0, 1])
@pytest.mark.parametrize("pair_index", range(len(synthetic.MOTION_PAIRS)))
def test_second_class_of_a_pair_is_the_first_played_backwards(pair_index, clip_index):
    params = synthetic.clip_params_for(seed=3, pair_index=pair_index, clip_index=clip_index)
    forward = synthetic.render_clip(2 * pair_index, params)
    backward = synthetic.render_clip(2 * pair_index + 1, params)
    assert forward.shape == (params.num_frames, synthetic.HEIGHT, synthetic.WIDTH, 3)
    assert synthetic.MIN_FRAMES <= params.num_frames <= synthetic.MAX_FRAMES
    np.testing.assert_array_equal(backward, forward[::-1])
    assert not np.array_equal(forward[0], forward[-1])


@pytest.mark.parametrize("clip_index", [0, 1, 2])
def test_forward_classes_do_what_their_names_say(clip_index):
    """Measured on the rendered pixels, independently of the motion parameters."""
    clips = {}
    for pair_index in range(len(synthetic.MOTION_PAIRS)):
        params = synthetic.clip_params_for(seed=0, pair_index=pair_index, clip_index=clip_index)
        frames = synthetic.render_clip(2 * pair_index, params)
        clips[synthetic.CLASS_NAMES[2 * pair_index]] = (frames, _object_masks(frames, params))

    _, masks = clips["moving left"]
    assert _centroid_x(masks[0]) - _centroid_x(masks[-1]) > 0.3 * synthetic.WIDTH

    _, masks = clips["growing"]
    assert masks[-1].sum() > 6 * masks[0].sum() > 0

    _, masks = clips["rotating clockwise"]
    turned = np.unwrap([2 * _orientation(mask) for mask in masks]) / 2  # long axis: period pi
    assert 0.4 * math.pi < turned[-1] - turned[0] < 1.1 * math.pi  # positive: clockwise on screen (y down)
    assert masks[0].sum() == pytest.approx(masks[-1].sum(), rel=0.15)  # turning, not resizing

    _, masks = clips["appearing"]
    assert masks[0].sum() == 0 and masks[-1].sum() > 100


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return synthetic.generate_demo_dataset(tmp_path_factory.mktemp("demo"), num_per_class=NUM_PER_CLASS,
                                           seed=5, workers=0, progress=False)


def _all_files(root):
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_same_seed_gives_identical_files_and_another_seed_different_frames(demo, tmp_path):
    again = synthetic.generate_demo_dataset(tmp_path / "again", num_per_class=NUM_PER_CLASS, seed=5,
                                            workers=0, progress=False)
    first, second = _all_files(demo.root), _all_files(again.root)
    assert first.keys() == second.keys()
    assert [name for name in first if first[name] != second[name]] == []  # JPEGs, MP4s, lists, labels
    other = synthetic.generate_demo_dataset(tmp_path / "other", num_per_class=NUM_PER_CLASS, seed=6,
                                            workers=0, progress=False)
    jpeg = "moving_left/moving_left_000/img_00001.jpg"
    assert (other.frames_root / jpeg).read_bytes() != (demo.frames_root / jpeg).read_bytes()


def test_lists_and_labels_follow_the_bike_formats(demo):
    names = load_class_names(demo.labels)
    assert names == list(synthetic.CLASS_NAMES)
    assert demo.labels.read_text().splitlines()[:3] == ["id,name", "0,moving left", "1,moving right"]
    train = read_video_list(demo.train_frames, len(names), "RGB")
    val = read_video_list(demo.val_frames, len(names), "RGB")
    assert sorted(r.label for r in train) == sorted(r.label for r in val) == list(range(8))  # one clip each
    for record in train + val:
        folder = demo.frames_root / record.path
        files = sorted(p.name for p in folder.iterdir())
        assert files == [synthetic.IMAGE_TMPL.format(i) for i in range(1, record.num_frames + 1)]
        assert folder.parent.name == synthetic.class_slug(names[record.label])
    for frame_list, video_list in ((demo.train_frames, demo.train_videos), (demo.val_frames, demo.val_videos)):
        videos = read_video_list(video_list, len(names), "video")
        assert [(v.path, v.label) for v in videos] == [(f"{r.path}.mp4", r.label)
                                                       for r in read_video_list(frame_list, len(names), "RGB")]
        assert all((demo.videos_root / v.path).is_file() for v in videos)
    assert not set(r.path for r in train) & set(r.path for r in val)


def _decode_mp4(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.name, np.stack([f.to_ndarray(format="rgb24", threads=1) for f in container.decode(stream)])


def _read_jpegs(folder, num_frames):
    return np.stack([np.asarray(Image.open(folder / synthetic.IMAGE_TMPL.format(i)))
                     for i in range(1, num_frames + 1)])


def test_mp4_and_jpeg_folders_hold_the_same_frames(demo):
    for record in read_video_list(demo.val_frames, len(synthetic.CLASS_NAMES), "RGB"):
        codec, video = _decode_mp4(demo.videos_root / f"{record.path}.mp4")
        jpegs = _read_jpegs(demo.frames_root / record.path, record.num_frames).astype(np.float32)
        assert codec == "h264" and video.shape == jpegs.shape
        # frame i of the MP4 is much closer to JPEG i than to any other JPEG of the clip
        errors = np.abs(video[:, None].astype(np.float32) - jpegs[None]).mean(axis=(2, 3, 4))
        assert np.all(np.diag(errors) < 4.0)
        assert np.array_equal(errors.argmin(axis=1), np.arange(record.num_frames))


def test_reversed_class_folders_hold_the_same_jpegs_in_reverse_order(demo):
    for pair_index, (_, forward, backward) in enumerate(synthetic.MOTION_PAIRS):
        folders = [demo.frames_root / synthetic.class_slug(n) / f"{synthetic.class_slug(n)}_001"
                   for n in (forward, backward)]
        first, second = ([p.read_bytes() for p in sorted(folder.iterdir())] for folder in folders)
        assert len(first) > 1 and second == first[::-1]


def test_ensure_keeps_a_finished_dataset_and_redoes_an_interrupted_one(tmp_path):
    kwargs = dict(num_per_class=NUM_PER_CLASS, seed=1, workers=0, progress=False)
    paths = synthetic.ensure_demo_dataset(tmp_path, **kwargs)
    jpeg = paths.frames_root / "growing" / "growing_000" / "img_00001.jpg"
    original = jpeg.read_bytes()
    jpeg.write_bytes(b"kept")
    synthetic.ensure_demo_dataset(tmp_path, **kwargs)  # finished: untouched
    assert jpeg.read_bytes() == b"kept"

    (paths.root / synthetic.MARKER).unlink()  # as if the run had been interrupted
    paths.val_frames.unlink()
    synthetic.ensure_demo_dataset(tmp_path, **kwargs)
    assert jpeg.read_bytes() == original and paths.val_frames.is_file()
    assert synthetic.is_complete(tmp_path, NUM_PER_CLASS, seed=1)
    assert not synthetic.is_complete(tmp_path, NUM_PER_CLASS, seed=2)  # other settings are regenerated


def test_command_with_worker_threads_matches_the_in_process_generation(demo, tmp_path):
    make_demo_data.main(["--out", str(tmp_path), "--num-per-class", str(NUM_PER_CLASS), "--seed", "5",
                         "--workers", "2", "--no-progress"])
    assert _all_files(tmp_path) == _all_files(demo.root)


def test_bad_settings_are_refused(capsys):
    with pytest.raises(ValueError, match="num_per_class"):
        synthetic.generate_demo_dataset("unused", num_per_class=1)
    with pytest.raises(SystemExit) as exit_request:
        make_demo_data.main(["--out", "unused", "--val-fraction", "1.5"])
    assert exit_request.value.code == 2 and "--val-fraction must be between 0 and 1" in capsys.readouterr().err
