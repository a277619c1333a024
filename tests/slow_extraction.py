"""tools/extract_features.py with a pause after each shard, so that a test can kill it between shards.
Usage: python tests/slow_extraction.py SECONDS [extract_features.py arguments]."""
import sys
import time

from tools import extract_features
from utils.distributed import run_program
from workflows import feature_extraction

PAUSE = float(sys.argv.pop(1))


def pausing(*args, compute=feature_extraction.compute_shard, **kwargs):
    shard = compute(*args, **kwargs)
    time.sleep(PAUSE)
    return shard


feature_extraction.compute_shard = pausing
run_program(extract_features.main)
