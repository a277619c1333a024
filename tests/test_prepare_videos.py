"""tools/prepare_videos.py: every frame kept and upright, short side scaled, keyframes where asked, no audio,
a new list in the source's order, resumable, a bad video reported without stopping the others."""
from pathlib import Path

import av
import numpy as np

from datasets.decoding import open_video
from tests.codec_files import CASES, CodecCase, set_mp4_rotation, write_case
from tests.data_factory import clip_indices, frame_image, write_text, write_video
from tools import prepare_videos

WITH_AUDIO = next(case for case in CASES if case.audio)  # 64x48 H.264 + AAC
LARGE = CodecCase("vp9_large", "libvpx-vp9", "yuv420p", "webm", width=161, height=97, frames=6)


def packets(path):
    """(keyframe flags of the video packets in decoding order, whether the file has audio)."""
    with av.open(str(path)) as container:
        flags = [packet.is_keyframe for packet in container.demux(video=0) if packet.size]
        return flags, bool(container.streams.audio)


def test_prepared_videos_keep_every_frame_upright_at_the_new_size(tmp_path):
    source = tmp_path / "source"
    write_case(source / "a" / WITH_AUDIO.file_name, WITH_AUDIO)
    write_case(source / LARGE.file_name, LARGE)
    set_mp4_rotation(write_video(str(source / "phone.mp4"), 12), 90)
    (source / "broken.mkv").write_bytes(b"not a video" * 30)
    listed = [f"a/{WITH_AUDIO.file_name} 1", f"{LARGE.file_name} 0", "broken.mkv 1", "phone.mp4 2"]
    video_list = write_text(str(tmp_path / "videos.txt"), listed)
    out, new_list = tmp_path / "prepared", tmp_path / "prepared.txt"
    arguments = [video_list, "--video-root", str(source), "--out", str(out), "--video-list", str(new_list),
                 "--short-side", "48", "--codec", "h264", "--keyframe-seconds", "0.2", "--workers", "2",
                 "--no-progress"]
    assert prepare_videos.main(arguments) == 1  # the broken one failed, the others are done
    assert new_list.read_text().splitlines() == ["a/h264_aac.mp4 1", "vp9_large.mp4 0", "phone.mp4 2"]

    prepared = out / "a" / "h264_aac.mp4"
    video = open_video(str(prepared), "pyav")
    assert len(video) == WITH_AUDIO.frames
    assert clip_indices(video.get_frames(range(len(video)))) == list(range(WITH_AUDIO.frames))  # 48 high already
    flags, has_audio = packets(prepared)
    assert not has_audio and [i for i, key in enumerate(flags) if key] == [0, 5, 10, 15]  # 25 fps x 0.2 s

    large = open_video(str(out / "vp9_large.mp4"), "pyav")
    assert len(large) == LARGE.frames and large.get_frames([0]).shape == (1, 3, 48, 80)  # 161x97: 79.7 wide, rounded

    phone = open_video(str(out / "phone.mp4"), "pyav").get_frames([3])[0].permute(1, 2, 0).float().numpy()
    upright = np.rot90(frame_image(3), k=-1).astype(np.float32)
    assert phone.shape == (64, 48, 3) and np.abs(phone - upright).mean() < 3
    with av.open(str(out / "phone.mp4")) as container:
        assert next(container.decode(video=0)).rotation == 0  # the turn is in the pixels now

    stamps = {path: path.stat().st_mtime_ns for path in out.rglob("*.mp4")}
    (out / "vp9_large.mp4").unlink()
    (out / "vp9_large.partial.mp4").write_bytes(b"left by an interrupted run")
    assert prepare_videos.main(arguments) == 1
    assert sorted(path.name for path in out.rglob("*")) == ["a", "h264_aac.mp4", "phone.mp4", "vp9_large.mp4"]
    again = {path: path.stat().st_mtime_ns for path in out.rglob("*.mp4")}
    assert [path for path in stamps if again[path] != stamps[path]] == [out / "vp9_large.mp4"]
    assert Path(new_list).read_text().count("\n") == 3


def test_the_default_mjpeg_makes_every_frame_a_keyframe(tmp_path):
    source = write_video(str(tmp_path / "source" / "clip.mp4"), 20, keyframe_interval=250)
    assert prepare_videos.main([str(Path(source).parent), "--out", str(tmp_path / "out"), "--short-side", "0",
                                "--workers", "1", "--no-progress"]) == 0
    prepared = tmp_path / "out" / "clip.mkv"
    flags, has_audio = packets(prepared)
    assert flags == [True] * 20 and not has_audio
    assert clip_indices(open_video(str(prepared)).get_frames([19, 0, 7])) == [19, 0, 7]
