"""Frame-index sampling against hand-computed index lists (the original BIKE semantics)."""
import numpy as np
import pytest

from datasets.sampling import (ClipSampler, dense_test_indices, dense_train_indices, dense_val_indices,
                               segment_test_indices, segment_train_indices, segment_val_indices,
                               tsn_train_indices)


def draws(sample, times=2000, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([sample(rng) for _ in range(times)])


def values_per_position(samples):
    return [sorted(set(column.tolist())) for column in samples.T]


def test_train_segments_use_rounded_borders_half_to_even():
    # (10 - 1) / 4 = 2.25 -> borders round(0, 2.25, 4.5, 6.75, 9) = 0, 2, 4, 7, 9 (4.5 rounds to 4)
    samples = draws(lambda rng: segment_train_indices(10, 4, rng))
    assert values_per_position(samples) == [[0, 1, 2], [2, 3, 4], [4, 5, 6, 7], [7, 8, 9]]


def test_train_segments_of_a_video_shorter_than_the_segments():
    # (3 - 1) / 8 = 0.25 -> borders 0, 0, 0(0.5), 1, 1, 1, 2(1.5), 2, 2
    samples = draws(lambda rng: segment_train_indices(3, 8, rng))
    assert values_per_position(samples) == [[0], [0], [0, 1], [1], [1], [1, 2], [2], [2]]
    assert draws(lambda rng: segment_train_indices(1, 4, rng), times=5).max() == 0


def test_train_segments_are_reproducible_from_the_generator():
    first = segment_train_indices(100, 8, np.random.default_rng(7))
    assert np.array_equal(first, segment_train_indices(100, 8, np.random.default_rng(7)))


@pytest.mark.parametrize("num_frames, num_segments, expected", [
    (10, 4, [0, 2, 5, 7]),                                 # tick 2.5
    (300, 8, [0, 37, 75, 112, 150, 187, 225, 262]),        # tick 37.5
    (3, 8, [0, 0, 0, 1, 1, 1, 2, 2]),                      # tick 0.375: frames repeat
])
def test_val_indices(num_frames, num_segments, expected):
    assert segment_val_indices(num_frames, num_segments).tolist() == expected


def test_test_clips_shift_the_grid_by_evenly_spaced_starts():
    # tick 2.5, starts trunc(linspace(0, 1.5, 3)) = 0, 0, 1
    assert segment_test_indices(10, 4, 3).tolist() == [[0, 2, 5, 7], [0, 2, 5, 7], [1, 3, 6, 8]]
    # tick 7.5, starts trunc(linspace(0, 6.5, 4)) = 0, 2, 4, 6; clip k = int(start + 7.5 * x)
    assert segment_test_indices(30, 4, 4).tolist() == [
        [0, 7, 15, 22], [2, 9, 17, 24], [4, 11, 19, 26], [6, 13, 21, 28]]


def test_test_clips_of_short_video_start_at_zero_as_with_numpy_1():
    # tick - 1 = -0.625: numpy 2's integer linspace would floor the second start to -1
    assert segment_test_indices(3, 8, 2).tolist() == [[0, 0, 0, 1, 1, 1, 2, 2]] * 2


def test_dense_train_start_covers_the_whole_room_before_the_window():
    samples = draws(lambda rng: dense_train_indices(200, 8, rng), times=3000)
    starts = samples[:, 0]
    assert np.array_equal(samples, starts[:, None] + 16 * np.arange(8))  # interval 128 // 8
    assert starts.min() == 0 and starts.max() == 200 - 128 - 1
    assert len(set(starts.tolist())) == 72


@pytest.mark.parametrize("num_frames", [50, 128, 129])
def test_dense_train_of_video_not_longer_than_window_plus_one_starts_at_zero(num_frames):
    samples = draws(lambda rng: dense_train_indices(num_frames, 8, rng), times=20)
    expected = [(16 * k) % num_frames for k in range(8)]
    assert samples.tolist() == [expected] * 20


def test_dense_indices_wrap_around_short_videos():
    assert dense_val_indices(50, 8).tolist() == [0, 16, 32, 48, 14, 30, 46, 12]
    assert dense_test_indices(50, 8, 2).tolist() == [[0, 16, 32, 48, 14, 30, 46, 12]] * 2


def test_dense_test_clips_spread_over_the_room():
    # room 300 - 128 = 172, clip starts k * (172 // 2) = 0, 86, 172
    clips = dense_test_indices(300, 8, 3)
    assert clips[:, 0].tolist() == [0, 86, 172]
    assert clips[2].tolist() == [172 + 16 * k for k in range(8)]


def test_dense_val_is_the_centred_window():
    assert dense_val_indices(300, 8).tolist() == [86 + 16 * k for k in range(8)]


def test_tsn_chunks_give_runs_of_seg_length_frames():
    # 20 frames, 4 chunks of 5: each run of 2 starts in [5k, 5k + 3]
    samples = draws(lambda rng: tsn_train_indices(20, 4, rng, seg_length=2)).reshape(-1, 4, 2)
    assert np.all(samples[..., 1] == samples[..., 0] + 1)
    assert values_per_position(samples[..., 0]) == [[5 * k + s for s in range(4)] for k in range(4)]


def test_tsn_uneven_chunks():
    # 10 frames, 4 chunks: borders 0, 2, 5, 7, 10 -> room 1, 2, 1, 2 for runs of 2
    samples = draws(lambda rng: tsn_train_indices(10, 4, rng, seg_length=2)).reshape(-1, 4, 2)
    assert values_per_position(samples[..., 0]) == [[0], [2, 3], [5], [7, 8]]


def test_tsn_short_video_uses_every_frame_and_random_extras_sorted():
    for clip in draws(lambda rng: tsn_train_indices(6, 4, rng, seg_length=2), times=50):
        assert len(clip) == 8 and np.all(np.diff(clip) >= 0)
        assert set(clip.tolist()) == set(range(6))


def test_seg_length_expands_each_index_and_caps_at_the_last_frame():
    assert segment_val_indices(10, 4, seg_length=3).tolist() == [0, 1, 2, 2, 3, 4, 5, 6, 7, 7, 8, 9]
    assert segment_val_indices(8, 4, seg_length=3).tolist() == [0, 1, 2, 2, 3, 4, 4, 5, 6, 6, 7, 7]
    assert segment_test_indices(10, 4, 3, seg_length=2).shape == (3, 8)


def test_clip_sampler_dispatch():
    rng = np.random.default_rng(0)
    sampler = ClipSampler(num_segments=4, num_clips=3)
    assert sampler(10, "val").tolist() == [[0, 2, 5, 7]]
    assert sampler(10, "test").tolist() == [[0, 2, 5, 7], [0, 2, 5, 7], [1, 3, 6, 8]]
    assert ClipSampler(4, random_shift=False)(10, "train", rng).tolist() == [[0, 2, 5, 7]]
    assert ClipSampler(8, dense=True)(50, "val").tolist() == [[0, 16, 32, 48, 14, 30, 46, 12]]
    assert ClipSampler(8, dense=True, num_clips=3)(300, "test")[:, 0].tolist() == [0, 86, 172]
    trained = ClipSampler(4)(10, "train", rng)[0]
    assert all(low <= i <= high for i, (low, high) in zip(trained, [(0, 2), (2, 4), (4, 7), (7, 9)]))


@pytest.mark.parametrize("call, message", [
    (lambda: ClipSampler(4)(10, "eval"), "mode"),
    (lambda: ClipSampler(4)(10, "train"), "random generator"),
    (lambda: segment_val_indices(0, 4), "num_frames"),
    (lambda: segment_test_indices(10, 4, 0), "num_clips"),
])
def test_invalid_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()
