"""train.py under torchrun on shards, recording which samples each process decodes: every process (rank or
loader worker) appends {"epoch", "index"} lines to RECORDS/ids_rank<R>_<pid>.jsonl, and rank 0 keeps its
validation scores (validation_<N>.pt). Usage: torchrun ... tests/torchrun_shards.py RECORDS [train.py arguments]."""
import json
import os
import sys
from pathlib import Path

import train
from datasets.shards import ShardDataset
from tests.torchrun_train import recording_validate

RECORDS = Path(sys.argv[1])
RANK = int(os.environ.get("RANK", 0))


def recording_item(self, shard, sample, item=ShardDataset._item):
    if self.training:
        with open(RECORDS / f"ids_rank{RANK}_{os.getpid()}.jsonl", "a") as handle:
            handle.write(json.dumps({"epoch": self._epoch.value, "index": json.loads(sample["json"])["index"]}) + "\n")
    return item(self, shard, sample)


if __name__ == "__main__":
    RECORDS.mkdir(parents=True, exist_ok=True)
    ShardDataset._item, train.validate = recording_item, recording_validate
    train.main(sys.argv[2:])
