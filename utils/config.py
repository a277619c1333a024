"""Experiment configuration: the original BIKE YAML schema, validated, with `key.sub=value` overrides.

Every YAML of the original repository loads unchanged. Unknown keys, wrong types and malformed
overrides fail at load time with a message that names the dotted key, so a typo never turns into a
silently ignored setting halfway through a training run.
"""
import copy
import difflib
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from datasets.transforms import TEST_CROPS

__all__ = ["Config", "ConfigError", "Field", "SCHEMA", "DATA_FILE_KEYS",
           "load_config", "build_config", "parse_override", "check_files"]

REQUIRED = object()  # sentinel default: the key must be present in the file or in an override

DATA_FILE_KEYS = ("data.train_list", "data.val_list", "data.label_list")


class ConfigError(ValueError):
    """A config file, key, value or override that cannot be used."""


@dataclass(frozen=True)
class Field:
    """One leaf key: the accepted kinds ('int', 'float', 'bool', 'str', 'null', 'int_list', 'str_list'), its
    default and meaning."""
    kinds: tuple
    default: object
    doc: str
    choices: tuple = ()
    minimum: int | None = None


# Section name -> key -> Field. The `doc` strings are the reference for what each key means.
SCHEMA = {
    "seed": Field(("int",), 1024, "random seed: every process builds the model from this seed itself, so "
                                  "all ranks start alike; training randomness (data order, augmentation, "
                                  "dropout) is seeded from it per rank and epoch"),
    "resume": Field(("str", "null"), None, "checkpoint to continue from (weights, optimizer, epoch)"),
    "pretrain": Field(("str", "null"), None, "checkpoint whose weights initialise the model, e.g. a Kinetics-400 run"),
    "data": {
        "dataset": Field(("str",), REQUIRED, "dataset name (k400, k600, ucf101, hmdb51, anet, charades, ...)"),
        "modality": Field(("str",), "RGB", "RGB: folders of frame images; video: raw video files",
                          choices=("RGB", "video")),
        "num_segments": Field(("int",), 8, "frames sampled per clip", minimum=1),
        "seg_length": Field(("int",), 1, "consecutive frames per segment", minimum=1),
        "batch_size": Field(("int",), 32, "clips per process and step", minimum=1),
        "workers": Field(("int",), 4, "data-loading worker processes", minimum=0),
        "num_classes": Field(("int",), REQUIRED, "number of classes in label_list", minimum=1),
        "image_tmpl": Field(("str",), "img_{:05d}.jpg", "file name of a frame inside a video folder"),
        "train_root": Field(("str",), "", "folder that training list entries are relative to"),
        "train_list": Field(("str", "null"), None, "training annotation list"),
        "val_root": Field(("str",), "", "folder that validation list entries are relative to"),
        "val_list": Field(("str", "null"), None, "validation / test annotation list"),
        "label_list": Field(("str",), REQUIRED, "class names, CSV `id,name` (Charades: its classes file)"),
        "index_bias": Field(("int",), 1, "number of the first frame file (1 for img_00001.jpg)", minimum=0),
        "input_size": Field(("int",), 224, "side of the square crop fed to the network", minimum=1),
        "random_shift": Field(("bool",), True, "random offsets inside segments when training"),
        "output_path": Field(("str",), "exps", "folder that receives logs and checkpoints"),
        "shot": Field(("int", "null"), None, "few-shot: training videos kept per class; 0 or null keeps all",
                      minimum=0),
        "fps": Field(("int", "null"), None, "frame rate of the extracted frames (Charades time stamps)", minimum=1),
        "dense": Field(("bool",), False, "dense sampling (consecutive frames) instead of segment sampling"),
        "select_topk_attributes": Field(("int", "null"), None, "attributes kept per video by the attributes branch",
                                        minimum=1),
        "attributes_train_path": Field(("str", "null"), None, "JSON of generated attributes for training videos"),
        "attributes_val_path": Field(("str", "null"), None, "JSON of generated attributes for validation videos"),
        # Keys below are this framework's additions to the original schema.
        "test_clips": Field(("int",), 1, "temporal clips per video at test time (scores averaged)", minimum=1),
        "test_crops": Field(("int",), 1, "spatial crops per clip at test time (scores averaged): 1 (center), 3, 5 "
                                          "or 10 (the 5 and their flips)", choices=TEST_CROPS),
        "skip_unreadable": Field(("bool",), False, "log and skip videos that cannot be decoded instead of failing"),
        "flip": Field(("bool", "null"), None, "random horizontal flips when training; null: on, except for "
                                              "data whose labels name a direction (Something-Something)"),
        "min_crop_scale": Field(("float",), 0.08, "smallest area fraction of the random-resized training crop"),
        "rand_augment": Field(("bool",), False, "torchvision RandAugment on training clips (same ops for all frames)"),
        "video_backend": Field(("str",), "auto", "video reader: auto (TorchCodec where FFmpeg's libraries load, "
                                                 "else PyAV), torchcodec, pyav or decord; a file the reader cannot "
                                                 "open is tried with the automatic ones",
                               choices=("auto", "torchcodec", "pyav", "decord")),
        "decode_device": Field(("str",), "cpu", "where frames are decoded: cpu, or cuda (TorchCodec's NVDEC for "
                                                "videos, nvJPEG for frame folders; needs data.workers 0)",
                               choices=("cpu", "cuda")),
    },
    "network": {
        "arch": Field(("str",), REQUIRED, "CLIP model name (ViT-B/32, ViT-L/14-336px, RN50, ViT-Tiny/16, ...), "
                                          "path to a weight file, or open_clip:<model name> (open_clip:ViT-B-32)"),
        "init": Field(("bool",), True, "load all pretrained CLIP weights; False: only the image tower's (text tower random)"),
        "tm": Field(("bool", "str", "null"), False, "temporal module inside the image encoder: not implemented "
                                                   "(nor used by the original); only False or null are accepted"),
        "drop_out": Field(("float",), 0.0, "stochastic depth (drop path) rate of the image encoder's last layer, "
                                           "rising linearly from 0 over its layers (ViT only)"),
        "emb_dropout": Field(("float",), 0.0, "dropout on the token embeddings of both towers (image and text)"),
        "type": Field(("str", "null"), None, "free-form tag kept from the original configs; not used"),
        "sim_header": Field(("str",), "Transf", "temporal head over frame features: Transf or None",
                            choices=("Transf", "None")),
        "interaction": Field(("str",), "VCS", "video-text interaction: DP (dot product) or VCS",
                             choices=("DP", "VCS")),
        "joint_st": Field(("bool",), False, "joint space-time attention in the image encoder"),
        "drop": Field(("float",), 0.0, "kept from the original configs; not used"),
        "fix_text": Field(("bool",), True, "freeze the text encoder (class features are then computed once)"),
        "fix_video": Field(("bool",), False, "freeze the image encoder"),
        # Keys below are this framework's additions to the original schema.
        "grad_checkpointing": Field(("bool",), False, "recompute encoder activations in backward to save memory"),
        "clip_cache": Field(("str", "null"), None, "folder with OpenAI CLIP weight files; null: the default cache"),
        "pretrained": Field(("str", "null"), None, "weights of an open_clip:<model> arch: a .bin/.pt/.safetensors "
                                                   "file or an open_clip pretrained tag; null: random init"),
        "compile": Field(("bool",), False, "torch.compile the image encoder (measure the gain on your machine with "
                                           "benchmarks/bench_model.py --compile first)"),
        "peft": Field(("str",), "none",
                      "parameter-efficient fine-tuning of the image encoder (ViT towers): none (train it whole, as "
                      "the original), lora (low-rank adapters through Hugging Face peft; checkpoints hold the merged "
                      "weights) or aim (AIM's temporal, spatial and MLP adapters); with lora/aim the pretrained "
                      "image weights stay frozen", choices=("none", "lora", "aim")),
        "peft_rank": Field(("int",), 8, "lora: rank of each adapted weight's update", minimum=1),
        "peft_alpha": Field(("float",), 16.0, "lora: scale of the update (it is multiplied by peft_alpha / peft_rank)"),
        "peft_dropout": Field(("float",), 0.0, "lora: dropout on the adapters' input (Linear targets only: peft "
                                               "cannot apply it to the fused in_proj)"),
        "peft_targets": Field(("str_list",), ["in_proj", "out_proj"],
                              "lora: the image encoder's weights to adapt: in_proj (the attention's fused "
                              "query/key/value), out_proj (its output), c_fc and c_proj (the MLP)"),
        "aim_bottleneck_ratio": Field(("float",), 0.25, "aim: adapter bottleneck width as a fraction of the "
                                                        "encoder's width"),
    },
    "solver": {
        "type": Field(("str",), "cosine", "learning-rate schedule after warm-up", choices=("cosine", "multistep")),
        "epochs": Field(("int",), 30, "training epochs", minimum=1),
        "start_epoch": Field(("int",), 0, "first epoch number (resume overrides it)", minimum=0),
        "epoch_offset": Field(("int",), 0, "kept from the original configs; not used", minimum=0),
        "optim": Field(("str",), "adamw", "optimizer", choices=("adam", "adamw", "sgd")),
        "lr": Field(("float",), 5e-5, "base learning rate (of the new modules; CLIP gets lr * clip_ratio)"),
        "lr_warmup_step": Field(("int",), 5, "epochs of linear warm-up", minimum=0),
        "lr_decay_step": Field(("int", "int_list", "null"), None,
                               "multistep: decay every N epochs, or at the listed epochs", minimum=1),
        "momentum": Field(("float",), 0.9, "SGD momentum"),
        "weight_decay": Field(("float",), 0.2, "weight decay"),
        "loss_type": Field(("str",), "NCE", "NCE or DS (dual softmax)", choices=("NCE", "DS")),
        "evaluate": Field(("bool",), False, "only evaluate the loaded weights, do not train"),
        "clip_ratio": Field(("float",), 0.1, "learning-rate factor for the pretrained CLIP parameters"),
        "grad_accumulation_steps": Field(("int",), 1, "batches whose gradients add up before a step", minimum=1),
    },
    "logging": {
        "print_freq": Field(("int",), 10, "log every N iterations", minimum=1),
        "eval_freq": Field(("int",), 1, "validate every N epochs", minimum=1),
    },
}


