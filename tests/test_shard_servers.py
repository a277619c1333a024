"""Shards read from servers on the loopback (tests/servers.py): training from an HTTP server that goes down in the
middle of an epoch and comes back, and from an S3-protocol server (moto), ends with the weights of the same run
on local shards; a corrupt shard ends the run with one error line naming it, or with data.skip_unreadable is
skipped, its samples replaced and the count logged."""
import json
import re
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

import train as train_program
from datasets import storage
from datasets.storage import ShardReadError
from tests.resume_checks import assert_same_tensors
from tests.servers import FileServer, s3_server, upload_folder
from tests.shard_checks import IndexShards, shards_of
from tests.tiny_run import FP32
from utils.errors import error_line
from workflows.training_run import start_epoch

WEIGHTS = ("model_state_dict", "fusion_model_state_dict", "optimizer_state_dict")


@pytest.fixture
def shards(tiny_config, tmp_path):
    """The tiny data's train and val lists as local shards (7 and 8 of them) under tmp_path/shards, and the
    config (one epoch, 2 frames a clip) of a run on them."""
    config = tiny_config.write(data={"num_segments": 2}, solver={"epochs": 1})
    shards_of(config, "train", tmp_path / "shards" / "train")
    shards_of(config, "val", tmp_path / "shards" / "val")
    return tmp_path / "shards", config


def train_on(config, tiny_config, log_time, manifests, *settings):
    train_program.main(["--config", config, "--cpu", *FP32, "--no_progress", "--log_time", log_time,
                        f"data.train_list={manifests}/train/manifest.json",
                        f"data.val_list={manifests}/val/manifest.json", *settings])
    return torch.load(tiny_config.run_folder(log_time) / "last_model.pt", weights_only=True)


def corrupt(shard: Path):
    """Overwrites the shard's first tar header: the shard is no tar file any more."""
    data = bytearray(shard.read_bytes())
    data[:512] = b"\x07" * 512
    shard.write_bytes(bytes(data))


@pytest.mark.slow
def test_training_from_http_with_an_outage_mid_epoch_and_from_s3_gives_the_weights_of_local_shards(
        shards, tiny_config, monkeypatch):
    """The HTTP server cuts a response in the middle of the training epoch's third shard, is down for 0.3 s and
    comes back: the reads resume at their byte offset and the epoch sees every sample once (the same weights)."""
    folder, config = shards
    local = train_on(config, tiny_config, "local", folder)
    monkeypatch.setattr(storage, "FIRST_BACKOFF_S", 0.05)
    monkeypatch.setattr(storage, "BLOCK_SIZE", 2**16)  # a shard in several ranged requests
    train_bytes = sum(shard["bytes"] for shard in json.loads((folder / "train/manifest.json").read_text())["shards"])
    with FileServer(folder) as server:
        server.outage(after_bytes=train_bytes // 3, down_s=0.3)
        http = train_on(config, tiny_config, "http", server.url().rstrip("/"))
    assert server.cuts == 1
    cut_path = server.requests[server.cut_at_request][1]
    resumed = next(r for method, path, r, _ in server.requests[server.cut_at_request + 1:]
                   if method == "GET" and path == cut_path)
    assert not resumed.startswith("bytes=0-"), resumed  # read on from the byte the cut response had reached
    assert_same_tensors(http, local, WEIGHTS)
    with s3_server(monkeypatch, bucket="shards") as client:
        upload_folder(client, "shards", folder)
        s3 = train_on(config, tiny_config, "s3", "s3://shards")
    assert_same_tensors(s3, local, WEIGHTS)


@pytest.mark.slow
def test_a_corrupt_shard_ends_training_with_one_error_line_naming_it(shards, tiny_config):
    folder, config = shards
    corrupt(folder / "train" / "shard-000002.tar")
    with pytest.raises(ShardReadError) as raised:
        train_on(config, tiny_config, "corrupt", folder)
    line = error_line(raised.value)
    assert line == f"error: shard {folder}/train/shard-000002.tar is not a readable tar file (invalid header after 0 " \
                   f"samples)", line


def test_skip_unreadable_leaves_out_a_corrupt_shard_and_replaces_its_samples(tiny_config, tiny_dataset, tmp_path,
                                                                             caplog):
    """One rank, batch 2: the 8 samples of an epoch are 7 list entries (the corrupt shard held
    one) and one of them read again; the log names the shard and the count."""
    manifest = shards_of(tiny_config.write(), "train", tmp_path / "shards")
    counts = [shard["samples"] for shard in json.loads(Path(manifest).read_text())["shards"]]
    assert counts[2] == 1
    lost = sum(counts[:2])  # the list index of shard-000002's sample (shards hold the list in order)
    corrupt(tmp_path / "shards" / "shard-000002.tar")
    dataset = IndexShards(manifest, str(tiny_dataset.labels), mode="train", seed=3, shuffle_buffer=2,
                          skip_unreadable=True)
    dataset.split(0, 1, 2)
    loader = DataLoader(dataset, batch_size=2, drop_last=True)
    start_epoch(loader, 3, 0, 0)
    indices = sum((batch.tolist() for batch in loader), [])
    assert len(indices) == 8 and set(indices) == set(range(8)) - {lost}, indices
    assert dataset.num_skipped == 1
    assert "skipping unreadable shard: shard" in caplog.text and "shard-000002.tar is not a readable tar" in caplog.text
    assert "epoch 0: 1 unreadable shard(s) skipped (shard-000002.tar), their 1 samples replaced" in caplog.text


def test_a_server_that_goes_down_for_good_mid_epoch_ends_with_one_error_line_naming_the_shard(tiny_config, tmp_path,
                                                                                               monkeypatch):
    """The error a shard's reader raises passes through webdataset's tar reader (which appends to the args of
    the errors it passes on) and still prints as one line naming the shard and the tries."""
    shards_of(tiny_config.write(), "train", tmp_path / "shards")
    monkeypatch.setattr(storage, "READ_TRIES", 2)
    monkeypatch.setattr(storage, "FIRST_BACKOFF_S", 0.01)
    with FileServer(tmp_path) as server:
        dataset = IndexShards(server.url("shards/manifest.json"), str(tiny_config.values["data"]["label_list"]),
                              mode="train", seed=3, shuffle_buffer=2)
        dataset.split(0, 1, 2)
        server.outage(after_bytes=300_000)
        with pytest.raises(ShardReadError) as raised:
            list(DataLoader(dataset, batch_size=2, drop_last=True))
    line = error_line(raised.value)
    assert re.fullmatch(re.escape(f"error: cannot read {server.url('shards/shard-')}") + r"\d{6}\.tar at byte \d+ "
                        r"after 2 tries: Connect call failed \('127\.0\.0\.1', \d+\)", line), line
