"""Videos as users download them: every common codec and container decodes, through the dataset and
tools/predict.py, with the default reader; the readers agree frame by frame; rotated videos are upright;
a broken file is one clear error, in the main process and in loader workers, and nothing hangs."""
import functools
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from datasets import decoding
from datasets.decoding import SampleReadError, VideoBackendError, decord, open_video, torchcodec_decoder
from datasets.video import VideoDataset
from tests.codec_files import (CASES, VFR_TICKS, decoded_with_pyav, over_report_avi_frames, set_mp4_rotation,
                               write_audio_only, write_bframe_avi, write_case, write_vfr_avi)
from tests.data_factory import clip_indices, frame_image, truncate_file, write_labels_csv, write_text, write_video
from utils.errors import error_line

REPO = Path(__file__).resolve().parent.parent
TORCHCODEC_MISSING = f"TorchCodec cannot be used here, its reader was NOT tested: {torchcodec_decoder()[1]}"
needs_torchcodec = pytest.mark.skipif(torchcodec_decoder()[0] is None, reason=TORCHCODEC_MISSING)
needs_decord = pytest.mark.skipif(decord is None, reason="decord is not installed (requirements-decord.txt)")
NOT_AVI = [case for case in CASES if case.container != "avi"]
READERS = [pytest.param("torchcodec", marks=needs_torchcodec), "pyav", pytest.param("decord", marks=needs_decord)]


@pytest.fixture(scope="module")
def codec_videos(tmp_path_factory):
    """Every case of tests/codec_files.py in one folder, with a labels file and a video list."""
    root = tmp_path_factory.mktemp("codecs")
    for case in CASES:
        write_case(root / case.file_name, case)
    labels = write_labels_csv(str(root / "labels.csv"), ["jump", "run"])
    video_list = write_text(str(root / "videos.txt"), [f"{case.file_name} {i % 2}" for i, case in enumerate(CASES)])
    return root, labels, video_list


def test_the_default_reader_is_torchcodec_where_ffmpeg_loads_else_pyav():
    assert decoding.default_video_backend() == ("torchcodec" if torchcodec_decoder()[0] else "pyav")


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_every_codec_decodes_through_the_dataset_with_the_default_reader(codec_videos, case):
    root, labels, video_list = codec_videos
    dataset = VideoDataset(video_list, labels, str(root), num_segments=4, mode="val")
    clip, _ = dataset[CASES.index(case)]
    assert clip.shape == (4, 3, case.height, case.width) and clip.dtype == torch.uint8
    # the sampler is tested in test_sampling; here the decoded frames must be the ones it picked
    assert clip_indices(clip) == dataset.sampler(case.frames, "val").reshape(-1).tolist()


