"""Features of every video of a list, in shards, as test.py computes them: per view the CLIP frame embeddings,
the frame embeddings after the video header's temporal modelling, and (DP interaction) the pooled video
embedding the header compares with the class embeddings.

Layout of the output folder:
- `extraction.json`: how the features were made (written first; a rerun with other settings is refused);
- `shard-00000.safetensors`, ...: videos `k * shard_size ...` of the list in order, tensors
  `frames` and `temporal` [N, V, T, D] and, for DP, `pooled` [N, V, D] (V = clips x crops views, clip-major);
  the shard's index rows are in its metadata;
- `index.csv` (written last): path, label, shard, row, views, frames (per view), error, one line per video.

A shard is written atomically, so one that exists is complete: a rerun skips it, and an interrupted shard
is computed again. Shard k goes to process k mod W among those not done; each shard travels to rank 0
through the process group and rank 0 writes every file, so the processes need no shared file system.
Batches never cross a shard and every shard is computed the same way whichever process computes it.
"""
import contextlib
import csv
import dataclasses
import json
import logging
import math
import os
import subprocess
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes
from torch.utils.data import DataLoader
from tqdm import tqdm

from datasets.decoding import SampleReadError
from datasets.files import atomic_file
from datasets.transforms import normalize_on_device
from utils.distributed import barrier, broadcast_from_main, gather_to_main
from utils.errors import UnusableFileError, UsageError
from workflows.prediction import find_inputs

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
SETTINGS_FILE = "extraction.json"
INDEX_FILE = "index.csv"
INDEX_COLUMNS = ("path", "label", "shard", "row", "views", "frames", "error")
ROWS_KEY = "rows"  # shard metadata: its index rows, JSON
PROJECT_VERSION_KEY = "project_version"  # recorded, not compared: a resumed run may follow a new commit
REPOSITORY = Path(__file__).resolve().parent.parent


def shard_name(number: int) -> str:
    return f"shard-{number:05d}.safetensors"


@torch.no_grad()
def view_features(encoder, header, views: torch.Tensor) -> dict:
    """Features of normalised views [B, V, T, 3, H, W], as `view_similarities` computes them on the way to the
    class scores: {'frames', 'temporal'} [B, V, T, D], and 'pooled' [B, V, D] for the DP interaction."""
    batch, num_views = views.shape[:2]
    frames = encoder.encode_video(views.flatten(0, 1))
    temporal = header.aggregate(frames)
    features = {"frames": frames, "temporal": temporal}
    if header.interaction == "DP":
        features["pooled"] = F.normalize(temporal.mean(dim=1), dim=-1)
    return {name: value.float().view(batch, num_views, *value.shape[1:]) for name, value in features.items()}


class _ReadItems:
    """The loader's collate function: a batch's items as (index, views or None, error or None), so that one
    unreadable video does not fail its batch when it is to be recorded instead."""

    def __init__(self, dataset, skip_unreadable):
        self.dataset, self.skip_unreadable = dataset, skip_unreadable

    def __call__(self, indices):
        items = []
        for index in indices:
            try:
                items.append((index, self.dataset[index][0], None))
            except SampleReadError as err:
                if not self.skip_unreadable:
                    raise
                logger.warning("unreadable, recorded in the index: %s", err)
                items.append((index, None, str(err)))
        return items


class _Indices(torch.utils.data.Dataset):
    """What the loader's workers receive: indices, read by `_ReadItems`."""

    def __init__(self, size):
        self.size = size

    def __len__(self):
        return self.size

    def __getitem__(self, index):
        return index


def named_by_inputs(dataset):
    """The dataset of a temporary --inputs list, its records' messages naming --inputs, not that list's lines."""
    dataset.records = [dataclasses.replace(record, where="--inputs") for record in dataset.records]
    return dataset


def write_inputs_list(inputs, path: Path, image_tmpl: str, index_bias: int) -> Path:
    """A list in the project's format of the video files or the frame folders `inputs` (as tools/predict.py
    takes them: folders of videos give their videos), each with label 0, as no label is known."""
    found = find_inputs(inputs, image_tmpl, index_bias)
    folders = [item for item in found if os.path.isdir(item)]
    if folders and len(folders) != len(found):
        raise UsageError("--inputs mixes frame folders and video files; extract them in two runs")
    if any(len(item.split()) != 1 for item in found):
        raise UsageError(f"--inputs paths must not contain spaces (list format): {[i for i in found if ' ' in i]}")
    lines = [f"{item} {sum(1 for e in os.scandir(item) if e.is_file())} 0" if folders else f"{item} 0" for item in found]
    path.write_text("".join(line + "\n" for line in lines))
    return path


def _label_text(label, labelled=True) -> str:
    if not labelled:
        return ""
    return ";".join(str(int(i)) for i, hot in enumerate(label) if hot) if isinstance(label, tuple) else str(label)


