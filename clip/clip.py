"""`clip.load`, `clip.available_models`, `clip.create_model`: OpenAI's API, working offline.

Weights are looked up in a cache folder (default `~/.cache/clip`, or `$BIKE_CLIP_CACHE`, or the
`download_root` argument), checked against the SHA-256 in OpenAI's URL, and downloaded only when missing
and the network answers; otherwise the error says which file to put where.
"""
import contextlib
import dataclasses
import fcntl
import hashlib
import logging
import os
import re
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import List, Optional, Union

import torch
from torchvision.transforms import v2
from tqdm import tqdm

from .architectures import (OPENAI_ARCHITECTURES, RANDOM_INIT_ARCHITECTURES, ArchitectureError, architecture,
                            canonical_name)
from .model import CLIP, build_model
from . import open_clip_backbone
from .weights import WeightsUnavailableError, read_clip_state_dict

logger = logging.getLogger(__name__)

CACHE_ENV = "BIKE_CLIP_CACHE"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_URL_BASE = "https://openaipublic.azureedge.net/clip/models"
MODEL_URLS = {
    "RN50": f"{_URL_BASE}/afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt",
    "RN101": f"{_URL_BASE}/8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599/RN101.pt",
    "RN50x4": f"{_URL_BASE}/7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd/RN50x4.pt",
    "RN50x16": f"{_URL_BASE}/52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa/RN50x16.pt",
    "RN50x64": f"{_URL_BASE}/be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c/RN50x64.pt",
    "ViT-B/32": f"{_URL_BASE}/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
    "ViT-B/16": f"{_URL_BASE}/5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
    "ViT-L/14": f"{_URL_BASE}/b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
    "ViT-L/14@336px": f"{_URL_BASE}/3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt",
}


def available_models() -> List[str]:
    """Names of OpenAI's pretrained CLIP models (`ViT-L/14-336px` is accepted for `ViT-L/14@336px` too)."""
    return list(MODEL_URLS)


def random_init_models() -> List[str]:
    """Small named architectures that exist only with random weights (demos and tests)."""
    return list(RANDOM_INIT_ARCHITECTURES)