class Config(dict):
    """A nested dict whose keys also read as attributes (`config.data.num_segments`).

    A missing name raises AttributeError naming it, instead of returning an empty placeholder.
    """

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}; keys here: {', '.join(self)}") from None

    def __setattr__(self, name, value):
        if name not in self:
            raise AttributeError(f"config has no key {name!r}; keys here: {', '.join(self)}")
        self[name] = value

    @property
    def source(self):
        """Where the config came from (a file path or '<dict>'), for error messages."""
        return self.__dict__.get("_source", "<dict>")

    def to_dict(self):
        """Plain nested dicts, e.g. for yaml.safe_dump or a checkpoint."""
        return {key: value.to_dict() if isinstance(value, Config) else copy.deepcopy(value)
                for key, value in self.items()}


def load_config(path, overrides=()):
    """Read a YAML config, apply `key.sub=value` overrides, validate and fill defaults."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from error
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    return build_config({} if raw is None else raw, overrides, source=str(path))


def build_config(raw, overrides=(), source="<dict>"):
    """Validate an already parsed config mapping (the input is not modified)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a config must be a mapping of sections, got {type(raw).__name__}")
    raw = copy.deepcopy(raw)
    for text in overrides:
        _apply_override(raw, text)
    config = _validate_section(raw, SCHEMA, "", source)
    _check_consistency(config, source)
    object.__setattr__(config, "_source", source)
    return config


