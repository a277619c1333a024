"""UCF-101: classInd.txt + trainlist0k.txt / testlist0k.txt (the ucfTrainTestlist folder)."""
from pathlib import Path

from tools.annotations.common import ConversionError, list_kind, numbered_lines, write_entries, write_labels_csv


def read_class_index(path):
    """Class names by id (0-based) from classInd.txt lines `1 ApplyEyeMakeup`."""
    names = []
    for number, text in numbered_lines(path, "UCF-101 class index"):
        fields = text.split()
        if len(fields) != 2 or fields[0] != str(len(names) + 1):
            raise ConversionError(f"{path}:{number}: expected `{len(names) + 1} <ClassName>`, got {text!r}")
        names.append(fields[1])
    if not names:
        raise ConversionError(f"UCF-101 class index {path} is empty")
    return names


def read_split_file(path, names):
    """(video, label) entries of a trainlist (`Class/v_Class_g08_c01.avi 1`) or testlist (no number)."""
    ids = {name: index for index, name in enumerate(names)}
    entries = []
    for number, text in numbered_lines(path, "UCF-101 split file"):
        fields = text.split()
        where = f"{path}:{number}"
        folder = fields[0].split("/")[0]
        if len(fields) > 2 or "/" not in fields[0] or folder not in ids:
            raise ConversionError(f"{where}: expected `<Class>/<video>.avi [class number]` with a class of "
                                  f"classInd.txt, got {text!r}")
        if len(fields) == 2 and fields[1] != str(ids[folder] + 1):
            raise ConversionError(f"{where}: class number {fields[1]} disagrees with folder {folder} "
                                  f"(number {ids[folder] + 1} in classInd.txt)")
        entries.append((fields[0], ids[folder]))
    return entries


def convert_ucf101(annotations_dir, out_dir, splits=(1, 2, 3), frames_root=None, skip_missing=False):
    """Write ucf_labels.csv, {train,val}_{rgb,video}_split_<k>.txt and the full list (train + val of split 1).

    Returns the written paths.
    """
    annotations_dir, out_dir = Path(annotations_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = read_class_index(annotations_dir / "classInd.txt")
    kind = list_kind(frames_root)
    written = [out_dir / "ucf_labels.csv"]
    write_labels_csv(written[0], names)
    lists = {}
    for split in splits:
        for subset, official in (("train", "trainlist"), ("val", "testlist")):
            entries = read_split_file(annotations_dir / f"{official}{split:02d}.txt", names)
            lists[subset, split] = entries
            written.append(write_entries(out_dir / f"{subset}_{kind}_split_{split}.txt", entries, frames_root,
                                         skip_missing))
    if 1 in splits:
        full = out_dir / ("ucf_full_for_zeroshot.txt" if kind == "rgb" else "ucf_full_for_zeroshot_video.txt")
        written.append(write_entries(full, lists["train", 1] + lists["val", 1], frames_root, skip_missing))
    return written
