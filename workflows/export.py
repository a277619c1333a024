"""A trained model as one self-contained file that runs without this project: ONNX or `torch.export` (.pt2).

The exported recognizer takes what any decoder gives, uint8 RGB frames [B, N, H, W, 3] of a fixed size
H x W, with N = test clips x frames per clip (clip-major, as test.py's sampler orders them). Inside it
does test.py's test transform (short side resized bicubic with antialiasing, then 1/3/5/10 crops) and
CLIP normalisation, and it returns test.py's scores [B, C] (per view softmax of the cosine similarities,
averaged over views) and the VCS temporal saliency [B, C, N] (per clip, averaged over its crops). The
class text features are computed once here and stored as constants: no tokenizer or text tower at run time.

torchvision resizes uint8 frames in two passes, width then height, each rounded to uint8; the recognizer
does the same in float (ONNX has no uint8 antialiased resize), so a resized pixel differs from
torchvision's by at most 1 (fixed-point weights), which the export tests measure. Metadata (classes,
views, sizes, source checkpoint) travels in the file: ONNX `metadata_props`, a JSON extra file in .pt2.
"""
import hashlib
import json
import logging
import zipfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from clip import CLIP_MEAN, CLIP_STD
from datasets.transforms import multi_crop_offsets, scale_size_for
from modules import VideoHeader
from modules.video_clip import VideoEncoder
from utils.errors import UnusableFileError, UsageError
from workflows.inference import class_texts, load_video_model

logger = logging.getLogger(__name__)

FORMATS = {".onnx": "onnx", ".pt2": "pt2"}
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
METADATA_KEY = "bike"  # ONNX metadata_props key, and the .pt2 extra file's name
METADATA_VERSION = 1
ONNX_OPSET = 18  # Resize with antialiasing (opset 18) runs in every onnxruntime since 1.14
INPUT_NAME, OUTPUT_NAMES = "frames", ("scores", "saliency")


@dataclass(frozen=True)
class ExportMetadata:
    """What a user of the file needs to feed it and read its outputs; checked when the file is loaded."""
    classes: list
    frame_height: int
    frame_width: int
    input_size: int  # crop size the CLIP model sees
    num_segments: int
    seg_length: int
    test_clips: int
    test_crops: int
    dense: bool  # how test.py sampled the clips' frames (the caller samples; recorded so it can do the same)
    precision: str
    arch: str
    sim_header: str
    interaction: str
    source_checkpoint: str
    source_sha256: str
    version: int = METADATA_VERSION

    @property
    def num_frames(self) -> int:
        """Frames of one input video: clips x segments x frames per segment."""
        return self.test_clips * self.num_segments * self.seg_length

    @property
    def input_shape(self):
        """[batch, N, H, W, 3]; batch is dynamic ('batch')."""
        return ["batch", self.num_frames, self.frame_height, self.frame_width, 3]

    def to_json(self) -> str:
        return json.dumps(asdict(self) | {"num_frames": self.num_frames, "input_shape": self.input_shape,
                                          "outputs": {"scores": "[batch, classes]",
                                                      "saliency": "[batch, classes, num_frames]"}}, indent=1)

    @classmethod
    def from_json(cls, text: str, source) -> "ExportMetadata":
        try:
            values = json.loads(text)
            if values.get("version") != METADATA_VERSION:
                raise UnusableFileError(f"{source}: metadata version {values.get('version')!r}, this loader reads "
                                        f"{METADATA_VERSION}")
            return cls(**{field.name: values[field.name] for field in fields(cls)})
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
            raise UnusableFileError(f"{source}: unreadable BIKE metadata ({error})") from None


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resized_size(height: int, width: int, input_size: int):
    """(height, width) after test.py's short-side resize, as torchvision computes it."""
    short = scale_size_for(input_size)
    if height <= width:
        return short, int(short * width / height)
    return int(short * height / width), short


