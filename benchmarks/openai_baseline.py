"""The reference implementation's speed in the same process: OpenAI's own CLIP package (the test suite's
reference copy, openai-clip 1.0.1) running the same visual tower in fp32, training step and inference.

The package's top-level name is `clip`, as the project's, so its model.py is loaded by file path from
$BIKE_OPENAI_REFERENCE or .cache/openai-clip-reference (scripts/run_tests.sh installs it there, with
`python -m tests.openai_reference`).
"""
import importlib.util
import os
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
INSTALL = "python -m pip install --no-deps --target {root} openai-clip==1.0.1"


def reference_root() -> Path:
    return Path(os.environ.get("BIKE_OPENAI_REFERENCE", REPO_ROOT / ".cache" / "openai-clip-reference"))


def reference_model_module():
    """OpenAI's clip/model.py, or None when the reference package is not installed."""
    path = reference_root() / "clip" / "model.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("openai_reference_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def steps(config, frames: torch.Tensor):
    """(training step, inference) of OpenAI's visual tower sized by `config` (a CLIPConfig), on the
    [clips * frames, 3, H, W] images `frames`: fp32 forward, backward of a loss on the image features
    and an AdamW step; and a forward without gradients. None when the reference is missing."""
    reference = reference_model_module()
    if reference is None:
        return None
    visual = reference.CLIP(**config.as_dict()).visual.float().to(frames.device)
    optimizer = torch.optim.AdamW(visual.parameters(), lr=1e-5)

    def train_step():
        visual(frames).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def inference():
        visual(frames)

    return train_step, inference