def project_version() -> str:
    """The repository's commit (with '-dirty' for uncommitted changes), or 'unknown' outside a git checkout."""
    try:
        described = subprocess.run(["git", "-C", str(REPOSITORY), "describe", "--always", "--dirty"],
                                   capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return described.stdout.strip() or "unknown"


def extraction_settings(config, weights, views: dict, precision: str, dtype: torch.dtype, shard_size: int) -> dict:
    """What `extraction.json` records: everything the features depend on, and the project version."""
    return {"format_version": FORMAT_VERSION, "config": config.to_dict(), "config_file": config.source,
            "checkpoint": str(weights) if weights else None,
            "model": "checkpoint" if weights else f"zero-shot {config.network.arch}", "views": views,
            "precision": precision, "dtype": str(dtype).replace("torch.", ""), "shard_size": shard_size,
            "video_list": config.data.val_list, "root": config.data.val_root, PROJECT_VERSION_KEY: project_version()}


def check_settings(out: Path, settings: dict):
    """Writes `extraction.json`, or checks that the one there describes the same extraction."""
    path = out / SETTINGS_FILE
    if path.exists():
        try:
            recorded = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise UnusableFileError(f"{path} is not JSON ({err}); give another --out") from err
        differing = sorted(key for key in set(recorded) | set(settings)
                           if key != PROJECT_VERSION_KEY and recorded.get(key) != settings.get(key))
        if differing:
            raise UnusableFileError(f"{out} holds features made with other settings ({', '.join(differing)} "
                                    f"differ from {path}); give another --out or remove it")
        return
    with atomic_file(path, "w") as file:
        file.write(json.dumps(settings, indent=1, sort_keys=True) + "\n")


def done_shards(out: Path) -> list:
    return sorted(int(path.name[6:11]) for path in out.glob("shard-*.safetensors"))


def shard_rows(path: Path) -> list:
    with safe_open(str(path), framework="pt") as shard:
        return json.loads(shard.metadata()[ROWS_KEY])


@torch.no_grad()
def compute_shard(encoder, header, dataset, indices, *, batch_size, workers, device, autocast, dtype,
                  skip_unreadable, number, progress, labelled=True) -> bytes:
    """The safetensors file of the videos `indices` of `dataset` (a test-mode VideoDataset), as bytes."""
    loader = DataLoader(_Indices(len(dataset)), batch_size=batch_size, sampler=indices, num_workers=workers,
                        collate_fn=_ReadItems(dataset, skip_unreadable))
    parts, rows, stored = {}, [], 0
    for items in loader:
        readable = [views for _, views, error in items if error is None]
        if readable:
            with autocast():
                features = view_features(encoder, header, normalize_on_device(torch.stack(readable), device))
            for name, value in features.items():
                parts.setdefault(name, []).append(value.to("cpu", dtype))
        for index, views, error in items:
            record = dataset.records[index]
            row = -1 if error else stored
            stored += error is None
            rows.append({"path": record.path, "label": _label_text(record.label, labelled), "shard": number, "row": row,
                         "views": 0 if error else views.shape[0], "frames": 0 if error else views.shape[1],
                         "error": error or ""})
        progress.update(len(items))
    tensors = {name: torch.cat(values).contiguous() for name, values in parts.items()}
    return safetensors_bytes(tensors, metadata={ROWS_KEY: json.dumps(rows)})


def write_index(out: Path, shards: int) -> int:
    """`index.csv` from the shards' rows, in list order; returns the number of videos and how many of them
    were unreadable (recorded without features)."""
    with atomic_file(out / INDEX_FILE, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=INDEX_COLUMNS, lineterminator="\n")
        writer.writeheader()
        count = unreadable = 0
        for number in range(shards):
            rows = shard_rows(out / shard_name(number))
            writer.writerows(rows)
            count += len(rows)
            unreadable += sum(1 for row in rows if row["error"])
    return count, unreadable


@torch.no_grad()
def extract_features(encoder, header, dataset, out, settings: dict, *, shard_size=256, batch_size=8, workers=0,
                     device="cpu", autocast=None, dtype=torch.float32, skip_unreadable=False, rank=0, world_size=1,
                     progress=True, labelled=True):
    """Writes the shards and the index of every video of `dataset` under `out` (see the module doc).
    `labelled` False leaves the index's labels empty (inputs given as files, whose list says 0).

    On rank 0 returns the number of videos whose features are stored (the index also lists the unreadable
    ones, with their error); None elsewhere.
    """
    out = Path(out)
    shards = math.ceil(len(dataset) / shard_size)
    done = None
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob(".*.tmp"):  # what a process killed while writing left (see atomic_file)
            stale.unlink()
        check_settings(out, settings)
        done = done_shards(out)
    done = broadcast_from_main(done)
    todo = [number for number in range(shards) if number not in done]
    mine = todo[rank::world_size]
    videos_of = {number: list(range(number * shard_size, min((number + 1) * shard_size, len(dataset))))
                 for number in mine}
    videos = sum(map(len, videos_of.values()))
    logger.info("%s: %d of %d shards done; %d processes compute the other %d (%d videos here)", out, len(done),
                shards, world_size, len(todo), videos)
    autocast = autocast or contextlib.nullcontext
    bar = tqdm(total=videos, desc="features", unit="video", disable=not progress)
    for round_number in range(math.ceil(len(todo) / world_size)):  # every process takes part in every gather
        number = mine[round_number] if round_number < len(mine) else None
        payload = None
        if number is not None:
            payload = (number, compute_shard(encoder, header, dataset, videos_of[number], batch_size=batch_size,
                                             workers=workers, device=device, autocast=autocast, dtype=dtype,
                                             skip_unreadable=skip_unreadable, number=number, progress=bar,
                                             labelled=labelled))
        for item in gather_to_main(payload) or []:
            if item is not None:
                with atomic_file(out / shard_name(item[0])) as file:
                    file.write(item[1])
    bar.close()
    if rank != 0:
        barrier()
        return None
    count, unreadable = write_index(out, shards)
    if unreadable:
        logger.warning("%d of %d videos were unreadable: recorded in %s without features", unreadable, count,
                       out / INDEX_FILE)
    barrier()
    return count - unreadable
