"""The BIKE checkpoint format, its only home.

A checkpoint is a dict `{'epoch', 'model_state_dict', 'fusion_model_state_dict', 'optimizer_state_dict',
...}` as the original implementation saves it: `model_state_dict` is the CLIP model, `fusion_model_state_dict`
the video header. Keys may carry DistributedDataParallel's `module.` prefix. Loading never unpickles code.
"""
import zipfile
from typing import Optional

import torch
from torch import nn

from clip.model import load_weights
from clip.weights import WeightsMismatchError, safe_load, strip_module_prefix
from datasets.files import atomic_file
from utils.logger import epoch_label

MODEL_KEY = "model_state_dict"
HEADER_KEY = "fusion_model_state_dict"


def read_checkpoint(path, mmap: bool = False) -> dict:
    """A BIKE checkpoint read safely, with an error naming the file when it is not one; `mmap`: its
    tensors memory-mapped, read only when used (for the small entries: epoch, config; a file in torch's
    legacy format, which cannot be mapped, is read whole)."""
    checkpoint = safe_load(path, mmap=mmap and zipfile.is_zipfile(path))
    if not isinstance(checkpoint, dict) or MODEL_KEY not in checkpoint:
        found = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise WeightsMismatchError(f"{path} is not a BIKE checkpoint: expected a dict with '{MODEL_KEY}' "
                                   f"(and '{HEADER_KEY}'), found {found}")
    return checkpoint


ATTRIBUTES_HEAD_PARTS = ("query_fc.", "sentence_fc.")  # the attributes head's parameter names


def read_attributes_checkpoint(path) -> tuple:
    """(CLIP state dict, attributes-head state dict) of a checkpoint of the original `train_attributes.py`.

    That file has the usual layout, but its `fusion_model_state_dict` is the attributes head
    (`query_fc.*`, `sentence_fc.*`), not a video header; `module.` prefixes are removed. A file that is not
    one is an error naming the file and what is missing.
    """
    checkpoint = safe_load(path)
    what = f"{path} is not an attributes checkpoint of train_attributes.py"
    if not isinstance(checkpoint, dict):
        raise WeightsMismatchError(f"{what}: expected a dict with '{MODEL_KEY}' and '{HEADER_KEY}', found "
                                   f"{type(checkpoint).__name__}")
    missing = [key for key in (MODEL_KEY, HEADER_KEY) if not isinstance(checkpoint.get(key), dict)]
    if missing:
        raise WeightsMismatchError(f"{what}: missing keys {missing} (found {sorted(checkpoint)})")
    head = strip_module_prefix(checkpoint[HEADER_KEY])
    if not any(key.startswith(ATTRIBUTES_HEAD_PARTS) for key in head):
        raise WeightsMismatchError(f"{what}: its '{HEADER_KEY}' holds no attributes head (no "
                                   f"{'/'.join(part + '*' for part in ATTRIBUTES_HEAD_PARTS)} keys; found "
                                   f"{sorted(head)[:6] or 'nothing'}); a video checkpoint goes to --weights")
    return strip_module_prefix(checkpoint[MODEL_KEY]), head


def trained_epoch_label(checkpoint: dict) -> str:
    """The epoch a checkpoint was saved after, as logs count ('epoch 12/12'; the field is 0-based)."""
    if not isinstance(checkpoint.get("epoch"), int):
        return "epoch unknown"
    total = ((checkpoint.get("config") or {}).get("solver") or {}).get("epochs")
    return epoch_label(checkpoint["epoch"], total)


def load_bike_weights(path, clip_model: nn.Module, video_header: Optional[nn.Module] = None) -> dict:
    """Loads a checkpoint's CLIP and header weights strictly into the given modules; returns the checkpoint.

    Any missing, unexpected or wrongly shaped key is an error that lists them.
    """
    checkpoint = read_checkpoint(path)
    load_weights(clip_model, strip_module_prefix(checkpoint[MODEL_KEY]), what=f"'{MODEL_KEY}' of {path}")
    if video_header is not None:
        load_header_weights(checkpoint, video_header, path)
    return checkpoint


def load_header_weights(checkpoint: dict, video_header: nn.Module, path) -> None:
    """The checkpoint's video header (absent for a parameter-free header) loaded strictly."""
    header_state = strip_module_prefix(checkpoint.get(HEADER_KEY) or {})
    load_weights(video_header, header_state, what=f"'{HEADER_KEY}' of {path}")


def save_atomically(obj, path) -> None:
    """torch.save through `atomic_file`."""
    with atomic_file(path) as file:
        torch.save(obj, file)


def map_original_optimizer_state(saved: dict, clip_model: nn.Module, heads: list, optimizer) -> tuple:
    """`optimizer`'s state dict holding the per-parameter state of an original-layout optimizer state, or
    None; and a sentence saying which, for the log.

    The original's optimizer has every CLIP parameter, frozen ones included, as group 0 and the head's as
    group 1; `optimizer` has only the trainable ones, in the same order. Each trainable parameter takes
    the saved state of its place in the original's order when every saved tensor fits its shape.
    """
    groups = saved.get("param_groups") or []
    everything = [list(clip_model.parameters()), [p for head in heads for p in head.parameters()]]
    if [len(group.get("params", ())) for group in groups] != [len(params) for params in everything]:
        return None, (f"its optimizer groups hold {[len(g.get('params', ())) for g in groups]} parameters, not "
                      f"the original layout's {[len(params) for params in everything]} (all CLIP parameters, "
                      "the head's): fresh optimizer state")
    saved_index = {id(param): index for group, params in zip(groups, everything)
                   for index, param in zip(group["params"], params)}
    state, current = {}, optimizer.state_dict()
    ours = [param for group in optimizer.param_groups for param in group["params"]]
    for position, param in enumerate(ours):
        entry = saved.get("state", {}).get(saved_index[id(param)])
        if entry is None:
            continue
        if any(torch.is_tensor(value) and value.dim() and value.shape != param.shape for value in entry.values()):
            return None, "its optimizer state does not fit the parameters' shapes: fresh optimizer state"
        # The step count as a tensor: older torch versions saved a number, the fused kernels need a tensor.
        state[position] = {name: (torch.tensor(float(value)) if name == "step" and not torch.is_tensor(value)
                                  else value) for name, value in entry.items()}
    return ({"state": state, "param_groups": current["param_groups"]},
            f"optimizer state of {len(state)} trainable parameters mapped from the original layout")