def arch_folder_name(arch: str) -> str:
    """One folder name for `network.arch`, as run folders use it: a weight file gives its stem
    (`/w/clip_tiny.pt` -> `clip_tiny`), a model name its characters that are safe in a file name, the
    others as '-' (`ViT-B/32` -> `ViT-B-32`, as OpenAI names its file; `open_clip:ViT-B-32` -> `open_clip-ViT-B-32`)."""
    known = canonical_name(arch) in OPENAI_ARCHITECTURES or canonical_name(arch) in RANDOM_INIT_ARCHITECTURES
    name = arch if known or open_clip_backbone.is_open_clip_arch(arch) else Path(arch).stem
    return re.sub(r"[^\w.@+-]", "-", name).strip(".") or "arch"


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "clip").expanduser()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _download_lock(target: Path):
    """Held by one process at a time: the other processes of a node (and of nodes sharing the folder, where
    its file system supports locks) wait here while one downloads `target`."""
    lock_path = target.with_name(target.name + ".lock")
    with open(lock_path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("waiting for another process to download %s", target)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:  # a process that still opens the old lock file is safe too: part files have their own names
            lock_path.unlink(missing_ok=True)


def download(url: str, root: Union[str, Path], timeout: float = 30.0) -> Path:
    """The file of `url` inside `root`, verified against the SHA-256 that OpenAI's URLs carry.

    An existing verified file is used as it is. Otherwise one process downloads it (the others that need
    it at the same time wait, then verify the file it made), into a part file of its own that is renamed
    only once complete and verified, so an interruption never leaves a file that looks complete.
    """
    root = Path(root).expanduser()
    target = root / os.path.basename(url)
    expected = url.split("/")[-2]
    if target.is_file() and sha256_of(target) == expected:
        return target
    root.mkdir(parents=True, exist_ok=True)
    with _download_lock(target):
        if target.is_file():
            if sha256_of(target) == expected:  # another process has just downloaded it
                return target
            logger.warning("%s exists but its SHA-256 does not match %s; downloading it again", target, expected)
        _fetch(url, target, expected, timeout)
    return target


def _fetch(url: str, target: Path, expected: str, timeout: float):
    """Downloads `url` to a part file of this process, checks its SHA-256 and renames it to `target`."""
    root = target.parent
    handle, partial = tempfile.mkstemp(prefix=target.name + ".", suffix=".part", dir=root)
    partial = Path(partial)
    try:
        with open(handle, "wb") as output, urllib.request.urlopen(url, timeout=timeout) as source:
            total = int(source.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="iB", unit_scale=True, unit_divisor=1024, desc=target.name) as bar:
                for block in iter(lambda: source.read(1 << 16), b""):
                    output.write(block)
                    bar.update(len(block))
    except (urllib.error.URLError, OSError) as error:
        partial.unlink(missing_ok=True)
        raise WeightsUnavailableError(
            f"CLIP weights {target.name} are not in {root} and could not be downloaded from {url} ({error}). "
            f"Download that file yourself and put it in {root}, or point ${CACHE_ENV} (or the config key "
            f"network.clip_cache) at the folder that holds it.") from None
    actual = sha256_of(partial)
    if actual != expected:
        partial.unlink()
        raise WeightsUnavailableError(f"downloaded {url} but its SHA-256 is {actual}, not {expected}")
    partial.chmod(0o644)  # readable by everyone who shares the cache, as a plainly written file would be
    os.replace(partial, target)


def weights_file(name: str, download_root: Optional[Union[str, Path]] = None) -> Path:
    """The verified local file of OpenAI model `name`, downloading it if needed and possible."""
    return download(MODEL_URLS[canonical_name(name)], download_root or default_cache_dir())


def image_preprocess(resolution: int, mean=CLIP_MEAN, std=CLIP_STD) -> v2.Compose:
    """OpenAI's image preprocessing (bicubic resize of the short side, center crop, CLIP normalisation)."""
    return v2.Compose([
        v2.ToImage(),
        v2.Resize(resolution, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
        v2.CenterCrop(resolution),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean, std),
    ])


def create_model(name: str, image_resolution: Optional[int] = None, **options) -> CLIP:
    """A randomly initialised CLIP of a named architecture (OpenAI's or a small one): not pretrained.

    `image_resolution` changes the input size (and so the number of patch position embeddings).
    """
    config = architecture(name)
    if image_resolution:
        config = dataclasses.replace(config, image_resolution=image_resolution)
    logger.warning("CLIP %s is randomly initialised: it is NOT a pretrained model", canonical_name(name))
    return CLIP(config, **options)


def load(name: str, device: Union[str, torch.device] = "cpu", jit: bool = False,
         download_root: Optional[Union[str, Path]] = None, pretrain: bool = True,
         image_resolution: Optional[int] = None, pretrained: Optional[str] = None, **options):
    """A CLIP model and its image preprocessing, like OpenAI's `clip.load`.

    `name`: an OpenAI model name, a small random-init architecture name, or a path to a TorchScript
    archive, a state dict (fp16 or fp32) or a BIKE checkpoint. `pretrain=False` keeps only the visual
    weights and leaves the text tower random, as BIKE's `network.init: False` does. `options` are `CLIP`'s
    (num_frames, drop_path, emb_dropout, joint_st, grad_checkpointing). The model is always the eager
    implementation in fp32 (`jit=True` is accepted for compatibility and gives the same outputs).
    `image_resolution` sets the input size of random-init architectures; pretrained weights fix their own.
    `open_clip:<model>` names go to `clip.open_clip_backbone` with `pretrained` (a file or open_clip tag).
    """
    if open_clip_backbone.is_open_clip_arch(name):
        options.pop("num_frames", None)  # only joint space-time attention uses it, which open_clip models lack
        model = open_clip_backbone.load(name, pretrained, pretrain=pretrain, download_root=download_root, **options)
        return model.to(device), image_preprocess(model.config.image_resolution, model.image_mean, model.image_std)
    if pretrained:
        raise ArchitectureError(f"network.pretrained ({pretrained!r}) names weights of open_clip:<model> "
                                f"architectures only; OpenAI weights ({name}) are named by network.arch")
    if jit:
        logger.warning("jit=True: the eager model is returned instead of OpenAI's TorchScript module")
    if canonical_name(name) in RANDOM_INIT_ARCHITECTURES:
        model = create_model(name, image_resolution, **options)
    else:
        if canonical_name(name) in OPENAI_ARCHITECTURES:
            path = weights_file(name, download_root)
        elif Path(name).expanduser().is_file():
            path = Path(name).expanduser()
        else:
            known = ", ".join(available_models() + random_init_models())
            raise ArchitectureError(f"CLIP model {name!r} is neither a known model name ({known}) nor an existing file")
        model = build_model(read_clip_state_dict(path), visual_only=not pretrain, **options)
    model = model.float().to(device).eval()
    return model, image_preprocess(model.visual.input_resolution)