class ExportedRecognizer(nn.Module):
    """test.py's view transform, model and scoring as one module of fixed input size and class texts."""

    def __init__(self, encoder: VideoEncoder, header: VideoHeader, class_eot: torch.Tensor,
                 class_tokens: torch.Tensor, metadata: ExportMetadata):
        super().__init__()
        self.encoder, self.header, self.metadata = encoder, header, metadata
        # The class texts are constants: normalised here once, not in every call (VCS normalises both).
        self.register_buffer("unit_class_eot", F.normalize(class_eot.detach(), dim=-1))
        self.register_buffer("unit_class_tokens", F.normalize(class_tokens.detach(), dim=-1))
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(3, 1, 1) * 255)
        self.resized = resized_size(metadata.frame_height, metadata.frame_width, metadata.input_size)
        self.offsets = multi_crop_offsets(self.resized[1], self.resized[0], metadata.input_size, metadata.test_crops)

    def views(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [B, N, H, W, 3] -> normalised views [B * clips * crops, T, 3, S, S], clip-major as test.py."""
        meta, size = self.metadata, self.metadata.input_size
        batch = frames.shape[0]
        images = frames.flatten(0, 1).permute(0, 3, 1, 2).float()
        height, width = self.resized
        images = F.interpolate(images, size=(meta.frame_height, width), mode="bicubic", antialias=True)
        images = images.round().clamp(0, 255)
        images = F.interpolate(images, size=(height, width), mode="bicubic", antialias=True).round().clamp(0, 255)
        crops = []
        for left, top in self.offsets:
            crop = images[..., top:top + size, left:left + size]
            crops.append(crop)
            if meta.test_crops == 10:
                crops.append(crop.flip(-1))
        views = torch.stack(crops, 1)  # [B * N, crops, 3, S, S]
        views = views.view(batch, meta.test_clips, -1, meta.test_crops, 3, size, size).transpose(2, 3)
        views = (views.flatten(0, 2) - self.mean) / self.std
        return views.to(self.unit_class_eot.dtype)

    def forward(self, frames: torch.Tensor):
        meta = self.metadata
        batch, num_views = frames.shape[0], meta.test_clips * meta.test_crops
        embeddings = self.encoder.encode_video(self.views(frames))
        aggregated = self.header.aggregate(embeddings)
        frames = F.normalize(aggregated, dim=-1)
        weights = VideoHeader.unit_concept_weights(frames, self.unit_class_tokens)  # [C, B * views, T]
        if self.header.interaction == "VCS":  # the header's interact, with the saliency computed once for both
            similarity = VideoHeader.spotted_logits(weights, frames, self.unit_class_eot)
        else:
            similarity = self.header.interact(aggregated, self.unit_class_tokens, self.unit_class_eot)
        scores = similarity.float().view(batch, num_views, -1).softmax(-1).mean(1)
        weights = weights.float()
        weights = weights.view(-1, batch, meta.test_clips, meta.test_crops, weights.shape[-1]).mean(3)
        return scores, weights.flatten(2).transpose(0, 1)


def check_exportable(config, attributes_weights=None):
    """A UsageError naming what the exported file cannot carry."""
    if attributes_weights:
        raise UsageError("--attributes_weights cannot be exported: the attributes branch encodes each video's "
                         "attribute sentence with CLIP's text tower at run time, which the exported file does not "
                         "carry (export the video model alone, or use tools/predict.py --attributes_weights)")
    if config.network.joint_st:
        raise UsageError("network.joint_st=True cannot be exported: joint space-time attention embeds a clip as "
                         "one vector, so there is no per-frame VCS saliency to output")


def build_recognizer(config, weights, class_names, frame_size, test_clips=None, test_crops=None, dense=None,
                     precision="fp32") -> ExportedRecognizer:
    """The recognizer of a BIKE checkpoint (or zero-shot CLIP without `weights`) for `class_names`, on CPU."""
    check_exportable(config)
    if precision not in PRECISIONS:
        raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    data, network = config.data, config.network
    encoder, header = load_video_model(config, weights)
    dtype = PRECISIONS[precision]
    eot, tokens = class_texts(encoder, list(class_names), torch.device("cpu"), torch.no_grad)
    height, width = frame_size
    metadata = ExportMetadata(
        classes=list(class_names), frame_height=int(height), frame_width=int(width), input_size=data.input_size,
        num_segments=data.num_segments, seg_length=data.seg_length, test_clips=test_clips or data.test_clips,
        test_crops=test_crops or data.test_crops, dense=bool(data.dense if dense is None else dense),
        precision=precision, arch=str(network.arch), sim_header=network.sim_header, interaction=network.interaction,
        source_checkpoint=str(weights or f"zero-shot {network.arch}"),
        source_sha256=file_sha256(weights) if weights else "")
    if min(resized_size(height, width, data.input_size)) < data.input_size:
        raise UsageError(f"--frame_size {height}x{width} is smaller than the crop {data.input_size}")
    if network.interaction != "VCS":
        logger.warning("interaction is %s: the saliency output shows VCS weights the model does not use",
                       network.interaction)
    return ExportedRecognizer(encoder, header, eot, tokens, metadata).to(dtype).eval()


def example_frames(metadata: ExportMetadata, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """Random uint8 frames of the recognizer's input shape (tracing input and export check)."""
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, metadata.num_frames, metadata.frame_height, metadata.frame_width, 3)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)


