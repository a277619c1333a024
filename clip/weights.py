"""Reading weight files safely: OpenAI's TorchScript archives, plain state dicts, BIKE checkpoints."""
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch


class WeightsUnavailableError(FileNotFoundError):
    """Pretrained weights are neither in the cache folder nor downloadable."""


class UnsafeWeightsError(ValueError):
    """A file whose unpickling would run code or build arbitrary objects; it is refused, never loaded."""


class UnreadableWeightsError(ValueError):
    """A weight file that is not a PyTorch file, or a truncated or corrupt one."""


class WeightsMismatchError(ValueError):
    """Weights (a checkpoint, a state dict) whose keys or shapes do not fit the model they are loaded into."""


def safe_load(path, mmap: bool = False) -> Any:
    """`torch.load(weights_only=True)` with errors that name the file; `mmap`: tensors memory-mapped, read
    only when used (a file in torch's legacy format then counts as unreadable).

    Tensors, containers and plain numbers load; anything that would execute code on load is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weight file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        raise UnsafeWeightsError(
            f"refused to load {path}: it is not a plain weights file (unpickling it would run code or build "
            f"objects other than tensors and containers). Details: {str(error).splitlines()[0]}") from None
    except (RuntimeError, EOFError, IndexError, KeyError, ValueError) as error:
        # torch's weights-only unpickler fails on a file that is no PyTorch file with any of these.
        raise UnreadableWeightsError(
            f"cannot read {path} as a PyTorch file (truncated or corrupt?): {error}") from None


def is_torchscript_archive(path) -> bool:
    """TorchScript archives (OpenAI's release format) are zip files with compiled code inside."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/", 1)[-1].startswith(("code/", "constants.pkl")) for name in archive.namelist())


def strip_module_prefix(state_dict: dict) -> dict:
    """Keys saved from a DistributedDataParallel model start with `module.`; the bare model has none."""
    return {key[len("module."):] if key.startswith("module.") else key: value for key, value in state_dict.items()}


def read_clip_state_dict(path) -> dict:
    """The CLIP weights in `path`: a TorchScript archive, a state dict, or a BIKE checkpoint's model part."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CLIP weight file not found: {path}")
    if is_torchscript_archive(path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, but it is OpenAI's format
            state_dict = torch.jit.load(str(path), map_location="cpu").state_dict()
    else:
        state_dict = safe_load(path)
    if isinstance(state_dict, dict):
        for wrapper in ("model_state_dict", "state_dict"):
            if isinstance(state_dict.get(wrapper), dict):
                state_dict = state_dict[wrapper]
                break
    if not isinstance(state_dict, dict) or not all(torch.is_tensor(v) for v in state_dict.values()):
        raise WeightsMismatchError(f"{path} does not hold a CLIP state dict (a mapping of parameter names to tensors)")
    return strip_module_prefix(state_dict)
