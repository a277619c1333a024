"""Sharded datasets on local disk: tools/make_shards.py's shards hold every sample's bytes and label, and survive a
kill; a shard dataset's samples are the per-file dataset's, every rank and loader worker reads its own share of
an epoch exactly once, a resumed epoch skips what was consumed, and train.py / test.py run on shards (torchrun,
kill -9 and resume, scores in list order)."""
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

import test as test_program
import train as train_program
from datasets.annotations import AnnotationError, read_video_list
from datasets.build import build_dataset
from datasets.decoding import SampleReadError
from datasets.shards import read_manifest
from datasets.storage import ShardReadError
from tests.processes import torchrun
from tests.resume_checks import assert_same_tensors, killed_mid_run
from tests.shard_checks import IndexShards, repeated_list, shards_of
from tests.tiny_run import FP32, TinyConfig, write_tiny_checkpoint
from utils.config import ConfigError, load_config
from workflows.training_run import start_epoch

REPO = Path(__file__).resolve().parent.parent


def videos_config(tiny: TinyConfig, **data):
    """The tiny config on the video files of the tiny data (lists <file> <label>)."""
    dataset = tiny.values["data"]
    videos = Path(dataset["train_list"]).parent / "videos"
    return tiny.write("videos.yaml", data={"modality": "video", "train_root": str(videos), "val_root": str(videos),
                                           "train_list": str(videos.parent / "train_videos.txt"),
                                           "val_list": str(videos.parent / "val_videos.txt"), **data})


def tar_members(path):
    """{member name: bytes} of a tar file, read with Python's tarfile."""
    with tarfile.open(path) as tar:
        return {member.name: tar.extractfile(member).read() for member in tar.getmembers()}


