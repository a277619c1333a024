"""Tiny configs and checkpoints for end-to-end tests: a minimal training configuration over the tiny synthetic
dataset, one-video configs, attribute files, and random ViT-Tiny checkpoints in the original layouts."""
from pathlib import Path

import torch
import yaml

import clip
from datasets.annotations import load_class_names, read_video_list
from datasets.attributes import write_attributes
from modules import VideoHeader

# Program arguments of runs whose numbers a test compares with an independent float32 computation at float32
# tolerances: on a CPU with native bf16 the programs' default precision is bf16.
FP32 = ("--precision", "fp32")


class TinyConfig:
    """A demo-schema config with a 32-pixel random-init ViT, 4 frames, batch 4, no workers."""

    def __init__(self, dataset, folder: Path):
        self.folder = Path(folder)
        self.values = {
            "seed": 7,
            "data": {
                "dataset": "tiny", "modality": "RGB", "num_segments": 4, "batch_size": 4, "workers": 0,
                "num_classes": 8, "image_tmpl": "img_{:05d}.jpg", "input_size": 32,
                "train_root": str(dataset.frames_root), "train_list": str(dataset.train_frames),
                "val_root": str(dataset.frames_root), "val_list": str(dataset.val_frames),
                "label_list": str(dataset.labels), "output_path": str(self.folder / "exps"),
            },
            "network": {"arch": "ViT-Tiny/16", "init": False, "sim_header": "Transf", "interaction": "VCS",
                        "fix_text": False},
            "solver": {"epochs": 3, "lr": 1e-3, "lr_warmup_step": 1, "clip_ratio": 1, "weight_decay": 0.1},
            "logging": {"print_freq": 1, "eval_freq": 1},
        }

    def write(self, name="tiny.yaml", **sections) -> str:
        """The config file path, after merging `sections` ({'solver': {'epochs': 2}, ...})."""
        values = {key: dict(value) if isinstance(value, dict) else value for key, value in self.values.items()}
        for section, updates in sections.items():
            values[section].update(updates)
        path = self.folder / name
        path.write_text(yaml.safe_dump(values))
        return str(path)

    def run_folder(self, log_time: str) -> Path:
        return self.folder / "exps" / "tiny" / "ViT-Tiny-16" / log_time  # network.arch ViT-Tiny/16


def write_tiny_checkpoint(path: Path, seed: int) -> str:
    """A BIKE checkpoint (original layout, `module.` prefix) of a random 32-pixel ViT-Tiny/16 with the
    Transf + VCS header, seeded: its scores are reproducible but not trained."""
    torch.manual_seed(seed)
    model = clip.create_model("ViT-Tiny/16", image_resolution=32)
    header = VideoHeader.for_clip("Transf", "VCS", model)
    torch.save(original_layout(model, header, "module."), path)
    return str(path)


def original_layout(model, header, prefix):
    """The dict the original train.py saves: CLIP and header state (keys with `prefix`), epoch, optimizer."""
    return {
        "epoch": 7,
        "model_state_dict": {prefix + k: v for k, v in model.state_dict().items()},
        "fusion_model_state_dict": {prefix + k: v for k, v in header.state_dict().items()},
        "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 1e-5, "params": [0, 1]}]},
    }


def tiny_clip(seed):
    """A random 32-pixel ViT-Tiny/16 CLIP, seeded."""
    torch.manual_seed(seed)
    return clip.create_model("ViT-Tiny/16", image_resolution=32)


def attributes_checkpoint(model, head_state, path):
    """The dict the original train_attributes.py saves (from DistributedDataParallel modules)."""
    torch.save({"epoch": 3, "model_state_dict": {f"module.{k}": v for k, v in model.state_dict().items()},
                "fusion_model_state_dict": {f"module.{k}": v for k, v in head_state.items()},
                "optimizer_state_dict": {"state": {}, "param_groups": []}}, path)
    return str(path)


def one_video_config(tiny_config, tmp_path, modality):
    """A config whose validation list is the first video of the tiny dataset, and that video's path."""
    dataset = tiny_config.values["data"]
    if modality == "video":
        from datasets.synthetic import DemoDataset
        demo = DemoDataset.at(Path(dataset["val_list"]).parent)
        list_file, root = demo.val_videos, demo.videos_root
    else:
        list_file, root = Path(dataset["val_list"]), Path(dataset["val_root"])
    line = list_file.read_text().splitlines()[0]
    (tmp_path / "one.txt").write_text(line + "\n")
    config = tiny_config.write(data={"val_list": str(tmp_path / "one.txt"), "val_root": str(root),
                                     "modality": modality})
    return config, str(root / line.split()[0])


def write_attribute_files(tiny_dataset, folder):
    """Attributes whose first phrase is the true class, except for two validation videos (the next class)."""
    names = load_class_names(tiny_dataset.labels)
    paths = {}
    for split, list_file in (("train", tiny_dataset.train_frames), ("val", tiny_dataset.val_frames)):
        entries = {}
        for position, record in enumerate(read_video_list(list_file, len(names), "RGB")):
            first = (record.label + (split == "val" and position < 2)) % len(names)
            ranked = [first] + [c for c in range(len(names)) if c != first]
            entries[record.path] = {"classname_topk": [names[c] for c in ranked[:4]]}
        paths[split] = folder / f"{split}.json"
        write_attributes(entries, paths[split])
    return paths