@needs_torchcodec
@pytest.mark.parametrize("case", NOT_AVI, ids=[case.name for case in NOT_AVI])
def test_torchcodec_and_pyav_return_the_same_frames(codec_videos, case):
    """AVI files decode with PyAV whatever reader is asked (tested with the old AVIs below)."""
    root = codec_videos[0]
    path = str(root / case.file_name)
    torchcodec, pyav = open_video(path, "torchcodec"), open_video(path, "pyav")
    assert type(torchcodec).__name__ == "TorchCodecVideo" and type(pyav).__name__ == "PyAVVideo"
    assert len(torchcodec) == len(pyav) == case.frames
    requested = [case.frames - 1, 0, case.frames // 2, 0]
    a, b = torchcodec.get_frames(requested).float(), pyav.get_frames(requested).float()
    assert clip_indices(a) == clip_indices(b) == requested
    if case.exact:
        assert torch.equal(a, b)
    else:  # chroma interpolation of the two FFmpeg builds: below one grey level on average
        assert (a - b).abs().mean() < 1.0


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_pyav_frames_skipping_unrequested_non_reference_frames_are_the_plainly_decoded_ones(codec_videos, case):
    path = str(codec_videos[0] / case.file_name)
    everything = decoded_with_pyav(path)
    requested = list(range(1, case.frames, 3)) + [0]  # unrequested frames between requested ones
    frames = open_video(path, "pyav").get_frames(requested).permute(0, 2, 3, 1).numpy()
    assert len(everything) == case.frames
    for frame, index in zip(frames, requested):
        np.testing.assert_array_equal(frame, everything[index], err_msg=f"frame {index}")


OLD_AVIS = {"divx_bframes": functools.partial(write_bframe_avi, fourcc="DX50"),
            "xvid_bframes": functools.partial(write_bframe_avi, fourcc="XVID"),
            "vfr_cinepak": write_vfr_avi}


@pytest.mark.parametrize("backend", READERS)
@pytest.mark.parametrize("kind", OLD_AVIS)
def test_every_reader_returns_the_plainly_decoded_frames_of_b_frame_and_variable_rate_avis(
        tmp_path, monkeypatch, caplog, kind, backend):
    """B-frame AVIs (frame 0 was lost after a seek) and a complete VFR AVI whose header count is its last
    tick (it was refused as truncated). TorchCodec and decord misplace frames of such AVIs: PyAV reads them."""
    path = OLD_AVIS[kind](tmp_path / f"{kind}.avi")
    everything = decoded_with_pyav(path)
    monkeypatch.setattr(decoding, "_logged", set())
    with caplog.at_level(logging.INFO, logger="datasets.decoding"):
        video = open_video(path, backend)
    assert len(video) == len(everything) == (len(VFR_TICKS) if kind == "vfr_cinepak" else 150)
    requested = [0, len(video) - 1] + list(range(1, len(video), 3)) + [len(video) // 2, 0]
    frames = video.get_frames(requested).permute(0, 2, 3, 1).numpy()
    for frame, index in zip(frames, requested):
        np.testing.assert_array_equal(frame, everything[index], err_msg=f"frame {index}")
    if backend != "pyav":
        assert any(f"AVI files decode with PyAV, not {backend}" in m for m in caplog.messages), caplog.messages


def test_the_codec_videos_have_non_reference_frames_that_the_pyav_reader_skips(codec_videos):
    """The test above covers skipped frames: H.264 and HEVC files have frames the decoder can drop."""
    for name in ("h264_aac", "hevc"):
        case = next(case for case in CASES if case.name == name)
        assert len(decoded_with_pyav(str(codec_videos[0] / case.file_name), "NONREF")) < case.frames, name


@needs_decord
@pytest.mark.parametrize("case", CASES[:6], ids=[case.name for case in CASES[:6]])
def test_decord_counts_and_indexes_frames_as_pyav(codec_videos, case):
    path = str(codec_videos[0] / case.file_name)
    decord_video = open_video(path, "decord")
    assert type(decord_video).__name__ == "DecordVideo" and len(decord_video) == case.frames
    assert clip_indices(decord_video.get_frames(range(case.frames))) == list(range(case.frames))


@pytest.mark.parametrize("backend", READERS)
def test_the_readers_decode_the_demo_mp4s_identically(tiny_dataset, backend):
    for path in sorted(tiny_dataset.videos_root.rglob("*.mp4"))[:3]:
        reference = open_video(str(path), "pyav")
        video = open_video(str(path), backend)
        assert len(video) == len(reference)
        everything = list(range(len(video)))
        assert torch.equal(video.get_frames(everything), reference.get_frames(everything)), path


@pytest.mark.parametrize("backend", READERS)
@pytest.mark.parametrize("degrees", [90, 180])
def test_a_rotated_phone_video_decodes_upright(tmp_path, backend, degrees):
    """decord cannot decode videos turned by 90 degrees: open_video falls back to PyAV for them."""
    path = set_mp4_rotation(write_video(str(tmp_path / "phone.mp4"), 8), degrees)
    frame = open_video(path, backend).get_frames([3])[0].permute(1, 2, 0).float()
    upright = np.rot90(frame_image(3), k=-degrees // 90).astype(np.float32)  # turned clockwise
    assert frame.shape == upright.shape
    assert (frame - torch.from_numpy(upright.copy())).abs().mean() < 2


@pytest.mark.parametrize("backend", READERS)
def test_a_variable_frame_rate_video_is_indexed_by_frame_not_by_time(tmp_path, backend):
    """Frame k is the k-th frame shown, however long the frames before it lasted."""
    import av
    from fractions import Fraction
    path = str(tmp_path / "vfr.mkv")
    durations_ms = [40, 120, 10, 200, 40, 40, 500, 20, 40, 80, 40, 300]
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"crf": "8"}
        stream.codec_context.time_base = Fraction(1, 1000)
        for index, start in enumerate(np.cumsum([0] + durations_ms[:-1])):
            frame = av.VideoFrame.from_ndarray(frame_image(index), format="rgb24")
            frame.pts, frame.time_base = int(start), Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    video = open_video(path, backend)
    assert len(video) == len(durations_ms)
    assert clip_indices(video.get_frames([11, 0, 6, 7, 3])) == [11, 0, 6, 7, 3]


def test_predict_scores_every_codec_with_the_default_reader(codec_videos, tiny_config, tmp_path):
    from tools import predict
    root = codec_videos[0]
    output = tmp_path / "results.json"
    predictions = predict.main(["--config", tiny_config.write(), str(root), "--cpu", "--output", str(output)])
    assert sorted(Path(p.path).name for p in predictions) == sorted(case.file_name for case in CASES)
    rows = json.loads(output.read_text())
    assert len(rows) == len(CASES) and all(abs(sum(row["scores"].values()) - 1) < 1e-4 for row in rows)


@pytest.mark.parametrize("backend", READERS)
def test_predict_video_backend_option_chooses_the_reader(codec_videos, tiny_config, monkeypatch, caplog, backend):
    from tools import predict
    monkeypatch.setattr(decoding, "_logged", set())
    with caplog.at_level(logging.INFO, logger="datasets.decoding"):
        predict.main(["--config", tiny_config.write(), str(codec_videos[0] / "hevc.mp4"), "--cpu",
                      "--video_backend", backend])
    assert caplog.messages[0].startswith(f"videos decode with {backend}")


def test_a_file_the_chosen_reader_cannot_open_falls_back_and_is_logged(tmp_path, monkeypatch, caplog):
    path = write_video(str(tmp_path / "a.mp4"), 10)

    class Refuses:
        def __init__(self, path, *args):
            raise SampleReadError(f"cannot open video {path}: this reader refuses it")
    firsts = [name for name in ("torchcodec", "decord") if name in decoding.available_video_backends()]
    if not firsts:
        pytest.skip("only PyAV can be used here: NOT tested, no reader to fall back from")
    chosen = firsts[0]  # a reader with PyAV behind it
    monkeypatch.setitem(decoding._READERS, chosen, Refuses)
    monkeypatch.setattr(decoding, "_logged", set())
    with caplog.at_level(logging.INFO, logger="datasets.decoding"):
        video = open_video(path, chosen)
        open_video(path, chosen)
    fallback = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(fallback) == 1 and "this reader refuses it" in fallback[0].getMessage() and path in fallback[0].getMessage()
    assert f"decoded with {type(video).__name__[:-5].lower()}" in fallback[0].getMessage()
    assert clip_indices(video.get_frames([0, 9])) == [0, 9]


def test_without_ffmpeg_libraries_pyav_decodes_and_the_log_says_why(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(decoding, "torchcodec_decoder", lambda: (None, "libavcodec.so.59: not found"))
    monkeypatch.setattr(decoding, "_logged", set())
    path = write_video(str(tmp_path / "a.mp4"), 10)
    with caplog.at_level(logging.INFO, logger="datasets.decoding"):
        assert type(open_video(path)).__name__ == "PyAVVideo"
    assert caplog.messages == ["videos decode with pyav (TorchCodec unavailable: libavcodec.so.59: not found)"]
    with pytest.raises(VideoBackendError, match="video backend torchcodec cannot be used: libavcodec.so.59"):
        open_video(path, "torchcodec")


BROKEN = {
    "empty": "Invalid data found when processing input",
    "not_a_video": "Invalid data found when processing input",
    "audio_only": "has no video stream",
    "truncated": "truncated",
    "index_first_truncated": "truncated",
    "over_reported": "its header announces 1000 frames, 40.00 s, the file holds 16 frames, 0.64 s",
}


def write_broken(folder, kind):
    if kind == "empty":
        return write_text(str(folder / "empty.mp4"), [])
    if kind == "not_a_video":
        return write_text(str(folder / "notes.mkv"), ["a shopping list"] * 20)
    if kind == "audio_only":
        return str(write_audio_only(folder / "song.m4a"))
    if kind == "over_reported":
        case = next(case for case in CASES if case.container == "avi")
        return str(over_report_avi_frames(write_case(folder / "over.avi", case)))
    return truncate_file(write_video(str(folder / f"{kind}.mp4"), 40, faststart=kind == "index_first_truncated"))


@pytest.mark.parametrize("kind", BROKEN)
def test_a_broken_video_is_one_line_naming_it_in_the_main_process_and_from_a_worker(tmp_path, kind):
    path = write_broken(tmp_path, kind)
    labels = write_labels_csv(str(tmp_path / "labels.csv"), ["a", "b"])
    video_list = write_text(str(tmp_path / "list.txt"), [f"{Path(path).name} 0"])
    dataset = VideoDataset(video_list, labels, str(tmp_path), num_segments=4, mode="val")
    with pytest.raises(SampleReadError) as in_main:
        dataset[0]
    main_line = error_line(in_main.value)
    assert main_line.startswith(f"error: {video_list}:1: ") and path in main_line and BROKEN[kind] in main_line
    assert "\n" not in main_line
    assert error_line_from_a_worker(dataset) == main_line


def error_line_from_a_worker(dataset):
    """The error line of the first batch of a one-worker loader. Only the line leaves this function: a
    kept exception would keep the loader's worker and threads alive into the next test's fork."""
    iterator = iter(DataLoader(dataset, batch_size=1, num_workers=1, multiprocessing_context="fork"))
    try:
        next(iterator)
    except SampleReadError as err:
        return error_line(err)
    return "no error"


@pytest.mark.slow
def test_an_over_reported_frame_count_does_not_hang_any_reader(tmp_path):
    """In a separate process with a time limit: a hang holding the GIL would stop the test run itself."""
    path = write_broken(tmp_path, "over_reported")
    backends = list(decoding.available_video_backends())
    script = ("import sys; from datasets.decoding import open_video, SampleReadError\n"
              "for backend in sys.argv[2:]:\n"
              "    try:\n"
              "        video = open_video(sys.argv[1], backend); print(backend, len(video.get_frames([0, 15, len(video) - 1])))\n"
              "    except SampleReadError as err:\n"
              "        print(backend, 'error', err)\n")
    done = subprocess.run([sys.executable, "-c", script, path, *backends], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and [line.split()[0] for line in lines] == backends, done.stderr
    for line in lines:  # AVIs decode with PyAV, which reports the header's claim whatever reader was asked
        assert line.endswith(f"error video {path} is truncated: {BROKEN['over_reported']}")


def test_gpu_decoding_is_refused_with_the_reason_where_it_cannot_run(tmp_path, monkeypatch, tiny_dataset):
    path = write_video(str(tmp_path / "a.mp4"), 10)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(VideoBackendError, match=r"no CUDA device \(torch.cuda.is_available\(\) is False\)"):
        open_video(path, device="cuda")
    for modality, list_file, root in (("video", tiny_dataset.val_videos, tiny_dataset.videos_root),
                                      ("RGB", tiny_dataset.val_frames, tiny_dataset.frames_root)):
        with pytest.raises(VideoBackendError, match="no CUDA device"):
            VideoDataset(list_file, tiny_dataset.labels, str(root), modality=modality, mode="val",
                         decode_device="cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(VideoBackendError, match="video backend pyav decodes on the CPU only"):
        open_video(path, "pyav", device="cuda")
    monkeypatch.setattr(decoding, "torchcodec_decoder", lambda: (None, "FFmpeg's shared libraries cannot be loaded"))
    with pytest.raises(VideoBackendError, match="decodes with TorchCodec, which cannot be used here: FFmpeg's"):
        open_video(path, device="cuda")
