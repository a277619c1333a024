"""Unreadable videos: one clear error with the decoder's full reason, and nothing printed by the decoders."""
import os

import pytest

from datasets.decoding import VIDEO_BACKENDS, SampleReadError, available_video_backends, native_stderr_captured, open_video
from tests.data_factory import truncate_file, write_video

BACKENDS = [pytest.param(name, marks=pytest.mark.skipif(name not in available_video_backends(),
                                                        reason=f"video reader {name} cannot be used here: NOT tested"))
            for name in VIDEO_BACKENDS]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_file_that_is_not_a_video_gives_the_full_reason_and_no_decoder_output(tmp_path, capfd, backend):
    path = tmp_path / "notes.mp4"
    path.write_text("shopping list, not a video\n" * 20)
    with pytest.raises(SampleReadError) as error:
        open_video(str(path), backend)
    assert str(error.value) == f"cannot open video {path}: Invalid data found when processing input"
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")  # decord prints "video_reader.cc:83: ERROR opening: ..." when let through


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("faststart", [False, True])  # index first: the cut falls in the frames
def test_a_truncated_video_is_reported_without_decoder_output(tmp_path, capfd, backend, faststart):
    path = truncate_file(write_video(str(tmp_path / "cut.mp4"), 40, faststart=faststart), keep_fraction=0.4)
    with pytest.raises(SampleReadError, match=r"cut.mp4") as error:
        open_video(path, backend).get_frames(range(0, 40, 5))
    assert not str(error.value).endswith("...")
    assert capfd.readouterr() == ("", "")


def test_captured_native_output_is_handed_over_and_stderr_restored(capfd):
    with native_stderr_captured() as output:
        os.write(2, b"[h264 @ 0x1] noise from native code\n")
    assert output == ["[h264 @ 0x1] noise from native code"]
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"
