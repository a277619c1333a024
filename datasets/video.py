"""Single-label video recognition datasets over frame folders or video files.

A list line names a frame folder (`<dir> <num_frames> <label>`, frames `image_tmpl.format(k)` with
`k = index + index_bias`) or a video file (`<file> <label>`, frames decoded by index). Only the
sampled frames are decoded. Items are `(frames, label)`:

- mode 'train' / 'val': frames = transform(clip), by default uint8 [T, 3, H, W];
- mode 'test': frames = the transformed views of `test_clips` clips concatenated along a new first
  dimension, [test_clips * crops, T, 3, H, W] with the crops of clip 0 first (clip-major); without a
  transform the raw clips [test_clips, T, 3, H, W];
T = num_segments * seg_length. Labels are ints (multi-hot float tensors for multi-label data).
"""
import logging
import multiprocessing
import os

import numpy as np
import torch
from torch.utils.data import Dataset

from datasets.annotations import list_modality, load_class_names, read_video_list, select_few_shot
from datasets.decoding import (FrameFolder, SampleReadError, VideoBackendError, open_video, reader_order,
                               template_field_count)
from datasets.sampling import SAMPLING_MODES, ClipSampler

logger = logging.getLogger(__name__)

MIN_TRAIN_FRAMES = 8  # the original drops shorter frame folders from training lists
MAX_SKIP_ATTEMPTS = 10


class VideoClips:
    """What a video dataset is, wherever its bytes come from (files named by a list, or shards): the classes,
    the frame sampling, the decoding of the sampled frames only, and the transform.

    mode: 'train' (random sampling when `random_shift`), 'val' (one deterministic clip) or 'test'
    (`test_clips` deterministic clips). dense: I3D-style sampling in a 128-frame window. video_backend:
    'auto' (None), 'torchcodec', 'pyav' or 'decord' (see datasets.decoding.open_video). decode_device 'cuda'
    decodes on the GPU in the process that reads the dataset (no loader workers: CUDA does not survive a
    fork) and yields GPU tensors; the reader is checked here, so a machine that cannot do it fails before
    the first batch.
    """

    tsn_train = False  # Charades trains with TSN-style chunks

    def __init__(self, labels_file, *, num_segments=8, seg_length=1, mode="train", random_shift=True, dense=False,
                 test_clips=1, transform=None, video_backend=None, decode_device="cpu"):
        if mode not in SAMPLING_MODES:
            raise ValueError(f"mode must be one of {SAMPLING_MODES}, got {mode!r}")
        self.mode, self.transform = mode, transform
        self.video_backend, self.decode_device = video_backend, decode_device
        self.sampler = ClipSampler(num_segments, seg_length, dense=dense, random_shift=random_shift,
                                   num_clips=test_clips if mode == "test" else 1, tsn_train=self.tsn_train)
        self.labels_file, self.class_names = labels_file, load_class_names(labels_file)
        # A spawn-context lock may be shared with workers of any start method (a fork-context one may not).
        self._skipped = multiprocessing.get_context("spawn").Value("i", 0)

    def _check_readers(self, modality, image_tmpl=None):
        """Fails now if the frames of `modality` cannot be decoded here as configured."""
        if modality == "RGB":
            if image_tmpl is not None:
                template_field_count(image_tmpl)  # a template without a frame-number field is an error now
            if self.decode_device == "cuda" and not torch.cuda.is_available():
                raise VideoBackendError("decode device cuda: this PyTorch sees no CUDA device "
                                        "(torch.cuda.is_available() is False); decode on the cpu")
        else:
            reader_order(self.video_backend, self.decode_device)

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def num_skipped(self):
        """Samples replaced because they could not be read, summed over all DataLoader workers."""
        return self._skipped.value

    def _rng(self):
        # Drawn from torch's generator, which the loader seeds for every sample (datasets.seeded, datasets.shards).
        return np.random.default_rng(int(torch.randint(2**62, ())))

    def sample_clips(self, frames, name):
        """uint8 [clips, T, 3, H, W] of the sampled indices of `frames`: an opened video, a FrameFolder or
        EncodedFrames (len() frames, get_frames(indices)); `name` names it in errors."""
        if len(frames) < 1:
            raise SampleReadError(f"{name} has no frames")
        indices = self.sampler(len(frames), self.mode, self._rng() if self.mode == "train" else None)
        decoded = frames.get_frames(indices.reshape(-1))
        return decoded.reshape(indices.shape + decoded.shape[1:])

    def _output(self, clips):
        if self.mode != "test":
            clip = clips[0]
            return self.transform(clip) if self.transform else clip
        if self.transform is None:
            return clips
        return torch.cat([self.transform(clip) for clip in clips])


