"""Clips per second of one data worker: the project's frame and video paths next to a naive PIL pipeline.

Every pipeline loads the same benchmark clips (8 frames, 320-pixel short side, 224 crops) in this one
process with one thread (`torch.set_num_threads(1)`, decord with one thread), as a DataLoader worker
does. The naive pipeline is the original BIKE implementation's frame path written out here: per frame
`PIL.Image.open(...).convert('RGB')`, group transforms on PIL images, then a float tensor normalised on
the CPU. The pipelines take turns for `--rounds` rounds of `--seconds` each (the machine may be busy);
the table gives the median round, in clips per wall second and per CPU second of this process.

Videos come three ways: as generated (one keyframe per clip), with a keyframe every 2 s (as videos from
video sites have), and re-encoded by tools/prepare_videos.py with its defaults (MJPEG, every frame a keyframe, short
side 256: the training transform's first resize). Video lines name their reader: TorchCodec, PyAV,
decord. Loader lines run a DataLoader with 1 and 2 worker processes (clips per wall second only: on a
shared machine their figures move with the load). The closing estimate turns the measured clips per CPU
second into CPU cores per GPU: what one H100 consumes at 40% of its bf16 peak for ViT-B/16 and ViT-B/32,
8 frames, with the training step's FLOPs counted by FlopCounterMode (on the meta device, no compute).

Shard lines (issue 33): the same clips written by tools/make_shards.py (frame JPEGs, and the MP4s) and
streamed by the shard dataset, from local disk and from an HTTP server on the loopback (a child process,
whose CPU time is not counted), against the per-file lines; and the per-file videos fetched whole over
HTTP. Many small frame files against the same frames in shards: the frame-shard lines against `frames`, from
local disk (the files in the page cache) and over HTTP (each sampled frame one request, as frame files in
object storage or behind a web server are read).

    python -m benchmarks.bench_data            # generates .cache/bench_data on first use (~2 minutes)
"""
import argparse
import contextlib
import dataclasses
import datetime
import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import numpy as np
import PIL
import torch
import torchvision
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import DataLoader

from benchmarks.bench_model import build, counted_flops
from datasets import CLIP_MEAN, CLIP_STD, VideoDataset, normalize_on_device, test_transform, train_transform_for
from datasets.decoding import (EncodedFrames, available_video_backends, decord, default_video_backend, open_video,
                               torchcodec_decoder)
from datasets.sampling import segment_train_indices, segment_val_indices
from datasets.shards import MANIFEST_VERSION, ShardDataset
from datasets.storage import read_bytes
from datasets.annotations import write_labels_csv, write_list
from datasets.synthetic import (CLASS_NAMES, FPS, IMAGE_TMPL, MOTION_PAIRS, render_clip, sample_clip_params,
                                write_jpeg_folder, write_mp4)
from modules import text_prompt
from tests.servers import file_server_process
from tools.make_shards import byte_size, make_shards
from tools.prepare_videos import EncodeOptions, prepare_all, prepared_name, write_video_list
from workflows.training import ClassTexts, training_step_loss

DEFAULT_ROOT = Path(".cache/bench_data")
HEIGHT, WIDTH = 320, 426  # a Kinetics-style 320-pixel short side (4:3)
MIN_FRAMES, MAX_FRAMES = 64, 150
NUM_SEGMENTS, INPUT_SIZE = 8, 224
MARKER = "COMPLETE.json"
KEYFRAME_SECONDS = 2  # keyframe distance of the keyframed variant, as in videos from video sites
PREPARED = EncodeOptions()  # tools/prepare_videos.py's defaults: MJPEG, short side 256
# One H100 SXM: dense bf16 peak; a training step at 40% of it is what a tuned run reaches.
H100_BF16_PEAK, MFU = 989e12, 0.40
NAIVE_TRAIN, FRAMES_TRAIN = "naive PIL frames, train", "frames, train"
FRAME_SHARDS, FRAME_SHARDS_HTTP, FRAMES_HTTP = ("frame shards, local, train", "frame shards, HTTP, train",
                                               "frames, HTTP, train")


