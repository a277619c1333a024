"""HMDB-51: `<class>_test_split<k>.txt` files (testTrainMulti_7030_splits) with 1 = train, 2 = test, 0 = unused."""
import re
from pathlib import Path

from tools.extract_frames import frame_folder_name
from tools.annotations.common import ConversionError, list_kind, numbered_lines, write_entries, write_labels_csv

SPLIT_FILE = re.compile(r"(?P<name>.+)_test_split(?P<split>\d+)\.txt")
SUBSETS = {"0": None, "1": "train", "2": "val"}


def split_files(annotations_dir, split):
    """{class folder name: split file} for one split, classes sorted (their order gives the label ids)."""
    files = {}
    for path in Path(annotations_dir).iterdir():
        match = SPLIT_FILE.fullmatch(path.name)
        if match and int(match["split"]) == split:
            files[match["name"]] = path
    if not files:
        raise ConversionError(f"no HMDB-51 split files <class>_test_split{split}.txt in {annotations_dir}")
    return dict(sorted(files.items()))  # by class name: climb < climb_stairs, unlike their file names


def read_split(files):
    """{'train': [...], 'val': [...], 'all': [...]} of (video, label), sorted by label then video."""
    subsets = {"train": [], "val": [], "all": []}
    for label, (name, path) in enumerate(files.items()):
        for number, text in numbered_lines(path, "HMDB-51 split file"):
            fields = text.split()
            if len(fields) != 2 or fields[1] not in SUBSETS:
                raise ConversionError(f"{path}:{number}: expected `<video>.avi <0|1|2>`, got {text!r}")
            entry = (f"{name}/{fields[0]}", label)
            subsets["all"].append(entry)
            if SUBSETS[fields[1]]:
                subsets[SUBSETS[fields[1]]].append(entry)
    return {subset: sorted(entries, key=lambda entry: (entry[1], frame_folder_name(entry[0])))
            for subset, entries in subsets.items()}


def convert_hmdb51(annotations_dir, out_dir, splits=(1, 2, 3), frames_root=None, skip_missing=False):
    """Write hmdb51_labels.csv ('brush hair', ...), {train,val}_{rgb,video}_split_<k>.txt and the full list.

    Class ids follow the sorted class folder names; the full list holds every video of split 1's files.
    Returns the written paths.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    kind = list_kind(frames_root)
    classes, written = None, [out_dir / "hmdb51_labels.csv"]
    for split in splits:
        files = split_files(annotations_dir, split)
        if classes is not None and list(files) != classes:
            raise ConversionError(f"{annotations_dir}: split {split} has other classes than split {splits[0]}")
        classes = list(files)
        subsets = read_split(files)
        for subset in ("train", "val"):
            written.append(write_entries(out_dir / f"{subset}_{kind}_split_{split}.txt", subsets[subset],
                                         frames_root, skip_missing))
        if split == 1:
            full = out_dir / ("hmdb_full_for_zeroshot.txt" if kind == "rgb" else "hmdb_full_for_zeroshot_video.txt")
            written.append(write_entries(full, subsets["all"], frames_root, skip_missing))
    write_labels_csv(written[0], [name.replace("_", " ") for name in classes])
    return written
