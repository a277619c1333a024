"""Clip transforms: one crop for all frames, test-time crops at the original offsets, PIL-like resize."""
import numpy as np
import pytest
import torch
from PIL import Image

from datasets import transforms  # test_transform imported by name would be collected as a test
from datasets.transforms import (MultiCrop, multi_crop_offsets, normalize_on_device, train_transform,
                                 train_transform_for)


def smooth_image(height, width, seed=0):
    """Realistic-looking uint8 [3, H, W]: upsampled noise, no hard edges."""
    noise = np.random.RandomState(seed).randint(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    return torch.from_numpy(np.array(Image.fromarray(noise).resize((width, height), Image.BILINEAR))).permute(2, 0, 1)


def ramp_clip(frames=3, height=40, width=60):
    """R = column, G = row: every pixel shows where it came from."""
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    frame = torch.stack([xs, ys, torch.zeros_like(xs)]).to(torch.uint8)
    return frame.expand(frames, -1, -1, -1).clone()


def test_train_transform_uses_one_crop_flip_grayscale_and_randaugment_for_all_frames():
    torch.manual_seed(0)
    clip = smooth_image(40, 60).expand(4, -1, -1, -1).clone()
    transform = train_transform(32, rand_augment=True)
    for _ in range(30):
        out = transform(clip)
        assert out.shape == (4, 3, 32, 32) and out.dtype == torch.uint8
        assert all(torch.equal(out[0], frame) for frame in out[1:])


def test_frames_that_differ_get_the_same_crop():
    torch.manual_seed(1)
    base = smooth_image(40, 60) // 2  # 0..127, so adding 10 per frame never clips
    clip = torch.stack([base + 10 * k for k in range(4)])
    transform = train_transform(32, grayscale_p=0.0)
    for _ in range(10):
        out = transform(clip).int()
        for k in range(1, 4):
            assert (out[k] - out[0] - 10 * k).abs().max() <= 1


def test_random_resized_crop_varies_between_calls():
    torch.manual_seed(2)
    clip = smooth_image(40, 60)[None]
    outputs = {train_transform(32)(clip).sum().item() for _ in range(5)}
    assert len(outputs) == 5


def left_to_right_increasing(out):
    return bool(out[0, 0, :, -1].float().mean() > out[0, 0, :, 0].float().mean())


def test_something_something_clips_are_never_flipped_or_grayed():
    torch.manual_seed(3)
    clip = ramp_clip(2, 64, 64) * 3
    for dataset, expect_flips in (("something-v2", False), ("k400", True)):
        transform = train_transform_for(dataset, 32)
        outs = [transform(clip) for _ in range(40)]
        flipped = [not left_to_right_increasing(out) for out in outs]
        grayed = [bool((out[:, 2] > 0).any()) for out in outs]  # blue stays 0 unless grayscale mixes R, G
        assert any(flipped) == expect_flips and any(grayed) == expect_flips


def test_crop_offsets_match_the_original_grid():
    # 341x256 resized frame, 224 crops: quarter steps (341-224)//4 = 29, (256-224)//4 = 8
    assert multi_crop_offsets(341, 256, 224, 1) == [(58, 16)]  # round(58.5) = 58, as torchvision
    assert multi_crop_offsets(341, 256, 224, 3) == [(0, 16), (116, 16), (58, 16)]
    assert multi_crop_offsets(341, 256, 224, 5) == [(0, 0), (116, 0), (0, 32), (116, 32), (58, 16)]
    with pytest.raises(ValueError, match="crops"):
        multi_crop_offsets(341, 256, 224, 4)


def test_multi_crop_cuts_every_frame_at_each_offset_and_adds_flips_for_ten():
    clip = ramp_clip(frames=3, height=40, width=60)
    views = MultiCrop(24, num_crops=10)(clip)
    assert views.shape == (10, 3, 3, 24, 24)
    # 60x40 frame: steps (60-24)//4 = 9, (40-24)//4 = 4
    expected = [(0, 0), (36, 0), (0, 16), (36, 16), (18, 8)]
    for k, (left, top) in enumerate(expected):
        normal, flipped = views[2 * k], views[2 * k + 1]
        assert normal[:, 0, 0, 0].tolist() == [left] * 3 and normal[:, 1, 0, 0].tolist() == [top] * 3
        assert torch.equal(flipped, normal.flip(-1))


def test_test_transform_resizes_like_pil_bicubic_then_centre_crops():
    image = smooth_image(64, 96, seed=4)
    views = transforms.test_transform(48, num_crops=1)(image[None])
    assert views.shape == (1, 1, 3, 48, 48)
    pil = Image.fromarray(image.permute(1, 2, 0).numpy()).resize((72, 48), Image.BICUBIC).crop((12, 0, 60, 48))
    difference = (views[0, 0].permute(1, 2, 0).int() - torch.from_numpy(np.array(pil)).int()).abs()
    assert difference.max() <= 2 and difference.float().mean() < 0.1


def test_short_side_resize_keeps_aspect_ratio_before_crops():
    image = smooth_image(56, 80)[None]
    views = transforms.test_transform(32, num_crops=3)(image)  # 56x80 -> 32x45, 3 crops of 32
    assert views.shape == (3, 1, 3, 32, 32)
    assert not torch.equal(views[0], views[1])


def test_normalize_on_device_uses_clip_mean_and_std():
    frames = torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 2, 1, 1).expand(1, 1, 2, 3, 1)
    frames = frames.permute(0, 1, 3, 2, 4).contiguous()  # [B=1, T=1, C=3, H=2, W=1]
    out = normalize_on_device(frames)
    assert out.dtype == torch.float32 and out.shape == frames.shape
    assert out[0, 0, 0, :, 0].tolist() == pytest.approx([-0.48145466 / 0.26862954, (1 - 0.48145466) / 0.26862954])
    assert out[0, 0, 2, 1, 0].item() == pytest.approx((1 - 0.40821073) / 0.27577711)
    assert normalize_on_device(frames, dtype=torch.bfloat16).dtype == torch.bfloat16
