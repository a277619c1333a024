"""Write a dataset's list as WebDataset tar shards plus the manifest.json that training and test.py read.

    python tools/make_shards.py --config CFG --split train|val --out DIR [--shard_size 1GB] [--workers N] [key=value]

The list is the config's data.train_list (--split train, as training reads it: short videos dropped,
few-shot applied) or data.val_list (--split val), frame folders or video files. Each entry becomes one
sample, in list order: the video file's own bytes (run tools/prepare_videos.py first for a re-encode that
samples faster) or the frames the entry covers as their image files, with its label(s), path and list
index (datasets/shards.py has the layout). Shards fill up to --shard_size each and are named
shard-NNNNNN.tar; DIR/manifest.json lists them with their sample counts and sha256. Point data.train_list
or data.val_list at the manifest (a path, or a URL once DIR is uploaded as it is) to train or test on them.

Which entries go into which shard is decided from the files' sizes before anything is written, and a
shard's bytes depend only on its entries, so the shards come out the same however many --workers write
them. Each shard is written to a temporary file and renamed when complete: a run that was stopped
resumes where it was when started again, leaving the finished shards as they are.
"""
import argparse
import functools
import hashlib
import json
import logging
import multiprocessing
import os
import re
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from webdataset import TarWriter  # noqa: E402

from datasets.build import build_dataset  # noqa: E402
from datasets.decoding import SampleReadError, frame_file_names  # noqa: E402
from datasets.files import atomic_file  # noqa: E402
from datasets.shards import FRAMES_FIELD, Manifest, Shard, is_manifest  # noqa: E402
from utils.config import ConfigError, check_files  # noqa: E402
from utils.distributed import run_program  # noqa: E402
from workflows.options import ProgramParser, add_config_argument, add_override_arguments  # noqa: E402
from workflows.startup import load_program_config  # noqa: E402

logger = logging.getLogger(__name__)

UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
TAR_MEMBER_OVERHEAD = 1024  # a header block and the padding of the last block, per file in the tar
SHARD_NAME = "shard-{:06d}.tar"


def byte_size(text: str) -> int:
    """'1GB', '500MB', '64KB' or a number of bytes (decimal units, as storage is sold)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?B?)\s*", text.upper())
    if match is None or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"expected a size such as 1GB, 500MB or 64KB, got {text!r}")
    return int(float(match.group(1)) * UNITS[match.group(2)])


def sample_files(dataset, record):
    """The files of one list entry: its video, or its frames in order."""
    path = os.path.join(dataset.root, record.path)
    if dataset.modality == "video":
        return [path]
    count = dataset.frame_count(record, path)
    numbers = range(record.start_frame + dataset.index_bias, record.start_frame + dataset.index_bias + count)
    return [os.path.join(path, name) for name in frame_file_names(path, dataset.image_tmpl, numbers)]


def sample_size(dataset, index):
    """Bytes the entry's payload takes in a tar (its files, one header and the padding)."""
    try:
        return sum(os.path.getsize(file) for file in sample_files(dataset, dataset.records[index])) + \
            TAR_MEMBER_OVERHEAD
    except (FileNotFoundError, SampleReadError) as err:
        raise SampleReadError(f"{dataset.records[index].where}: {err}") from None


def plan_shards(sizes, shard_size):
    """Consecutive entries per shard: each shard as full as `shard_size` allows (at least one entry)."""
    shards, current, filled = [], [], 0
    for index, size in enumerate(sizes):
        if current and filled + size > shard_size:
            shards.append(current)
            current, filled = [], 0
        current.append(index)
        filled += size
    return shards + [current] if current else shards


