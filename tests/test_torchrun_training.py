"""train.py end to end under torchrun with 2 CPU processes for 2 epochs: the sampler's per-epoch shuffle, rank 0
alone writing, validation equal to one process on the same weights, and a resumed 2-process run."""
import json
import re
from pathlib import Path

import pytest
import torch

import test as test_program
from tests.processes import torchrun
from tests.tiny_run import FP32, TinyConfig

pytestmark = pytest.mark.slow  # torchrun: a 2-process training run (2 epochs) and its resumption

REPO = Path(__file__).resolve().parent.parent
DRIVER = str(REPO / "tests" / "torchrun_train.py")


def read_records(folder: Path, name: str, rank: int) -> list:
    path = folder / f"{name}_rank{rank}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def two_processes(tiny_dataset, tmp_path_factory):
    """A 2-epoch run of 2 processes (batch 2 each: 2 steps per epoch over the 8 training videos)."""
    tiny = TinyConfig(tiny_dataset, tmp_path_factory.mktemp("torchrun"))
    config = tiny.write(data={"batch_size": 2}, solver={"epochs": 2})
    records = tiny.folder / "records_whole"
    torchrun([DRIVER, str(records), "--config", config, "--log_time", "whole", "--cpu", *FP32, "--no_progress"],
             timeout=420)
    return tiny, config, records, tiny.run_folder("whole")


def test_each_epoch_reshuffles_a_split_of_the_training_set_over_the_ranks(two_processes):
    _, _, records, _ = two_processes
    orders = [{r["epoch"]: r["indices"] for r in read_records(records, "order", rank)} for rank in (0, 1)]
    for epoch in (0, 1):
        first, second = orders[0][epoch], orders[1][epoch]
        assert len(first) == len(second) == 4 and sorted(first + second) == list(range(8)), epoch
    assert orders[0][0] != orders[0][1], "the sampler did not reshuffle for the second epoch"


def test_only_rank_0_writes_checkpoints_and_the_log(two_processes):
    _, _, records, folder = two_processes
    assert read_records(records, "saved", 1) == []
    saved = read_records(records, "saved", 0)
    assert [r["epoch"] for r in saved if r["file"] == "last_model.pt"] == [0, 1]
    log = (folder / "log.txt").read_text()
    for epoch in (1, 2):  # one line per epoch: a second writer would duplicate it
        assert len(re.findall(rf"epoch {epoch}/2: mean loss", log)) == 1
        assert len(re.findall(rf"epoch {epoch}/2 validation: Overall Prec@1", log)) == 1


def test_validation_during_training_equals_one_process_on_the_same_weights(two_processes, tmp_path):
    _, config, records, folder = two_processes
    for epoch in (0, 1):
        test_program.main(["--config", config, "--weights", str(folder / f"epoch{epoch}.pt"), "--cpu", *FP32,
                           "--no_progress",
                           "--save_scores", str(tmp_path / f"one{epoch}.pt")])
        one = torch.load(tmp_path / f"one{epoch}.pt", weights_only=True)["scores"]
        torch.testing.assert_close(torch.load(records / f"validation_{epoch}.pt"), one, atol=1e-6, rtol=1e-5)


def test_a_resumed_two_process_run_continues_the_interrupted_one(two_processes):
    tiny, config, _, whole = two_processes
    records = tiny.folder / "records_resumed"
    torchrun([DRIVER, str(records), "--config", config, "--log_time", "resumed", "--cpu", *FP32, "--no_progress",
              f"resume={whole / 'epoch0.pt'}"], timeout=300)
    folder = tiny.run_folder("resumed")
    log = (folder / "log.txt").read_text()
    for rank in (0, 1):
        assert [r["epoch"] for r in read_records(records, "order", rank)] == [1], rank
    assert not re.search(r"\bepoch 1/2\b", log)
    resumed, reference = (torch.load(f / "last_model.pt", weights_only=True) for f in (folder, whole))
    assert resumed["epoch"] == 1 and resumed["best_score"] == pytest.approx(reference["best_score"])
    for key in ("model_state_dict", "fusion_model_state_dict"):
        for name, value in reference[key].items():
            torch.testing.assert_close(resumed[key][name], value, atol=1e-5, rtol=1e-4, msg=f"{key} {name}")
    for name, value in reference["optimizer_state_dict"]["state"].items():
        for field, tensor in value.items():
            torch.testing.assert_close(resumed["optimizer_state_dict"]["state"][name][field], tensor, atol=1e-5,
                                       rtol=1e-4)