@pytest.mark.parametrize("modality", ["RGB", "video"])
def test_shards_hold_every_samples_files_label_and_path_in_list_order(tiny_config, tmp_path, modality):
    config = tiny_config.write() if modality == "RGB" else videos_config(tiny_config)
    data = load_config(config).data
    manifest_path = shards_of(config, "val", tmp_path / "shards", shard_size="200KB" if modality == "RGB" else "40KB")
    manifest = json.loads(Path(manifest_path).read_text())
    records = read_video_list(data.val_list, 8, modality)
    assert manifest["num_samples"] == len(records) == sum(s["samples"] for s in manifest["shards"])
    assert manifest["payload"] == ("frames" if modality == "RGB" else "video") and manifest["num_classes"] == 8
    members = {}
    for shard in manifest["shards"]:
        path = tmp_path / "shards" / shard["name"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == shard["sha256"]
        shard_members = tar_members(path)
        assert len({name.split(".")[0] for name in shard_members}) == shard["samples"]
        members.update(shard_members)
    assert len(manifest["shards"]) > 1
    for index, record in enumerate(records):
        key = f"{index:09d}"
        meta = json.loads(members.pop(f"{key}.json"))
        assert (meta["index"], meta["path"], meta["label"]) == (index, record.path, record.label)
        assert members.pop(f"{key}.cls") == str(record.label).encode()
        folder = Path(data.val_root) / record.path
        if modality == "video":
            assert members.pop(f"{key}.mp4") == folder.read_bytes()
            continue
        frame_files = [(folder / data.image_tmpl.format(k + 1)).read_bytes() for k in range(record.num_frames)]
        assert meta["frames"] == record.num_frames and meta["frame_bytes"] == [len(file) for file in frame_files]
        assert members.pop(f"{key}.frames") == b"".join(frame_files)
    assert not members, f"unexpected members: {sorted(members)[:5]}"


@pytest.mark.parametrize("modality", ["RGB", "video"])
def test_a_shard_sample_is_the_file_datasets_sample_for_the_same_random_numbers(tiny_config, tmp_path, modality):
    """Training items (random frames and crops) and 2-clip test items, decoded from memory, equal the per-file
    dataset's items of the same list index drawn with the same seed (the seed of the sample's place in the epoch:
    torch's generator seeded with seed + 1000 * epoch + rank, one draw per place)."""
    config = tiny_config.write(data={"num_segments": 3}) if modality == "RGB" else videos_config(tiny_config,
                                                                                                  num_segments=3)
    size = "300KB" if modality == "RGB" else "40KB"
    train_manifest = shards_of(config, "train", tmp_path / "train", size)
    val_manifest = shards_of(config, "val", tmp_path / "val", size)
    files = load_config(config)
    shards = load_config(config, [f"data.train_list={train_manifest}", f"data.val_list={val_manifest}"])

    train_files, train_shards = build_dataset(files, "train"), build_dataset(shards, "train")
    read, item = [], train_shards._item

    def recording_item(shard, sample):
        read.append(json.loads(sample["json"])["index"])
        return item(shard, sample)
    train_shards._item = recording_item
    train_shards.split(0, 1, 2)
    train_shards.set_epoch(3)
    items = list(train_shards)
    seeds = torch.randint(2**62, (len(items),), generator=torch.Generator().manual_seed(files.seed + 3000)).tolist()
    assert sorted(read) == list(range(8))
    for (clip, label), index, seed in zip(items, read, seeds):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            expected, expected_label = train_files[index]
        assert torch.equal(clip, expected) and label == expected_label, index

    test_files = build_dataset(files, "test", test_clips=2, test_crops=3)
    test_shards = build_dataset(shards, "test", test_clips=2, test_crops=3)
    test_shards.split(0, 1, 3)
    indices = []
    for views, label, index in test_shards:
        expected, expected_label = test_files[index]
        assert views.shape[0] == 6 and torch.equal(views, expected) and label == expected_label, index
        indices.append(index)
    assert indices == list(range(8))


@pytest.fixture(scope="module")
def many_samples(tiny_dataset, tmp_path_factory):
    """Shards of 40 samples (the 8 training videos 5 times over), 2 or 3 a shard; the IndexShards arguments."""
    folder = tmp_path_factory.mktemp("many_shards")
    tiny = TinyConfig(tiny_dataset, folder)
    config = tiny.write(data={"train_list": repeated_list(tiny_dataset.train_frames, 5, folder / "forty.txt")})
    manifest = shards_of(config, "train", folder / "shards", shard_size="400KB")
    assert json.loads(Path(manifest).read_text())["num_samples"] == 40
    return dict(manifest_url=manifest, labels_file=str(tiny_dataset.labels), mode="train", seed=5, shuffle_buffer=4)


def rank_epochs(arguments, rank, replicas, workers, epochs=(0, 1), batch_size=3):
    """The batches (lists of list indices) one rank's loader yields in each epoch (persistent workers, as in
    training)."""
    dataset = IndexShards(**arguments)
    dataset.split(rank, replicas, batch_size)
    loader = DataLoader(dataset, batch_size=batch_size, drop_last=dataset.training, num_workers=workers,
                        persistent_workers=workers > 0)
    batches = {}
    for epoch in epochs:
        start_epoch(loader, arguments["seed"], rank, epoch)
        batches[epoch] = [batch.tolist() for batch in loader]
        assert len(batches[epoch]) == len(loader)
    return batches


@pytest.mark.parametrize("workers", [0, 4])
def test_two_ranks_read_disjoint_equal_shares_of_each_epoch_and_only_the_remainder_is_left(many_samples, workers):
    """40 samples, 2 ranks of batch 3: 6 batches each (36 samples), none twice; 4 loader workers read 2, 2, 1
    and 1 of a rank's batches. The order changes with the epoch and is the same when run again."""
    ranks = [rank_epochs(many_samples, rank, 2, workers) for rank in (0, 1)]
    for epoch in (0, 1):
        first, second = (sum(rank[epoch], []) for rank in ranks)
        assert len(ranks[0][epoch]) == len(ranks[1][epoch]) == 6
        assert len(set(first + second)) == len(first + second) == 36, epoch
    assert ranks[0][0] != ranks[0][1]
    assert rank_epochs(many_samples, 0, 2, workers, epochs=(1,))[1] == ranks[0][1]


def test_every_sample_once_in_an_epoch_of_one_rank_whatever_the_workers(many_samples):
    """One rank of batch 4 reads all 40 samples each epoch, with any number of loader workers."""
    for workers in (0, 3):
        for epoch, batches in rank_epochs(many_samples, 0, 1, workers, batch_size=4).items():
            assert sorted(sum(batches, [])) == list(range(40)), (workers, epoch)


def test_a_resumed_epoch_yields_the_batches_after_the_consumed_ones(many_samples):
    """start_epoch(..., batches_done=k) on a fresh loader of 4 workers gives the last batches of the same epoch
    of the uninterrupted loader; persistent workers started in an earlier epoch follow the epoch too."""
    whole = rank_epochs(many_samples, 0, 1, 4, epochs=(2,))[2]
    dataset = IndexShards(**many_samples)
    dataset.split(0, 1, 3)
    persistent = DataLoader(dataset, batch_size=3, drop_last=True, num_workers=4, persistent_workers=True)
    start_epoch(persistent, many_samples["seed"], 0, 0)
    assert [batch.tolist() for batch in persistent] != whole
    for done in (0, 1, 5, 13):
        start_epoch(persistent, many_samples["seed"], 0, 2, batches_done=done)
        assert [batch.tolist() for batch in persistent] == whole[done:], done


def test_an_evaluation_split_gives_each_rank_a_range_of_the_list_and_drops_nothing(many_samples):
    """3 ranks of 2 loader workers, batch 4: 13, 13 and 14 consecutive list entries (the loader interleaves its
    workers' batches; test.py puts the scores in list order by the items' indices)."""
    ranks = [sum(rank_epochs({**many_samples, "mode": "test"}, rank, 3, workers=2, epochs=(0,), batch_size=4)[0], [])
             for rank in (0, 1, 2)]
    assert [sorted(rank) for rank in ranks] == [list(range(13)), list(range(13, 26)), list(range(26, 40))]


@pytest.mark.slow
def test_make_shards_killed_and_run_again_gives_the_same_shards_keeping_the_finished_ones(tiny_config, tmp_path):
    config = tiny_config.write()
    reference = json.loads(Path(shards_of(config, "train", tmp_path / "whole", "200KB", workers=2)).read_text())
    out = tmp_path / "killed"
    killed_mid_run("tools/make_shards.py", ["--config", config, "--split", "train", "--out", str(out),
                                            "--shard_size", "200KB", "--workers", "1"], r"wrote shard-000002\.tar")
    finished = {path.name: path.stat() for path in out.glob("shard-*.tar")}
    (out / ".shard-000003.tar.x1y2z3.tmp").write_bytes(b"a shard cut short")  # as a kill in the middle leaves it
    assert sorted(finished) == [f"shard-00000{i}.tar" for i in range(3)] and not (out / "manifest.json").exists()
    resumed = json.loads(Path(shards_of(config, "train", out, "200KB")).read_text())
    assert resumed == reference and len(resumed["shards"]) > 3
    for name, before in finished.items():
        after = (out / name).stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), f"{name} was written again"
    assert sorted(path.name for path in out.iterdir()) == sorted([s["name"] for s in resumed["shards"]] +
                                                                 ["manifest.json"])


