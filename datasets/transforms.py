"""Clip transforms on uint8 tensors [T, C, H, W], and CLIP normalisation on the device.

torchvision's v2 transforms treat the leading T dimension as a batch and draw their random
parameters once per call, so every frame of a clip gets the same crop, flip, grayscale and
RandAugment operations. Data workers return uint8 crops; `normalize_on_device` makes them float.

train: resize the short side to `scale_size_for(input_size)` (bicubic, antialiased), random-resized
crop to `input_size` (scale 0.08-1, ratio 3/4-4/3), horizontal flip, grayscale with p=0.2,
optional RandAugment. Flip and grayscale are off for Something-Something-like data, where
flipping swaps left/right labels.
test: resize the short side, then 1 (center), 3 (left/right/center), 5 (corners + center) or
10 (those 5 and their flips) crops, stacked as [crops, T, C, input_size, input_size].
"""
import functools

import torch
from torchvision.transforms import v2

from clip.clip import CLIP_MEAN, CLIP_STD
TEST_CROPS = (1, 3, 5, 10)


def scale_size_for(input_size):
    """Short side before cropping: 256 for 224 crops, else the crop size itself (as the original)."""
    return 256 if input_size == 224 else input_size


def flip_changes_label(dataset_name):
    """Something-Something-like datasets have left/right classes, so flipping would change the label."""
    return "something" in str(dataset_name).lower()


def _resize_short_side(size):
    return v2.Resize(size, interpolation=v2.InterpolationMode.BICUBIC, antialias=True)


def train_transform(input_size, flip=True, grayscale_p=0.2, rand_augment=False, min_crop_scale=0.08):
    """Training augmentation for one clip [T, C, H, W] uint8 -> [T, C, input_size, input_size] uint8."""
    steps = [
        _resize_short_side(scale_size_for(input_size)),
        v2.RandomResizedCrop(input_size, scale=(min_crop_scale, 1.0), ratio=(3 / 4, 4 / 3), antialias=True),
    ]
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    if grayscale_p:
        steps.append(v2.RandomGrayscale(p=grayscale_p))
    if rand_augment:
        steps.append(v2.RandAugment())
    return v2.Compose(steps)


def train_transform_for(dataset_name, input_size, rand_augment=False, flip=None, min_crop_scale=0.08):
    """`train_transform` with flip and grayscale disabled for Something-Something-like datasets.

    `flip` True/False overrides that choice for the flip (e.g. off for data with left/right classes).
    """
    plain = not flip_changes_label(dataset_name)
    return train_transform(input_size, flip=plain if flip is None else flip, grayscale_p=0.2 if plain else 0.0,
                           rand_augment=rand_augment, min_crop_scale=min_crop_scale)


def multi_crop_offsets(width, height, crop_size, num_crops):
    """(left, top) of each test crop; the flipped views of 10 crops reuse the 5 corner/center offsets.

    1: torchvision's center crop. 3: left, right, center at mid height. 5: upper left, upper right,
    lower left, lower right, center, on a grid of quarter steps `(size - crop) // 4` as the original.
    """
    if num_crops not in TEST_CROPS:
        raise ValueError(f"test crops must be one of {TEST_CROPS}, got {num_crops}")
    if width < crop_size or height < crop_size:
        raise ValueError(f"crop {crop_size} is larger than the resized frame {width}x{height}")
    if num_crops == 1:
        return [(int(round((width - crop_size) / 2.0)), int(round((height - crop_size) / 2.0)))]
    w_step, h_step = (width - crop_size) // 4, (height - crop_size) // 4
    if num_crops == 3:
        return [(0, 2 * h_step), (4 * w_step, 2 * h_step), (2 * w_step, 2 * h_step)]
    return [(0, 0), (4 * w_step, 0), (0, 4 * h_step), (4 * w_step, 4 * h_step), (2 * w_step, 2 * h_step)]


class MultiCrop(torch.nn.Module):
    """Fixed test-time crops of a clip [T, C, H, W] -> [crops, T, C, size, size].

    With 10 crops every crop is followed by its horizontal flip.
    """

    def __init__(self, size, num_crops=1):
        super().__init__()
        multi_crop_offsets(size, size, size, num_crops)  # validates num_crops early
        self.size, self.num_crops = size, num_crops

    def forward(self, clip):
        height, width = clip.shape[-2:]
        views = []
        for left, top in multi_crop_offsets(width, height, self.size, self.num_crops):
            crop = clip[..., top:top + self.size, left:left + self.size]
            views.append(crop)
            if self.num_crops == 10:
                views.append(crop.flip(-1))
        return torch.stack(views)


def test_transform(input_size, num_crops=1):
    """Test views of one clip [T, C, H, W] uint8 -> [num_crops, T, C, input_size, input_size] uint8."""
    return v2.Compose([_resize_short_side(scale_size_for(input_size)), MultiCrop(input_size, num_crops)])


@functools.lru_cache(maxsize=None)
def _clip_mean_std(device: torch.device):
    """CLIP's mean and std [3, 1, 1] on `device`, made once per device rather than copied there every batch."""
    return (torch.tensor(CLIP_MEAN, device=device).view(3, 1, 1),
            torch.tensor(CLIP_STD, device=device).view(3, 1, 1))


def normalize_on_device(frames, device=None, dtype=torch.float32):
    """uint8 frames [..., C, H, W] -> CLIP-normalised `dtype` on `device` (C is the third-last dim)."""
    frames = frames.to(device, non_blocking=True).float().div_(255)
    mean, std = _clip_mean_std(frames.device)
    return frames.sub_(mean).div_(std).to(dtype)