def multi_hot(labels, num_classes):
    """The float [num_classes] target of a multi-label sample."""
    target = torch.zeros(num_classes)
    target[list(labels)] = 1.0
    return target


class VideoDataset(VideoClips, Dataset):
    """Frames or videos listed in `list_file`, classes named in `labels_file` (sampling, decoding and
    transform: VideoClips).

    root: folder the list's paths are relative to. modality: 'RGB' (frame folders), 'video' (files)
    or None to detect it from the list. shot: keep `shot` videos per class (seeded by `seed`).
    skip_unreadable (training only): replace a sample that cannot be read by the next readable one,
    logging and counting it (`num_skipped`); otherwise, and always outside training, raise
    `SampleReadError` naming the file and list line.
    """

    def __init__(self, list_file, labels_file, root="", *, num_segments=8, seg_length=1, modality=None,
                 image_tmpl="img_{:05d}.jpg", index_bias=1, mode="train", random_shift=True, dense=False,
                 test_clips=1, transform=None, skip_unreadable=False, shot=None, seed=0,
                 min_train_frames=MIN_TRAIN_FRAMES, video_backend=None, decode_device="cpu"):
        super().__init__(labels_file, num_segments=num_segments, seg_length=seg_length, mode=mode,
                         random_shift=random_shift, dense=dense, test_clips=test_clips, transform=transform,
                         video_backend=video_backend, decode_device=decode_device)
        if skip_unreadable and mode != "train":
            raise ValueError("skip_unreadable is for training only; evaluation never substitutes samples")
        self.list_file, self.root = list_file, root
        self.image_tmpl, self.index_bias, self.skip_unreadable = image_tmpl, index_bias, skip_unreadable
        self.modality, records = self._read_records(list_file, modality)
        self._check_readers(self.modality, image_tmpl)
        if mode == "train":
            records = self._drop_short(records, min_train_frames)
        if shot:
            records = select_few_shot(records, shot, seed)
        self.records = records
        logger.info("%s: %d videos, %d classes, modality %s, mode %s", list_file, len(records),
                    len(self.class_names), self.modality, mode)

    def _read_records(self, list_file, modality):
        modality = list_modality(list_file, modality)
        return modality, read_video_list(list_file, len(self.class_names), modality)

    def _drop_short(self, records, min_frames):
        kept = [r for r in records if r.num_frames is None or r.num_frames >= min_frames]
        if len(kept) < len(records):
            logger.info("%s: training skips %d videos with fewer than %d frames",
                        self.list_file, len(records) - len(kept), min_frames)
        return kept

    @property
    def multi_label(self):
        """Whether targets are multi-hot [num_classes] vectors rather than class ids."""
        return bool(self.records) and isinstance(self.records[0].label, tuple)

    def __len__(self):
        return len(self.records)

    @property
    def list_size(self):
        """Samples in the whole list (all processes; a shard dataset's len() is one process's share)."""
        return len(self.records)

    def __getitem__(self, index):
        first_error = None
        for attempt in range(MAX_SKIP_ATTEMPTS + 1 if self.skip_unreadable else 1):
            record = self.records[(index + attempt) % len(self.records)]
            try:
                return self._output(self._load_clips(record)), self._target(record)
            except SampleReadError as err:
                located = SampleReadError(f"{record.where}: {err}")
                if not self.skip_unreadable:
                    raise located from err
                first_error = first_error or located
                with self._skipped.get_lock():
                    self._skipped.value += 1
                logger.warning("skipping unreadable sample (%d skipped so far): %s", self.num_skipped, located)
        raise SampleReadError(f"{MAX_SKIP_ATTEMPTS + 1} consecutive unreadable samples from index {index}; "
                              f"first: {first_error}")

    def _target(self, record):
        return multi_hot(record.label, self.num_classes) if isinstance(record.label, tuple) else record.label

    def frame_count(self, record, folder):
        """Frames of a frame-folder record; the list gives them (Charades counts the folder)."""
        return record.num_frames

    def frames_of(self, record):
        """The record's frames, read like a video (len(), get_frames(indices)), and the path naming them."""
        path = os.path.join(self.root, record.path)
        if self.modality == "video":
            return open_video(path, self.video_backend, self.decode_device), path
        return FrameFolder(path, self.image_tmpl, self.frame_count(record, path),
                           record.start_frame + self.index_bias, self.decode_device), path

    def _load_clips(self, record):
        """uint8 frames [clips, T, 3, H, W] of the sampled indices."""
        return self.sample_clips(*self.frames_of(record))
