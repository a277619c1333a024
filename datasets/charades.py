"""Charades: frame folders `<root>/<id>/<id>-000001.jpg`, labels from the Charades CSVs.

`Charades_v1_{train,test}.csv` give one item per video with a multi-hot float target over the classes
of `Charades_v1_classes.txt` (from the `actions` field). `Charades_train_split_label.csv`, which the
original trains on, gives one item per action instance: the frames between its start and end time
(at `fps` frames per second) with its single class id as an int label. Training uses TSN-style
sampling (`seg_length` consecutive frames per chunk; short instances use all their frames) as the
original; validation and test use the common deterministic sampling.
"""
import os

from datasets.annotations import read_charades_csv
from datasets.decoding import SampleReadError
from datasets.video import VideoDataset


class CharadesDataset(VideoDataset):
    """`VideoDataset` over a Charades CSV; frame folders are counted, since the CSVs give no counts."""

    tsn_train = True

    def __init__(self, list_file, labels_file, root="", *, fps=24, image_tmpl="{}-{:06d}.jpg", **kwargs):
        self.fps = fps
        kwargs.setdefault("min_train_frames", 0)  # short instances are sampled with repeats instead
        super().__init__(list_file, labels_file, root, image_tmpl=image_tmpl, **kwargs)

    def _read_records(self, list_file, modality):
        if modality not in (None, "auto", "RGB"):
            raise ValueError(f"Charades is read from frame folders (data.modality RGB), got {modality!r}")
        return "RGB", read_charades_csv(list_file, len(self.class_names), self.fps)

    def frame_count(self, record, folder):
        """Frames in the folder, or of the instance's time span clipped to the frames that exist."""
        try:
            available = len(os.listdir(folder))
        except FileNotFoundError:
            raise SampleReadError(f"frame folder {folder} does not exist") from None
        if record.num_frames is None:
            return available
        return min(record.num_frames, available - record.start_frame)