def sample(dataset, index):
    """The tar members of entry `index` (bytes by field name, webdataset's layout; key: the list index)."""
    record = dataset.records[index]
    label = list(record.label) if isinstance(record.label, tuple) else record.label
    contents = []
    for file in sample_files(dataset, record):
        with open(file, "rb") as handle:
            contents.append(handle.read())
    meta = {"index": index, "path": record.path, "where": record.where, "label": label}
    members = {"__key__": f"{index:09d}"}
    if dataset.modality == "video":
        meta["ext"] = Path(record.path).suffix.lower().lstrip(".") or "video"
        members[meta["ext"]] = contents[0]
    else:
        meta.update(frames=len(contents), ext=Path(dataset.image_tmpl).suffix.lower().lstrip("."),
                    frame_bytes=[len(content) for content in contents])
        members[FRAMES_FIELD] = b"".join(contents)
    members["json"] = json.dumps(meta, sort_keys=True).encode()
    if not isinstance(label, list):
        members["cls"] = str(label).encode()
    return members


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(functools.partial(handle.read, 1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_shard(dataset, out, job):
    """Writes shard `number` of entries `indices` unless it exists; returns its Shard entry."""
    number, indices = job
    path = Path(out) / SHARD_NAME.format(number)
    if not path.exists():
        with atomic_file(path) as handle:
            writer = TarWriter(handle, encoder=False, mtime=0)  # a fixed time: the same entries, the same bytes
            for index in indices:
                writer.write(sample(dataset, index))
            writer.close()
        logger.info("wrote %s (%d samples)", path.name, len(indices))
    return Shard(path.name, len(indices), sha256_of(path), path.stat().st_size)


_dataset = None  # the dataset of this process's jobs (a pool worker inherits it when forked: it holds locks)


def _start(dataset, threads=None):
    global _dataset
    _dataset = dataset
    if threads:
        torch.set_num_threads(threads)


def _size_job(index):
    return sample_size(_dataset, index)


def _shard_job(out, job):
    return write_shard(_dataset, out, job)


def make_shards(dataset, out, shard_size, workers=1):
    """Shards of `dataset`'s entries in `out` and out/manifest.json, written by `workers` processes."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for partial in out.glob(".shard-*.tar.*.tmp"):  # a shard being written when an earlier run was killed
        partial.unlink()
    indices = range(len(dataset.records))
    if workers > 1:
        # Forked workers inherit this process's thread pools without their threads; one torch thread each.
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                 initializer=_start, initargs=(dataset, 1)) as pool:
            sizes = list(pool.map(_size_job, indices, chunksize=64))
            jobs = list(enumerate(plan_shards(sizes, shard_size)))
            shards = list(pool.map(functools.partial(_shard_job, out), jobs))
    else:
        jobs = list(enumerate(plan_shards([sample_size(dataset, i) for i in indices], shard_size)))
        shards = [write_shard(dataset, out, job) for job in jobs]
    manifest = Manifest("video" if dataset.modality == "video" else "frames", dataset.num_classes,
                        dataset.multi_label, tuple(shards), str(dataset.labels_file), str(dataset.list_file))
    with atomic_file(out / "manifest.json", "w") as handle:
        handle.write(manifest.to_json())
    return manifest


def parse_args(argv=None):
    parser = ProgramParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_argument(parser)
    parser.add_argument("--split", choices=("train", "val"), required=True,
                        help="shard data.train_list (as training reads it) or data.val_list")
    parser.add_argument("--out", type=Path, required=True, help="folder of the shards and manifest.json")
    parser.add_argument("--shard_size", type=byte_size, default=byte_size("1GB"),
                        help="bytes per shard, e.g. 1GB, 500MB (default 1GB); a larger video gets a shard alone")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="processes (default: one per CPU)")
    add_override_arguments(parser, example="data.train_root=/data/k400")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    config = load_program_config(args)
    key = f"data.{args.split}_list"
    check_files(config, (key, "data.label_list"))
    if is_manifest(getattr(config.data, f"{args.split}_list")):
        raise ConfigError(f"{key} already names shards: {getattr(config.data, f'{args.split}_list')}")
    dataset = build_dataset(config, args.split)
    manifest = make_shards(dataset, args.out, args.shard_size, max(args.workers, 1))
    logger.info("%d samples in %d shards; manifest %s", manifest.num_samples, len(manifest.shards),
                args.out / "manifest.json")


if __name__ == "__main__":
    run_program(main)