@dataclasses.dataclass(frozen=True)
class BenchClip:
    name: str
    num_frames: int
    label: int


@dataclasses.dataclass(frozen=True)
class BenchData:
    """Where the benchmark clips are; list entries are relative to `frames_root` / `videos_root`."""

    clips: tuple
    frames_root: Path
    videos_root: Path
    frames_list: Path
    videos_list: Path
    labels: Path
    keyframed_root: Path  # the same videos with a keyframe every KEYFRAME_SECONDS
    prepared_root: Path  # the videos re-encoded by tools/prepare_videos.py
    prepared_list: Path

    @classmethod
    def at(cls, root, clips):
        root = Path(root)
        return cls(tuple(clips), root / "frames", root / "videos", root / "frames.txt", root / "videos.txt",
                   root / "labels.csv", root / "videos_keyframes_2s", root / "prepared",
                   root / "prepared.txt")

    def video_path(self, clip, videos_root=None):
        if videos_root == self.prepared_root:
            return videos_root / prepared_name(f"{clip.name}.mp4", PREPARED)
        return (videos_root or self.videos_root) / f"{clip.name}.mp4"


def _write_clip(data, clip, params):
    frames = render_clip(clip.label, params, HEIGHT, WIDTH)
    write_jpeg_folder(data.frames_root / clip.name, frames)
    write_mp4(data.video_path(clip), frames)
    write_mp4(data.video_path(clip, data.keyframed_root), frames, keyframe_interval=KEYFRAME_SECONDS * FPS)


def ensure_bench_data(root, num_clips, seed=0):
    """Synthetic clips of HEIGHT x WIDTH as JPEG folders and H.264 MP4s with lists; reused when present."""
    settings = {"num_clips": num_clips, "seed": seed, "height": HEIGHT, "width": WIDTH,
                "frames": [MIN_FRAMES, MAX_FRAMES], "keyframe_seconds": KEYFRAME_SECONDS,
                "prepared": dataclasses.asdict(PREPARED)}
    marker = Path(root) / MARKER
    saved = json.loads(marker.read_text()) if marker.is_file() else {}
    if saved.get("settings") == settings:
        return BenchData.at(root, (BenchClip(**clip) for clip in saved["clips"]))
    rng = np.random.default_rng(seed)
    clips, params = [], []
    for index in range(num_clips):
        label = index % len(CLASS_NAMES)
        drawn = sample_clip_params(rng, MOTION_PAIRS[label // 2][0], HEIGHT, WIDTH)
        params.append(dataclasses.replace(drawn, num_frames=int(rng.integers(MIN_FRAMES, MAX_FRAMES + 1))))
        clips.append(BenchClip(f"clip_{index:03d}", params[-1].num_frames, label))
    print(f"generating {num_clips} benchmark clips in {root} ...", flush=True)
    data = BenchData.at(root, clips)
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(_write_clip, [data] * num_clips, clips, params))
    videos = [data.video_path(c).name for c in clips]
    outcomes = prepare_all(videos, data.videos_root, data.prepared_root, PREPARED, os.cpu_count(), progress=False)
    write_video_list(data.prepared_list, [(video, c.label) for video, c in zip(videos, clips)], outcomes, PREPARED)
    write_list(data.frames_list, [f"{c.name} {c.num_frames} {c.label}" for c in clips])
    write_list(data.videos_list, [f"{data.video_path(c).name} {c.label}" for c in clips])
    write_labels_csv(data.labels, CLASS_NAMES)
    marker.write_text(json.dumps({"settings": settings, "clips": [dataclasses.asdict(c) for c in clips]}))
    return data


class NaivePILClips:
    """The original implementation's frame path, one PIL image per frame.

    Counts the folder's files (os.listdir), samples as the original, opens and converts each frame with
    PIL, resizes the short side to 256 (bicubic), then for training a random sized crop (area 0.08-1,
    ratio 3/4-4/3, bilinear resize to 224), a flip (p=0.5) and grayscale (p=0.2), for testing a center
    crop; stacks the frames into a float tensor [T*3, 224, 224] in [0, 1] and normalises it.
    """

    def __init__(self, frames_root, clips, train):
        self.frames_root, self.clips, self.train = frames_root, clips, train
        self.mean = torch.tensor(CLIP_MEAN * NUM_SEGMENTS).view(-1, 1, 1)
        self.std = torch.tensor(CLIP_STD * NUM_SEGMENTS).view(-1, 1, 1)

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, index):
        clip = self.clips[index]
        folder = self.frames_root / clip.name
        num_frames = len(os.listdir(folder))
        if self.train:
            indices = segment_train_indices(num_frames, NUM_SEGMENTS, np.random.default_rng(random.getrandbits(32)))
        else:
            indices = segment_val_indices(num_frames, NUM_SEGMENTS)
        images = [Image.open(folder / IMAGE_TMPL.format(i + 1)).convert("RGB") for i in indices]
        images = [TF.resize(image, 256, TF.InterpolationMode.BICUBIC) for image in images]
        images = self._augment(images) if self.train else [TF.center_crop(image, INPUT_SIZE) for image in images]
        stacked = np.concatenate([np.asarray(image) for image in images], axis=2)
        tensor = torch.from_numpy(stacked).permute(2, 0, 1).contiguous().float().div(255)
        return tensor.sub_(self.mean).div_(self.std), clip.label

    @staticmethod
    def _crop_box(width, height):
        for _ in range(10):
            area = random.uniform(0.08, 1.0) * width * height
            ratio = random.uniform(3 / 4, 4 / 3)
            w, h = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
            if random.random() < 0.5:
                w, h = h, w
            if w <= width and h <= height:
                left, top = random.randint(0, width - w), random.randint(0, height - h)
                return left, top, left + w, top + h
        return None

    def _augment(self, images):
        box = self._crop_box(*images[0].size)
        if box is None:  # the original's fallback: scale and random crop
            images = [TF.resize(image, INPUT_SIZE, TF.InterpolationMode.BILINEAR) for image in images]
            width, height = images[0].size
            left, top = random.randint(0, width - INPUT_SIZE), random.randint(0, height - INPUT_SIZE)
            box = (left, top, left + INPUT_SIZE, top + INPUT_SIZE)
            images = [image.crop(box) for image in images]
        else:
            images = [image.crop(box).resize((INPUT_SIZE, INPUT_SIZE), Image.BILINEAR) for image in images]
        if random.random() < 0.5:
            images = [image.transpose(Image.FLIP_LEFT_RIGHT) for image in images]
        if random.random() < 0.2:
            images = [TF.rgb_to_grayscale(image, num_output_channels=3) for image in images]
        return images


