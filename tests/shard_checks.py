"""Helpers of the shard tests: shards of the tiny dataset made in this process, and a shard dataset whose items
are the samples' list indices (which samples a rank and a loader worker read, without decoding them)."""
import json
from pathlib import Path

from datasets.shards import ShardDataset
from tools import make_shards


class IndexShards(ShardDataset):
    """A ShardDataset whose items are the list indices of the samples it reads."""

    def _item(self, shard, sample):
        return json.loads(sample["json"])["index"]


def shards_of(config: str, split: str, out: Path, shard_size: str = "300KB", workers: int = 1) -> str:
    """tools/make_shards.py's main on `config`'s list of `split`, in this process; the manifest's path."""
    make_shards.main(["--config", config, "--split", split, "--out", str(out), "--shard_size", shard_size,
                      "--workers", str(workers)])
    return str(Path(out) / "manifest.json")


def repeated_list(list_file: Path, times: int, target: Path) -> str:
    """A list of `list_file`'s lines `times` over (more samples than the tiny data has, for the split tests)."""
    target.write_text("".join(Path(list_file).read_text() for _ in range(times)))
    return str(target)
