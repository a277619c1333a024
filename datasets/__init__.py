"""Video data pipeline: annotation lists -> sampled frame indices -> decoded uint8 clips -> crops.

Public API (everything a train/test loop needs):

- `VideoDataset(list_file, labels_file, root, *, num_segments, seg_length=1, modality=None,
  image_tmpl='img_{:05d}.jpg', index_bias=1, mode='train'|'val'|'test', random_shift=True,
  dense=False, test_clips=1, transform=None, skip_unreadable=False, shot=None, seed=0)`
  for frame lists `<dir> <num_frames> <label>` and video lists `<file> <label>` (ActivityNet lists
  are frame lists). Config keys map one to one: data.train_list/val_list -> list_file,
  data.label_list -> labels_file, data.train_root/val_root -> root, data.num_segments, data.seg_length,
  data.modality, data.image_tmpl, data.index_bias, data.random_shift, data.dense, data.shot, seed.
  modality None detects the list's format; a `<file> <label>` list is read as videos even under
  data.modality RGB (logged). Videos decode with TorchCodec where FFmpeg's libraries load, else
  PyAV (`video_backend='torchcodec'|'pyav'|'decord'` puts one first, `decode_device='cuda'` decodes
  on the GPU); frame folders with torchvision.io.
- `CharadesDataset(list_file, classes_file, root, *, fps=24, image_tmpl='{}-{:06d}.jpg', ...)`:
  same keywords; multi-hot float targets for Charades_v1_*.csv, int labels for action instances.
- Items: mode 'train'/'val' -> (uint8 [T, 3, H, W], label); mode 'test' -> (uint8
  [test_clips * crops, T, 3, H, W], label), views clip-major. T = num_segments * seg_length.
  `dataset.class_names` lists the class names by id; `dataset.num_skipped` counts skipped samples.
- Transforms: `train_transform_for(dataset_name, input_size, rand_augment=False)`,
  `test_transform(input_size, num_crops)`; in the loop `normalize_on_device(frames, device)` gives
  CLIP-normalised floats.
- Errors: `AnnotationError` (bad list/labels file, raised when the dataset is built) and
  `SampleReadError` (missing/corrupt frame or video, raised by `__getitem__`) name file and line.
"""
from datasets.annotations import AnnotationError, VideoRecord, load_class_names, select_few_shot
from datasets.charades import CharadesDataset
from datasets.decoding import SampleReadError
from datasets.transforms import (CLIP_MEAN, CLIP_STD, normalize_on_device, test_transform, train_transform,
                                 train_transform_for)
from datasets.video import VideoDataset

__all__ = [
    "AnnotationError", "CLIP_MEAN", "CLIP_STD", "CharadesDataset", "SampleReadError", "VideoDataset",
    "VideoRecord", "load_class_names", "normalize_on_device", "select_few_shot", "test_transform",
    "train_transform", "train_transform_for",
]