def parse_override(text):
    """Split `key.sub=value` into the dotted key and the value parsed as a YAML scalar or list."""
    key, sep, raw_value = text.partition("=")
    key = key.strip()
    if not sep or not key or "" in key.split("."):
        raise ConfigError(f"malformed override {text!r}: expected key.sub=value, e.g. data.batch_size=8")
    try:
        value = yaml.safe_load(raw_value)
    except yaml.YAMLError as error:
        raise ConfigError(f"override {text!r}: value is not valid YAML: {error}") from error
    return key, value


def check_files(config, keys=DATA_FILE_KEYS, optional=()):
    """Fail before any heavy work when a file or folder named by one of the dotted `keys` is missing, or by
    one of the `optional` keys that is set (resume, pretrain).

    Relative paths are taken from the current directory, as the training scripts run from the repository root.
    """
    problems = []
    for key in keys:
        value = _lookup(config, key)
        if value is None or value == "":
            problems.append(f"{key} is not set")
        elif not Path(value).exists():
            problems.append(f"{key}: no such file or folder: {value}")
    for key in optional:
        value = _lookup(config, key)
        if value and not Path(value).exists():
            problems.append(f"{key}: no such file or folder: {value}")
    if problems:
        raise ConfigError(f"{config.source}: " + "; ".join(problems))


def _lookup(config, key):
    node = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"{config.source}: unknown config key {key}")
        node = node[part]
    return node


def _apply_override(raw, text):
    key, value = parse_override(text)
    where = f"override {text!r}"
    schema, node, prefix = SCHEMA, raw, ""
    *parents, leaf = key.split(".")
    for part in parents:
        if part not in schema:
            raise _unknown_key(prefix + part, schema, prefix, where)
        if not isinstance(schema[part], dict):
            raise ConfigError(f"{where}: {prefix + part} is a value, not a section")
        child = node.setdefault(part, {})
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{where}: section {prefix + part} of the config file is not a mapping")
        schema, node, prefix = schema[part], child, f"{prefix}{part}."
    if leaf not in schema:
        raise _unknown_key(key, schema, prefix, where)
    if isinstance(schema[leaf], dict):
        example = next(iter(schema[leaf]))
        raise ConfigError(f"{where}: {key} is a section; override one of its keys, e.g. {key}.{example}=...")
    node[leaf] = _check_value(value, schema[leaf], key, where)