def decode_all_decord(path):
    """Every frame of a video as RGB with decord (one thread), as a path that ignores sampling would."""
    reader = decord.VideoReader(str(path), num_threads=1)
    return reader.get_batch(list(range(len(reader)))).asnumpy()


def decode_all_pyav(path):
    """Every frame of a video as RGB with PyAV's default decoder settings (as the project's reader)."""
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


@dataclasses.dataclass
class Pipeline:
    """One line of the table: `load(index)` produces one clip; ratios are taken against `baseline`."""

    name: str
    load: object
    size: int
    baseline: str = ""
    wall_rates: list = dataclasses.field(default_factory=list)
    cpu_rates: list = dataclasses.field(default_factory=list)
    cursor: int = 0

    def run(self, seconds):
        """Loads clips in list order for at least `seconds`; records clips per wall and per CPU second."""
        count, wall0, cpu0 = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - wall0 < seconds or count == 0:
            self.load(self.cursor % self.size)
            self.cursor += 1
            count += 1
        self.wall_rates.append(count / (time.perf_counter() - wall0))
        self.cpu_rates.append(count / (time.process_time() - cpu0))


class StreamedClips:
    """`load(index)` of a ShardDataset: the next clip of its stream (one rank, batch 1), a new epoch when it ends."""

    def __init__(self, dataset):
        self.dataset, self.epoch, self.stream = dataset, 0, iter(())

    def load(self, _index):
        clip = next(self.stream, None)
        if clip is None:
            self.dataset.set_epoch(self.epoch)
            self.epoch += 1
            self.stream = iter(self.dataset)
            clip = next(self.stream)
        return clip


