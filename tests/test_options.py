"""The shared command-line options: one spelling (snake_case) with the dashed one as an alias, the crop
choices of the test transform everywhere, and config overrides given the same way to every program."""
import pytest

import test as test_program
import test_zeroshot
import train
import train_co
from datasets.transforms import TEST_CROPS
from tools import app, export, extract_features, extract_frames, generate_attributes, predict
from utils.precision import grad_scaler
from workflows.options import overrides

# Each program's parse_args and the arguments it needs besides the ones under test.
PROGRAMS = {
    "train.py": (train.parse_args, ["--config", "c.yaml"]),
    "train_co.py": (train_co.parse_args, ["--config", "c.yaml"]),
    "test.py": (test_program.parse_args, ["--config", "c.yaml", "--weights", "w.pt"]),
    "test_zeroshot.py": (test_zeroshot.parse_args, ["--config", "c.yaml", "--weights", "w.pt"]),
    "generate_attributes": (generate_attributes.parse_args, ["--config", "c.yaml"]),
    "extract_features": (extract_features.parse_args, ["--config", "c.yaml", "--out", "features"]),
    "predict": (predict.parse_args, ["--config", "c.yaml", "video.mp4"]),
    "export": (export.parse_args, ["--config", "c.yaml", "--out", "m.onnx", "--frame_size", "240x320"]),
    "app": (app.parse_args, ["--config", "c.yaml"]),
}
WITH_VIEWS = ("test.py", "test_zeroshot.py", "generate_attributes", "extract_features", "predict", "export")


@pytest.mark.parametrize("program", PROGRAMS)
def test_overrides_after_set_reach_every_program(program):
    parse_args, required = PROGRAMS[program]
    args = parse_args([*required, "--set", "data.batch_size=4", "solver.epochs=2"])
    assert overrides(args) == ["data.batch_size=4", "solver.epochs=2"]
    # a launcher's --set (scripts/slurm_train.sh: --set resume=auto) and the user's own add up
    args = parse_args([*required, "--set", "resume=auto", "--set", "solver.epochs=2"])
    assert overrides(args) == ["resume=auto", "solver.epochs=2"]


@pytest.mark.parametrize("program", ["train.py", "train_co.py", "test.py", "test_zeroshot.py", "generate_attributes",
                                     "extract_features"])
def test_trailing_overrides_stay_where_they_were_documented(program):
    parse_args, required = PROGRAMS[program]
    assert overrides(parse_args([*required, "data.batch_size=4"])) == ["data.batch_size=4"]


@pytest.mark.parametrize("program", WITH_VIEWS)
@pytest.mark.parametrize("spelling", ["--test_crops", "--test-crops"])
def test_views_take_both_spellings_and_only_the_supported_crops(program, spelling, capsys):
    parse_args, required = PROGRAMS[program]
    for crops in TEST_CROPS:
        args = parse_args([*required, spelling, str(crops), "--test_clips", "2"])
        assert (args.test_crops, args.test_clips) == (crops, 2)
    with pytest.raises(SystemExit) as exit_request:
        parse_args([*required, spelling, "2"])
    assert exit_request.value.code == 2 and "invalid choice: 2" in capsys.readouterr().err


def test_the_dashed_options_of_the_data_tools_have_their_snake_case_spelling(tmp_path):
    listed = tmp_path / "videos.txt"
    listed.write_text("a.mp4 0\n")
    dashed = extract_frames.parse_args([str(listed), "--out", "o", "--video-root", "v", "--no-progress"])
    snake = extract_frames.parse_args([str(listed), "--out", "o", "--video_root", "v", "--no_progress"])
    assert vars(dashed) == vars(snake)


def test_only_fp16_training_scales_the_loss():
    assert [grad_scaler(precision) for precision in ("bf16", "fp32")] == [None, None]
