"""A minimal training configuration over the tiny synthetic dataset, for end-to-end tests."""
from pathlib import Path

import yaml

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
    import torch

    import clip
    from modules import VideoHeader
    from tests.test_checkpoint import original_layout

    torch.manual_seed(seed)
    model = clip.create_model("ViT-Tiny/16", image_resolution=32)
    header = VideoHeader.for_clip("Transf", "VCS", model)
    torch.save(original_layout(model, header, "module."), path)
    return str(path)
