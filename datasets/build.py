"""Datasets from a config: which class, list, root and transform each split uses."""
from datasets.charades import CharadesDataset
from datasets.shards import ShardDataset, is_manifest
from datasets.transforms import test_transform, train_transform_for
from datasets.video import VideoDataset


def is_charades(config) -> bool:
    return str(config.data.dataset).lower().startswith("charades")


def build_dataset(config, split: str, test_crops: int = 1, test_clips: int = 1, dense: bool = None):
    """split 'train' (augmented clips [T, 3, H, W]) or 'val' / 'test' (views [V, T, 3, H, W], V = clips x crops).

    'val' is the one-view validation of training; 'test' the multi-view protocol of test.py.
    """
    data = config.data
    common = dict(num_segments=data.num_segments, seg_length=data.seg_length, index_bias=data.index_bias,
                  dense=data.dense if dense is None else dense, seed=config.seed, video_backend=data.video_backend,
                  decode_device=data.decode_device)
    if data.modality and not is_charades(config):
        common["modality"] = data.modality
    if split == "train":
        arguments = dict(list_file=data.train_list, root=data.train_root, mode="train",
                         random_shift=data.random_shift, shot=data.shot or None,
                         skip_unreadable=data.skip_unreadable,
                         transform=train_transform_for(data.dataset, data.input_size, data.rand_augment,
                                                       data.flip, data.min_crop_scale))
    else:
        arguments = dict(list_file=data.val_list, root=data.val_root, mode="test", test_clips=test_clips,
                         transform=test_transform(data.input_size, test_crops))
    if is_manifest(arguments["list_file"]):
        return shard_dataset(config, split, arguments, common)
    if is_charades(config):
        return CharadesDataset(labels_file=data.label_list, fps=data.fps or 24, image_tmpl=data.image_tmpl,
                               **arguments, **common)
    return VideoDataset(labels_file=data.label_list, image_tmpl=data.image_tmpl, **arguments, **common)


def shard_dataset(config, split, arguments, common):
    """The ShardDataset of a list that names a manifest (few-shot: utils.config refuses)."""
    clips = {name: value for name, value in {**arguments, **common}.items()
             if name in ("mode", "random_shift", "test_clips", "transform", "num_segments", "seg_length", "dense",
                         "video_backend", "decode_device")}
    return ShardDataset(arguments["list_file"], config.data.label_list, seed=config.seed,
                        skip_unreadable=arguments.get("skip_unreadable", False),
                        shuffle_buffer=config.data.shuffle_buffer, tsn_train=split == "train" and is_charades(config),
                        **clips)