class FrameURLs:
    """The frame files of a folder on a web server, frame k fetched when it is indexed (one request per frame)."""

    def __init__(self, folder_url, image_tmpl, num_frames, first_number):
        self.folder_url, self.image_tmpl = folder_url, image_tmpl
        self.num_frames, self.first_number = num_frames, first_number

    def __len__(self):
        return self.num_frames

    def __getitem__(self, k):
        return read_bytes(f"{self.folder_url}/{self.image_tmpl.format(k + self.first_number)}")


class FilesOverHTTP(VideoDataset):
    """The per-file path with the files fetched over HTTP and decoded from memory (as a shard's samples): a
    video whole, frame files one request per sampled frame."""

    def __init__(self, base_url, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.base_url = base_url

    def frames_of(self, record):
        url = f"{self.base_url}/{record.path}"
        if self.modality == "video":
            return open_video(record.path, self.video_backend, self.decode_device, data=read_bytes(url)), url
        frames = FrameURLs(url, self.image_tmpl, record.num_frames, record.start_frame + self.index_bias)
        return EncodedFrames(url, frames, self.decode_device), url


def shard_pipelines(data, shard_size, server_url):
    """Lines of the same clips streamed from shards (from local disk, and over HTTP from `server_url`, which
    serves the benchmark folder) and of the per-file videos fetched over HTTP; the shards are made on first use
    and when their layout changed (tools/make_shards.py's make_shards), in the benchmark folder."""
    train = dict(num_segments=NUM_SEGMENTS, mode="train", transform=train_transform_for("kinetics400", INPUT_SIZE))
    count, default, root = len(data.clips), default_video_backend(), data.frames_root.parent
    manifests = {}
    for kind, video_list, files_root, modality in (("frames", data.frames_list, data.frames_root, "RGB"),
                                                   ("videos", data.videos_list, data.videos_root, "video")):
        manifests[kind] = f"shards_{kind}/manifest.json"
        manifest = root / manifests[kind]
        if not manifest.is_file() or json.loads(manifest.read_text())["version"] != MANIFEST_VERSION:
            shutil.rmtree(manifest.parent, ignore_errors=True)
            files = VideoDataset(video_list, data.labels, files_root, modality=modality, **train)
            make_shards(files, root / f"shards_{kind}", shard_size, os.cpu_count())

    def streamed(manifest):
        return StreamedClips(ShardDataset(manifest, data.labels, seed=0, video_backend=default, **train)).load
    video_files = f"video ({default}), train"
    over_http = FilesOverHTTP(f"{server_url}/{data.videos_root.relative_to(root).as_posix()}", data.videos_list,
                              data.labels, modality="video", video_backend=default, **train)
    frames_over_http = FilesOverHTTP(f"{server_url}/{data.frames_root.relative_to(root).as_posix()}",
                                     data.frames_list, data.labels, data.frames_root, modality="RGB", **train)
    return [
        Pipeline(FRAME_SHARDS, streamed(root / manifests["frames"]), count, FRAMES_TRAIN),
        Pipeline(FRAMES_HTTP, frames_over_http.__getitem__, count, FRAMES_TRAIN),
        Pipeline(FRAME_SHARDS_HTTP, streamed(f"{server_url}/{manifests['frames']}"), count, FRAMES_TRAIN),
        Pipeline(f"video ({default}) shards, local, train", streamed(root / manifests["videos"]), count, video_files),
        Pipeline(f"video ({default}) shards, HTTP, train", streamed(f"{server_url}/{manifests['videos']}"),
                 count, video_files),
        Pipeline(f"video ({default}) files, HTTP, train", over_http.__getitem__, count, video_files),
    ]


def build_pipelines(data, include_test=True):
    """The table's lines, each loading the benchmark clips through one pipeline."""
    count = len(data.clips)
    train = dict(num_segments=NUM_SEGMENTS, mode="train", transform=train_transform_for("kinetics400", INPUT_SIZE))
    frames = VideoDataset(data.frames_list, data.labels, data.frames_root, modality="RGB", **train)
    pipelines = [
        Pipeline(NAIVE_TRAIN, NaivePILClips(data.frames_root, data.clips, train=True).__getitem__, count),
        Pipeline(FRAMES_TRAIN, frames.__getitem__, count, NAIVE_TRAIN),
        Pipeline("frames, train + CPU normalize", lambda i: normalize_on_device(frames[i][0]), count, NAIVE_TRAIN),
    ]
    def videos(backend, root=data.videos_root):
        video_list = data.prepared_list if root == data.prepared_root else data.videos_list
        return VideoDataset(video_list, data.labels, root, modality="video", video_backend=backend, **train)
    backends = available_video_backends()
    for backend in backends:
        pipelines.append(Pipeline(f"video ({backend}), train", videos(backend).__getitem__, count, NAIVE_TRAIN))
    default = default_video_backend()
    pipelines += [
        Pipeline(f"video ({default}), keyframe every {KEYFRAME_SECONDS} s, train",
                 videos(default, data.keyframed_root).__getitem__, count, NAIVE_TRAIN),
        Pipeline(f"video ({default}), prepared, train", videos(default, data.prepared_root).__getitem__, count,
                 NAIVE_TRAIN),
    ]
    paths = [data.video_path(clip) for clip in data.clips]
    for backend, decode_all in {"pyav": decode_all_pyav, "decord": decode_all_decord}.items():
        if backend in backends:
            pipelines.append(Pipeline(f"decode all frames ({backend}), no transform",
                                      lambda i, decode_all=decode_all: decode_all(paths[i]), count, NAIVE_TRAIN))
    if include_test:
        naive_test = "naive PIL frames, test (center crop)"
        test_frames = VideoDataset(data.frames_list, data.labels, data.frames_root, modality="RGB",
                                   num_segments=NUM_SEGMENTS, mode="test", test_clips=1,
                                   transform=test_transform(INPUT_SIZE, 1))
        pipelines += [
            Pipeline(naive_test, NaivePILClips(data.frames_root, data.clips, train=False).__getitem__, count),
            Pipeline("frames, test (1 crop)", test_frames.__getitem__, count, naive_test),
        ]
    return pipelines


def keyframe_counts(data, videos_root=None):
    """Keyframes per benchmark video (from the packets, without decoding)."""
    counts = []
    for clip in data.clips:
        with av.open(str(data.video_path(clip, videos_root))) as container:
            counts.append(sum(packet.is_keyframe for packet in container.demux(video=0) if packet.size))
    return counts


def decoded_fraction(data, seed=0):
    """Mean share of a video's frames up to the last frame training sampling picks.

    With one keyframe per video, a reader must decode from the first frame to the last sampled one;
    what it saves is converting and copying the frames it does not return, and the frames after.
    """
    rng = np.random.default_rng(seed)
    shares = [(segment_train_indices(c.num_frames, NUM_SEGMENTS, rng).max() + 1) / c.num_frames
              for c in data.clips]
    return float(np.mean(shares))


def cpu_model():
    try:
        output = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    fields = dict(line.split(":", 1) for line in output.splitlines() if ":" in line)
    return f"{fields.get('Model name', '?').strip()}, {fields.get('CPU(s)', '?').strip()} CPUs"


def _torchcodec_version():
    if torchcodec_decoder()[0] is None:
        return f"unavailable ({torchcodec_decoder()[1]})"
    import torchcodec
    return torchcodec.__version__


def loader_rate(dataset, workers, clips):
    """Clips per wall second of a DataLoader with `workers` processes over `clips` clips, batch 1 (after
    the workers' start and first clip)."""
    loader = DataLoader(dataset, batch_size=1, num_workers=workers, sampler=range(clips + workers),
                        multiprocessing_context="fork")
    iterator = iter(loader)
    for _ in range(workers):
        next(iterator)
    start = time.perf_counter()
    for _ in iterator:
        pass
    return clips / (time.perf_counter() - start)


def training_flops_per_clip(arch):
    """FLOPs of one 8-frame clip in a training step (fixed text tower), counted on the meta device."""
    device = torch.device("meta")
    model, header, encoder = build(arch, NUM_SEGMENTS, INPUT_SIZE, device, False, False)
    texts = ClassTexts.build(encoder, text_prompt(list(CLASS_NAMES), tokenizer=encoder.tokenize), True, device,
                             contextlib.nullcontext)
    frames = torch.zeros(2, NUM_SEGMENTS, 3, INPUT_SIZE, INPUT_SIZE, device=device)
    labels = torch.arange(2, device=device)
    return counted_flops(lambda: training_step_loss(encoder, header, frames, labels, texts, "NCE").backward()) / 2


def print_cores_per_gpu(pipelines):
    """CPU cores per GPU each video path needs to keep one H100 busy, from its clips per CPU second."""
    print(f"\nclips one H100 trains on at {MFU:.0%} of its bf16 peak ({H100_BF16_PEAK / 1e12:.0f} TFLOP/s), "
          f"{NUM_SEGMENTS} frames, training-step FLOPs counted by FlopCounterMode:")
    lines = [p for p in pipelines if p.name.startswith(("video", "frames, train", NAIVE_TRAIN))
             and "normalize" not in p.name]
    for arch in ("ViT-B/16", "ViT-B/32"):
        flops = training_flops_per_clip(arch)
        gpu_rate = MFU * H100_BF16_PEAK / flops
        print(f"  {arch}: {flops / NUM_SEGMENTS / 1e9:.1f} GFLOP a frame, {gpu_rate:.0f} clips/s; CPU cores per GPU: "
              + ", ".join(f"{p.name.replace(', train', '')} {gpu_rate / _median_rates(p)[1]:.0f}" for p in lines))


def versions():
    names = {"torch": torch.__version__, "torchvision": torchvision.__version__, "PyAV": av.__version__,
             "TorchCodec": _torchcodec_version(),
             "decord": decord.__version__ if decord is not None else "not installed", "Pillow": PIL.__version__}
    return ", ".join(f"{name} {version}" for name, version in names.items())


def _median_rates(pipeline):
    return statistics.median(pipeline.wall_rates), statistics.median(pipeline.cpu_rates)


def print_table(pipelines):
    """Median clips per wall second and per CPU second, each also relative to the line's naive baseline."""
    by_name = {p.name: p for p in pipelines}
    print(f"\n{'pipeline':<44} {'clips/s':>8} {'vs naive':>9} {'clips/CPU-s':>12} {'vs naive':>9}   "
          f"rounds (clips/s)")
    for p in pipelines:
        wall, cpu = _median_rates(p)
        base_wall, base_cpu = _median_rates(by_name[p.baseline or p.name])
        rounds = " ".join(f"{rate:.1f}" for rate in p.wall_rates)
        print(f"{p.name:<44} {wall:>8.1f} {wall / base_wall:>8.2f}x {cpu:>12.1f} {cpu / base_cpu:>8.2f}x   {rounds}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="benchmark clips (generated if missing)")
    parser.add_argument("--clips", type=int, default=24, help="number of benchmark clips")
    parser.add_argument("--seconds", type=float, default=2.5, help="duration of one round of one pipeline")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the table gives the median")
    parser.add_argument("--no-test", action="store_true", help="skip the test-transform lines")
    parser.add_argument("--loader_clips", type=int, default=48, help="clips per DataLoader line; 0 skips them")
    parser.add_argument("--shard_size", type=byte_size, default=byte_size("64MB"), help="bytes per benchmark shard")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    random.seed(0)
    torch.manual_seed(0)
    data = ensure_bench_data(args.root, args.clips)
    with file_server_process(args.root) as server_url:  # the HTTP lines' server, on the loopback
        run_benchmark(args, data, server_url)


def run_benchmark(args, data, server_url):
    """The rounds of every line, the table, the ratios the acceptance names, the loader lines and cores per GPU."""
    pipelines = build_pipelines(data, include_test=not args.no_test) + shard_pipelines(data, args.shard_size,
                                                                                      server_url)
    for p in pipelines:  # warm-up: imports, decoder set-up, caches
        for index in range(2):
            p.load(index)
    print(f"date: {datetime.date.today()}  CPU: {cpu_model()}\n{versions()}")
    frames = [c.num_frames for c in data.clips]
    keyframes = keyframe_counts(data)
    print(f"data: {len(data.clips)} clips of {HEIGHT}x{WIDTH}, {min(frames)}-{max(frames)} frames "
          f"(mean {np.mean(frames):.0f}) at {FPS} fps, JPEG folders and H.264 MP4s with {min(keyframes)}-"
          f"{max(keyframes)} keyframes each (keyframed and prepared variants: {min(keyframe_counts(data, data.keyframed_root))}-"
          f"{max(keyframe_counts(data, data.keyframed_root))} and {min(keyframe_counts(data, data.prepared_root))}-"
          f"{max(keyframe_counts(data, data.prepared_root))}); {NUM_SEGMENTS} frames per clip, {INPUT_SIZE} crops, "
          f"1 thread")
    for round_index in range(args.rounds):
        for p in pipelines:
            p.run(args.seconds)
        print(f"round {round_index + 1}/{args.rounds} done", flush=True)
    print_table(pipelines)
    by_name = {p.name: p for p in pipelines}
    frames, naive = _median_rates(by_name[FRAMES_TRAIN]), _median_rates(by_name[NAIVE_TRAIN])
    print(f"\nframe path vs naive PIL (train): {frames[0] / naive[0]:.2f}x per wall second, "
          f"{frames[1] / naive[1]:.2f}x per CPU second (acceptance: at least 2x)")
    default = default_video_backend()
    for name in (f"video ({default}), train", f"video ({default}), prepared, train"):
        video = _median_rates(by_name[name])
        print(f"{name.replace(', train', '')} vs naive PIL (train): {video[0] / naive[0]:.2f}x per wall second, "
              f"{video[1] / naive[1]:.2f}x per CPU second (acceptance: at least 1x as generated, 2x prepared)")
    shards = _median_rates(by_name[FRAME_SHARDS])
    print(f"frame shards vs frame files (train), local disk: {shards[0] / frames[0]:.2f}x per wall second, "
          f"{shards[1] / frames[1]:.2f}x per CPU second (acceptance: at least 3x)")
    shards, files = _median_rates(by_name[FRAME_SHARDS_HTTP]), _median_rates(by_name[FRAMES_HTTP])
    print(f"frame shards vs frame files (train), HTTP: {shards[0] / files[0]:.2f}x per wall second, "
          f"{shards[1] / files[1]:.2f}x per CPU second (acceptance: at least 3x)")
    for where in ("local", "HTTP"):
        streamed, files = _median_rates(by_name[f"video ({default}) shards, {where}, train"]), \
            _median_rates(by_name[f"video ({default}), train"])
        print(f"video shards, {where}, vs video files on local disk (train): {streamed[1] / files[1]:.2f}x per CPU "
              f"second (acceptance, local: at least 1x)")
    print(f"video path: with {max(keyframes)} keyframe(s) per video the readers decode from a keyframe to the "
          f"last sampled frame ({100 * decoded_fraction(data):.0f}% of a video on average in training) but "
          f"convert and return only the {NUM_SEGMENTS} sampled frames; compare with the decode-all-frames lines")
    if args.loader_clips:
        print(f"\nDataLoader, batch 1, {args.loader_clips} clips (wall clock; the machine's other load counts):")
        lists = (("as generated", data.videos_root, data.videos_list), ("prepared", data.prepared_root,
                                                                         data.prepared_list))
        for name, root, video_list in lists:
            dataset = VideoDataset(video_list, data.labels, root, modality="video", num_segments=NUM_SEGMENTS,
                                   mode="train", transform=train_transform_for("kinetics400", INPUT_SIZE))
            rates = [f"{workers} worker{'s' * (workers > 1)} {loader_rate(dataset, workers, args.loader_clips):.1f}"
                     for workers in (1, 2)]
            print(f"  video ({default}), {name}: " + ", ".join(rates) + " clips/s")
    print_cores_per_gpu(pipelines)


if __name__ == "__main__":
    main()