@pytest.mark.slow
def test_test_py_on_shards_gives_the_per_file_scores_in_list_order(tiny_config, tmp_path):
    """Videos decoded from memory by 2 loader workers of batch 3, 2 clips x 3 crops: the same scores, in list order."""
    config = videos_config(tiny_config, batch_size=3)
    manifest = shards_of(config, "val", tmp_path / "shards", shard_size="40KB")
    weights = write_tiny_checkpoint(tmp_path / "weights.pt", seed=3)
    scores = {}
    for name, overrides in (("files", []), ("shards", [f"data.val_list={manifest}", "data.workers=2"])):
        test_program.main(["--config", config, "--weights", weights, "--cpu", *FP32, "--no_progress",
                           "--test_clips", "2", "--test_crops", "3", "--save_scores", str(tmp_path / f"{name}.pt"),
                           *overrides])
        scores[name] = torch.load(tmp_path / f"{name}.pt", weights_only=True)
    assert len(json.loads(Path(manifest).read_text())["shards"]) > 2
    assert torch.equal(scores["shards"]["labels"], scores["files"]["labels"])
    assert torch.equal(scores["shards"]["scores"], scores["files"]["scores"])


@pytest.mark.slow
def test_two_processes_train_on_shards_reading_every_sample_once_an_epoch(tiny_config, tmp_path):
    """torchrun, 2 ranks of 2 loader workers, batch 2, one epoch: each rank decodes 4 of the 8 training videos,
    the ranks none in common; validation on shards (gathered in list order over the ranks) gives the scores
    one process gives on the files with the same weights."""
    config = tiny_config.write(data={"batch_size": 2, "workers": 2}, solver={"epochs": 1})
    train_manifest = shards_of(config, "train", tmp_path / "train")
    val_manifest = shards_of(config, "val", tmp_path / "val")
    records = tmp_path / "records"
    torchrun([str(REPO / "tests" / "torchrun_shards.py"), str(records), "--config", config, "--log_time", "shards",
              "--cpu", *FP32, "--no_progress", f"data.train_list={train_manifest}", f"data.val_list={val_manifest}"],
             timeout=420)
    read = {(rank, 0): [] for rank in (0, 1)}
    for rank in (0, 1):
        files = sorted(records.glob(f"ids_rank{rank}_*.jsonl"))
        assert len(files) == 2, files  # its 2 loader workers
        for line in (line for file in files for line in file.read_text().splitlines()):
            entry = json.loads(line)
            read[rank, entry["epoch"]].append(entry["index"])
    assert len(read[0, 0]) == len(read[1, 0]) == 4
    assert sorted(read[0, 0] + read[1, 0]) == list(range(8))
    weights = tiny_config.run_folder("shards") / "last_model.pt"
    test_program.main(["--config", config, "--weights", str(weights), "--cpu", *FP32, "--no_progress",
                       "--save_scores", str(tmp_path / "one.pt")])
    one = torch.load(tmp_path / "one.pt", weights_only=True)["scores"]
    torch.testing.assert_close(torch.load(records / "validation_0.pt"), one, atol=1e-6, rtol=1e-5)