def _validate_section(raw, schema, prefix, source):
    if not isinstance(raw, dict):
        section = prefix.rstrip(".") or "the top level"
        raise ConfigError(f"{source}: {section} must be a mapping of keys, got {raw!r}")
    for name in raw:
        if name not in schema:
            raise _unknown_key(f"{prefix}{name}", schema, prefix, source)
    section = Config()
    for name, spec in schema.items():
        key = prefix + name
        if isinstance(spec, dict):
            value = raw.get(name)
            section[name] = _validate_section({} if value is None else value, spec, key + ".", source)
        elif name in raw:
            section[name] = _check_value(raw[name], spec, key, source)
        elif spec.default is REQUIRED:
            raise ConfigError(f"{source}: missing required key {key} ({spec.doc})")
        else:
            section[name] = copy.deepcopy(spec.default)
    return section


def _unknown_key(key, schema, prefix, where):
    name = key.rsplit(".", 1)[-1]
    section = f"section '{prefix.rstrip('.')}'" if prefix else "the top level"
    close = difflib.get_close_matches(name, list(schema), n=1)
    hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
    return ConfigError(f"{where}: unknown key {key}{hint}; valid keys of {section}: {', '.join(schema)}")


def _check_value(value, field, key, where):
    for kind in field.kinds:
        accepted, converted = _COERCE[kind](value)
        if accepted:
            break
    else:
        expected = " or ".join(_KIND_NAMES[kind] for kind in field.kinds)
        raise ConfigError(f"{where}: {key} must be {expected}, got {value!r} ({type(value).__name__})")
    if field.choices and converted not in field.choices:
        raise ConfigError(f"{where}: {key} must be one of {', '.join(map(str, field.choices))}, got {converted!r}")
    if field.minimum is not None:
        numbers = converted if isinstance(converted, list) else [converted]
        if any(number is not None and number < field.minimum for number in numbers):
            raise ConfigError(f"{where}: {key} must be at least {field.minimum}, got {converted!r}")
    return converted


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _as_float(value):
    """Floats, ints and numeric strings: PyYAML reads `1e-5` (no dot) as the string '1e-5'."""
    if _is_int(value) or isinstance(value, float):
        return True, float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return False, None
        return math.isfinite(number), number
    return False, None


_COERCE = {
    "int": lambda value: (_is_int(value), value),
    "float": _as_float,
    "bool": lambda value: (isinstance(value, bool), value),
    "str": lambda value: (isinstance(value, str), value),
    "null": lambda value: (value is None, None),
    "int_list": lambda value: (isinstance(value, list) and all(map(_is_int, value)), value),
    "str_list": lambda value: (isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value),
                               value),
}
_KIND_NAMES = {"int": "an integer", "float": "a number", "bool": "true/false", "str": "a string",
               "null": "null", "int_list": "a list of integers",
               "str_list": "a non-empty list of names"}


def _check_consistency(config, source):
    if config.data.decode_device == "cuda" and config.data.workers > 0:
        raise ConfigError(f"{source}: data.decode_device cuda decodes in the main process (CUDA does not survive "
                          f"the fork of a loader worker): set data.workers to 0 (it is {config.data.workers})")
    if config.network.tm not in (False, None):
        raise ConfigError(f"{source}: network.tm is {config.network.tm!r}, but no temporal module inside the image "
                          "encoder exists here (the original ignores the key too): set network.tm to False or null")
    if config.network.peft != "none" and config.network.fix_video:
        raise ConfigError(f"{source}: network.peft {config.network.peft} trains adapters inside the image encoder, "
                          "which network.fix_video freezes whole: set network.fix_video to False or network.peft "
                          "to none")
    if config.network.peft == "lora" and config.network.compile:
        raise ConfigError(f"{source}: network.compile does not work with network.peft lora (peft adapts the fused "
                          "attention weight by re-registering a parametrization in every forward): set one of them "
                          "off")
    if config.network.peft == "aim" and not 0 < config.network.aim_bottleneck_ratio <= 1:
        raise ConfigError(f"{source}: network.aim_bottleneck_ratio must be in (0, 1], got "
                          f"{config.network.aim_bottleneck_ratio}")
    if config.solver.type == "multistep" and config.solver.lr_decay_step is None:
        raise ConfigError(f"{source}: solver.type multistep needs solver.lr_decay_step (an epoch count or a list)")
