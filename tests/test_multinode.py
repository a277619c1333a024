"""Two "nodes" on this machine: scripts/run_train_multinodes.sh started twice with NNODES=2 on the loopback,
each in its own copy of the repository and of the data (no shared folder), trains to the weights of one node
running both processes (scripts/run_train.sh), bit for bit; node 1 writes nothing. Neither job is given a thread
count: the scripts give every process of a multi-process job one thread, whatever the layout."""
import os
import shutil

import pytest
import torch
import yaml

from tests.processes import finished, free_port, repository_copy, started
from tests.resume_checks import assert_same_tensors
from tests.tiny_run import FP32, TinyConfig

pytestmark = pytest.mark.slow  # two torchrun jobs of 2 processes each

OPTIONS = ["--cpu", *FP32, "--no_progress"]
STATE = ("model_state_dict", "fusion_model_state_dict", "optimizer_state_dict")


def node_copy(folder, tiny_dataset, tmp_path):
    """A copy of the repository with its own copy of the data and a config that names both relatively."""
    repository_copy(folder)
    shutil.copytree(tiny_dataset.root, folder / "data" / "tiny")
    values = TinyConfig(tiny_dataset, tmp_path).values
    values["data"] = {key: value.replace(str(tiny_dataset.root), "data/tiny") if isinstance(value, str) else value
                      for key, value in values["data"].items()}
    values["data"].update(output_path="exps", batch_size=2)
    values["solver"].update(epochs=1)
    (folder / "tiny.yaml").write_text(yaml.safe_dump(values))
    return folder


def files_under(folder):
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def test_two_nodes_train_as_one_node_of_two_processes_and_node_1_writes_nothing(tiny_dataset, tmp_path):
    nodes = [node_copy(tmp_path / f"node{rank}", tiny_dataset, tmp_path) for rank in (0, 1)]
    before = files_under(nodes[1])
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    env.update(CUDA_VISIBLE_DEVICES="", PYTHONDONTWRITEBYTECODE="1", MASTER_ADDR="127.0.0.1",
               MASTER_PORT=str(free_port()), NNODES="2", NPROC_PER_NODE="1")
    one_node_job = started(["bash", "scripts/run_train.sh", "tiny.yaml", "--log_time", "one", *OPTIONS], nodes[0],
                           dict(env, NPROC_PER_NODE="2"))
    node_jobs = [started(["bash", "scripts/run_train_multinodes.sh", "tiny.yaml", str(rank), "--log_time", "nodes",
                          *OPTIONS], node, env) for rank, node in enumerate(nodes)]
    for job in [one_node_job, *node_jobs]:  # side by side: each waits for its processes to meet
        finished(job, timeout=300)

    assert files_under(nodes[1]) == before
    run_folders = nodes[0] / "exps" / "tiny" / "ViT-Tiny-16"
    two_nodes, one_node = (torch.load(run_folders / name / "last_model.pt", weights_only=True)
                           for name in ("nodes", "one"))
    assert two_nodes["epoch"] == one_node["epoch"] == 0
    assert_same_tensors(two_nodes, one_node, STATE)