def _exported_program(recognizer: ExportedRecognizer):
    batch = torch.export.Dim("batch", min=1, max=1024)
    with torch.no_grad():
        return torch.export.export(recognizer, (example_frames(recognizer.metadata),),
                                   dynamic_shapes=({0: batch},), strict=False)


def export_pt2(recognizer: ExportedRecognizer, path):
    torch.export.save(_exported_program(recognizer), str(path),
                      extra_files={METADATA_KEY: recognizer.metadata.to_json()})


def export_onnx(recognizer: ExportedRecognizer, path):
    import onnx

    program = torch.onnx.export(_exported_program(recognizer), input_names=[INPUT_NAME],
                                output_names=list(OUTPUT_NAMES), opset_version=ONNX_OPSET, dynamo=True,
                                verbose=False)
    model = program.model_proto
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, recognizer.metadata.to_json()
    onnx.save(model, str(path))


def export_format(path, precision="fp32") -> str:
    """'onnx' or 'pt2', the format `path` names by its ending, if it can hold `precision`."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"--out must end in {' or '.join(FORMATS)} (the format), got {path}")
    if precision == "bf16" and FORMATS[suffix] == "onnx":
        raise UsageError("--precision bf16 cannot be exported to ONNX: onnxruntime's CPU operators (Conv among "
                         "them) take no bf16 tensors (use fp16 or fp32, or bf16 in a .pt2 file)")
    return FORMATS[suffix]


def export(recognizer: ExportedRecognizer, path):
    """Writes `recognizer` to `path` in the format its ending names."""
    fmt = export_format(path, recognizer.metadata.precision)
    (export_onnx if fmt == "onnx" else export_pt2)(recognizer, path)


def _checked(metadata: ExportMetadata, shape, num_outputs, path) -> ExportMetadata:
    """`metadata` after checking that the file's own input shape and class count agree with it."""
    if list(shape[1:]) != metadata.input_shape[1:] or num_outputs != len(metadata.classes):
        raise UnusableFileError(f"{path}: the model takes {list(shape)} and scores {num_outputs} classes, but its "
                                f"metadata says {metadata.input_shape} and {len(metadata.classes)} classes")
    return metadata


def load_onnx(path, providers=("CPUExecutionProvider",)):
    """(onnxruntime session, metadata) of an exported .onnx file."""
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(str(path), providers=list(providers))
    except Exception as error:  # onnxruntime raises its own untyped errors for any unreadable file
        raise UnusableFileError(f"{path}: not an ONNX model onnxruntime can load ({str(error).splitlines()[0]})") \
            from None
    props = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in props:
        raise UnusableFileError(f"{path}: no BIKE metadata (not written by tools/export.py)")
    metadata = ExportMetadata.from_json(props[METADATA_KEY], path)
    return session, _checked(metadata, session.get_inputs()[0].shape, session.get_outputs()[0].shape[1], path)


def load_pt2(path):
    """(exported program's module, metadata) of an exported .pt2 file."""
    extra = {METADATA_KEY: ""}
    try:
        program = torch.export.load(str(path), extra_files=extra)
    except (RuntimeError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise UnusableFileError(f"{path}: not a torch.export program ({str(error).splitlines()[0]})") from None
    if not extra[METADATA_KEY]:
        raise UnusableFileError(f"{path}: no BIKE metadata (not written by tools/export.py)")
    metadata = ExportMetadata.from_json(extra[METADATA_KEY], path)
    frames = program.graph_signature.user_inputs[0]
    shape = next(node.meta["val"].shape for node in program.graph.nodes if node.name == frames)
    scores = next(node for node in program.graph.nodes if node.op == "output").args[0][0]
    return program.module(), _checked(metadata, ["batch", *shape[1:]], scores.meta["val"].shape[1], path)
