"""Data preparation tools: frame extraction and the converters of official annotations into BIKE lists."""
import logging

import numpy as np
import pytest
from PIL import Image

from datasets.synthetic import write_mp4
from tools import extract_frames
from tools.extract_frames import FrameOptions

HEIGHT, WIDTH = 48, 64


def _level(index):
    return 20 + 9 * index


def _write_gray_video(path, num_frames, fps=10):
    """Frame k is flat gray at level 20 + 9k, which survives H.264 and JPEG within a level or two."""
    frames = np.stack([np.full((HEIGHT, WIDTH, 3), _level(k), np.uint8) for k in range(num_frames)])
    write_mp4(path, frames, fps=fps)


def _levels(folder, names):
    return [round((float(np.asarray(Image.open(folder / name)).mean()) - 20) / 9) for name in names]


@pytest.fixture
def videos(tmp_path):
    root = tmp_path / "videos"
    _write_gray_video(root / "a" / "one.mp4", 5)
    _write_gray_video(root / "two.mkv", 3)
    video_list = tmp_path / "videos.txt"
    video_list.write_text("a/one.mp4 3\n\ntwo.mkv 0\n")
    return root, video_list


def _jpegs(count, tmpl="img_{:05d}.jpg", first=1):
    return [tmpl.format(i) for i in range(first, first + count)]


def test_list_source_gives_ordered_resized_frames_and_the_frame_list(videos, tmp_path):
    root, video_list = videos
    out, frame_list = tmp_path / "frames", tmp_path / "frames.txt"
    status = extract_frames.main([str(video_list), "--video-root", str(root), "--out", str(out),
                                  "--frame-list", str(frame_list), "--short-side", "32", "--workers", "1",
                                  "--no-progress"])
    assert status == 0
    assert frame_list.read_text() == "a/one 5 3\ntwo 3 0\n"
    assert sorted(p.name for p in (out / "a" / "one").iterdir()) == _jpegs(5)
    assert _levels(out / "a" / "one", _jpegs(5)) == [0, 1, 2, 3, 4]
    assert _levels(out / "two", _jpegs(3)) == [0, 1, 2]
    assert Image.open(out / "two" / "img_00001.jpg").size == (43, 32)  # 64x48 -> short side 32, 4:3 kept


def test_resized_scales_the_short_side_and_keeps_the_aspect_ratio():
    assert extract_frames.resized(640, 480, 320) == (427, 320)
    assert extract_frames.resized(480, 640, 320) == (320, 427)
    assert extract_frames.resized(171, 128, 0) == (171, 128)


def test_folder_source_with_a_named_template_and_fps_subsampling(tmp_path):
    _write_gray_video(tmp_path / "in" / "clips" / "XYZ12.mp4", 20, fps=10)
    (tmp_path / "in" / "notes.txt").write_text("not a video")
    assert extract_frames.find_videos(tmp_path / "in") == ["clips/XYZ12.mp4"]
    status = extract_frames.main([str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--fps", "2",
                                  "--image-tmpl", "{}-{:06d}.jpg", "--short-side", "0", "--workers", "1",
                                  "--no-progress"])
    folder = tmp_path / "out" / "clips" / "XYZ12"
    assert status == 0
    names = _jpegs(4, "XYZ12-{:06d}.jpg")
    assert sorted(p.name for p in folder.iterdir()) == names
    assert _levels(folder, names) == [0, 5, 10, 15]  # 2 s at 10 fps sampled at 0, 0.5, 1.0, 1.5 s
    assert Image.open(folder / names[0]).size == (WIDTH, HEIGHT)


def test_finished_folders_are_skipped_and_partial_ones_redone(videos, tmp_path):
    root, video_list = videos
    out, options = tmp_path / "frames", FrameOptions(short_side=0)
    entries = extract_frames.read_video_list(video_list)
    videos_only = [video for video, _ in entries]
    extract_frames.extract_all(videos_only, root, out, options, progress=False)
    first_jpeg = out / "a" / "one" / "img_00001.jpg"
    first_jpeg.write_bytes(b"left alone")
    for jpeg in (out / "two").iterdir():  # as if interrupted while writing video two
        jpeg.unlink()
    (out / "two").rename(out / "two.partial")
    (out / "two.partial" / "img_00001.jpg").write_bytes(b"half")

    outcomes = extract_frames.extract_all(videos_only, root, out, options, progress=False)
    assert [(o.video, o.status, o.num_frames) for o in outcomes] == [("a/one.mp4", "skipped", 5),
                                                                     ("two.mkv", "extracted", 3)]
    assert first_jpeg.read_bytes() == b"left alone"
    assert _levels(out / "two", _jpegs(3)) == [0, 1, 2]
    assert not (out / "two.partial").exists()


def test_a_bad_video_is_reported_and_the_others_go_on(videos, tmp_path, caplog):
    root, _ = videos
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    video_list = tmp_path / "with_bad.txt"
    video_list.write_text("broken.mp4 1\na/one.mp4 3\nmissing.mp4 2\ntwo.mkv 0\n")
    out, frame_list = tmp_path / "frames", tmp_path / "frames.txt"
    with caplog.at_level(logging.INFO, logger="tools.extract_frames"):
        status = extract_frames.main([str(video_list), "--video-root", str(root), "--out", str(out),
                                      "--frame-list", str(frame_list), "--workers", "2", "--no-progress"])
    assert status == 1
    failures = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(str(root / "broken.mp4") in message for message in failures)
    assert any(str(root / "missing.mp4") in message for message in failures)
    assert any("4 videos: 2 extracted, 0 already done, 2 failed" in r.getMessage() for r in caplog.records)
    assert frame_list.read_text() == "a/one 5 3\ntwo 3 0\n"
    assert sorted(p.name for p in out.iterdir()) == ["a", "two"]  # no folders, not even partial, for failures


def test_worker_processes_write_the_same_files_as_one_process(videos, tmp_path):
    root, video_list = videos
    videos_only = [video for video, _ in extract_frames.read_video_list(video_list)]
    for workers in (1, 2):
        extract_frames.extract_all(videos_only, root, tmp_path / f"w{workers}", FrameOptions(short_side=40),
                                   workers=workers, progress=False)
    serial = {p.relative_to(tmp_path / "w1"): p.read_bytes() for p in (tmp_path / "w1").rglob("*.jpg")}
    parallel = {p.relative_to(tmp_path / "w2"): p.read_bytes() for p in (tmp_path / "w2").rglob("*.jpg")}
    assert len(serial) == 8 and serial == parallel


def test_a_malformed_video_list_line_is_named(tmp_path):
    video_list = tmp_path / "bad.txt"
    video_list.write_text("a.mp4 1\nb.mp4 label\n")
    with pytest.raises(ValueError, match=rf"{video_list}:2: expected `<file> <label>`"):
        extract_frames.read_video_list(video_list)
