"""Under torchrun: tools/generate_attributes.py with the arguments after argv[1], each rank working in its own
folder argv[1]/rank<R> (and a relative --output), as on nodes that share no file system."""
import os
import sys
from pathlib import Path

from tools import generate_attributes
from utils.distributed import run_program

if __name__ == "__main__":
    folder = Path(sys.argv[1]) / f"rank{os.environ['RANK']}"
    folder.mkdir(parents=True, exist_ok=True)
    os.chdir(folder)
    run_program(lambda: generate_attributes.main(sys.argv[2:]))