@pytest.mark.slow
def test_a_run_on_shards_killed_mid_epoch_and_resumed_ends_bit_identical(tiny_config, tmp_path):
    """SIGKILL in the second epoch (2 loader workers, batch 4: 2 steps an epoch): the resumed run repeats that
    epoch from the first epoch's checkpoint and ends with the uninterrupted run's weights and optimizer state."""
    config = tiny_config.write(data={"workers": 2}, solver={"epochs": 2}, logging={"eval_freq": 2})
    manifest = shards_of(config, "train", tmp_path / "shards")
    arguments = ["--config", config, "--cpu", "--no_progress", "--log_time"]
    train_program.main(arguments + ["whole", f"data.train_list={manifest}"])
    killed_mid_run("train.py", arguments + ["killed", f"data.train_list={manifest}"], r"epoch 2/2 \[1/2\]")
    interrupted = tiny_config.run_folder("killed")
    assert torch.load(interrupted / "last_model.pt", weights_only=True)["epoch"] == 0
    train_program.main(arguments + ["killed", f"data.train_list={manifest}", f"resume={interrupted / 'last_model.pt'}"])
    final = torch.load(interrupted / "last_model.pt", weights_only=True)
    reference = torch.load(tiny_config.run_folder("whole") / "last_model.pt", weights_only=True)
    assert final["epoch"] == reference["epoch"] == 1
    assert_same_tensors(final, reference, ("model_state_dict", "fusion_model_state_dict", "optimizer_state_dict"))


def test_mistakes_with_shards_are_errors_that_name_the_key_or_file(tiny_config, tmp_path):
    config = tiny_config.write()
    with pytest.raises(ConfigError, match=r"data.shot .*data.train_list names shards"):
        load_config(config, ["data.train_list=shards/manifest.json", "data.shot=1"])
    (tmp_path / "other.json").write_text('{"shards": []}')
    with pytest.raises(AnnotationError, match=r"other.json is not a shard manifest"):
        read_manifest(str(tmp_path / "other.json"))
    with pytest.raises(ShardReadError, match=r"cannot read .*missing.json: no such file"):
        read_manifest(str(tmp_path / "missing.json"))
    manifest = json.loads(Path(shards_of(config, "val", tmp_path / "shards", "10MB")).read_text())
    (tmp_path / "shards" / "manifest.json").write_text(json.dumps({**manifest, "num_classes": 9}))
    with pytest.raises(AnnotationError, match=r"manifest.json: its labels index 9 classes .* has 8"):
        build_dataset(load_config(config, [f"data.val_list={tmp_path / 'shards' / 'manifest.json'}"]), "val")
    manifest["shards"][0]["samples"] += 1
    (tmp_path / "shards" / "manifest.json").write_text(json.dumps(manifest))
    dataset = build_dataset(load_config(config, [f"data.val_list={tmp_path / 'shards' / 'manifest.json'}"]), "val")
    with pytest.raises(SampleReadError, match=r"shard .*shard-000000.tar holds 8 samples, its manifest .* says 9"):
        list(dataset)
    (tmp_path / "shards" / "manifest.json").write_text(json.dumps({**manifest, "version": 1}))
    with pytest.raises(AnnotationError, match=r"version 1 .*reads version 2.*write the shards again"):
        read_manifest(str(tmp_path / "shards" / "manifest.json"))


def test_a_frame_sample_whose_sizes_do_not_add_up_is_an_error_naming_it(tiny_config, tmp_path):
    config = tiny_config.write()
    manifest = shards_of(config, "val", tmp_path / "shards", "10MB")
    shard = tmp_path / "shards" / "shard-000000.tar"
    members = tar_members(shard)
    meta = json.loads(members["000000000.json"])
    meta["frame_bytes"][0] += 1
    members["000000000.json"] = json.dumps(meta).encode()
    with tarfile.open(shard, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    dataset = build_dataset(load_config(config, [f"data.val_list={manifest}"]), "val")
    with pytest.raises(SampleReadError, match=r"shard-000000.tar:000000000 .*frames field holds \d+ bytes, its json "
                                              r"lists \d+"):
        next(iter(dataset))
