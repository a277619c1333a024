"""Parsing annotation files: class-name files, video lists, Charades CSVs; few-shot selection.

Formats (see lists/README.md):
- class names: CSV with header `id,name`, or Charades' `c000 Holding some clothes` lines;
- frame lists (`data.modality: RGB`): `<dir> <num_frames> <label>` per line;
- video lists (`data.modality: video`): `<file> <label>` per line (a frame count in between is ignored);
- Charades: `Charades_v1_{train,test}.csv` (one video per row, `actions` field `c092 11.90 21.20;...`,
  multi-label) or `Charades_train_split_label.csv` (one action instance per row with its time span).
Every error names the file and, where there is one, the line (`file:line`).
"""
import csv
import logging
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

LIST_FIELDS = {"RGB": (3,), "video": (2, 3)}
LIST_LAYOUT = {"RGB": "<dir> <num_frames> <label>", "video": "<file> <label>"}
CHARADES_CLASS = re.compile(r"c(\d+)")
CHARADES_INSTANCE_COLUMNS = ("video_id", "label", "start_time", "end_time", "total_time")


class AnnotationError(ValueError):
    """An annotation file is missing or malformed; the message names the file and line."""


@dataclass(frozen=True)
class VideoRecord:
    """One list entry.

    path: folder or file, relative to the data root. label: class id, or a tuple of class ids for
    multi-label data. num_frames: frames in the folder or instance (None: count when loading).
    start_frame: offset of a trimmed instance inside its video. where: `list_file:line` for messages.
    """

    path: str
    label: int | tuple[int, ...]
    num_frames: int | None = None
    start_frame: int = 0
    where: str = ""


def _open(path, what):
    if not os.path.isfile(path):
        raise AnnotationError(f"{what} {path} does not exist")
    return open(path, newline="", encoding="utf-8-sig")  # tolerates a byte-order mark


def _numbered_lines(path, what, allow_empty=False):
    with _open(path, what) as handle:
        try:
            lines = [(number, line.strip()) for number, line in enumerate(handle, start=1) if line.strip()]
        except UnicodeDecodeError as error:
            raise AnnotationError(f"{what} {path} is not a text file (not UTF-8: byte "
                                  f"{error.object[error.start]:#04x})") from None
    if any("\x00" in text for _, text in lines):
        raise AnnotationError(f"{what} {path} is not a text file (it holds NUL bytes)")
    if not lines and not allow_empty:
        raise AnnotationError(f"{what} {path} is empty")
    return lines


def _number(text, name, where, kind=int):
    try:
        return kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise AnnotationError(f"{where}: {name} must be {what}, got {text!r}") from None


def _check_label(label, num_classes, where):
    if not 0 <= label < num_classes:
        raise AnnotationError(f"{where}: label {label} is outside the {num_classes} classes "
                              f"of the labels file (0..{num_classes - 1})")
    return label


def load_class_names(path):
    """Class names indexed by class id, from an `id,name` CSV or a Charades classes file."""
    lines = _numbered_lines(path, "labels file")
    is_csv = lines[0][1].replace(" ", "").lower() == "id,name"
    by_id = {}
    for number, text in lines[1:] if is_csv else lines:
        where = f"{path}:{number}"
        if is_csv:
            row = next(csv.reader([text]))
            if len(row) < 2:
                raise AnnotationError(f"{where}: expected `id,name`, got {text!r}")
            class_id = _number(row[0].strip(), "class id", where)
            name = ",".join(row[1:])
        else:
            code, _, name = text.partition(" ")
            match = CHARADES_CLASS.fullmatch(code)
            if match is None:
                raise AnnotationError(f"{where}: expected `id,name` CSV (with that header) or "
                                      f"`c<number> <name>` lines, got {text!r}")
            class_id = int(match.group(1))
        if class_id in by_id:
            raise AnnotationError(f"{where}: class id {class_id} appears twice")
        by_id[class_id] = name.strip()
    if sorted(by_id) != list(range(len(by_id))):
        missing = sorted(set(range(max(by_id) + 1)) - set(by_id))
        raise AnnotationError(f"{path}: class ids must be 0..{len(by_id) - 1}; missing {missing[:10]}")
    return [by_id[i] for i in range(len(by_id))]


def read_names_file(path, what="class file"):
    """Names from a labels CSV (`id,name`, by class id) or a text file with one name a line; an empty
    file gives []."""
    if Path(path).suffix.lower() == ".csv":
        return load_class_names(str(path))
    return [text for _, text in _numbered_lines(str(path), what, allow_empty=True)]


def detect_modality(list_file):
    """'RGB' for `<dir> <num_frames> <label>` lists, 'video' for `<file> <label>` lists (first line)."""
    with _open(list_file, "list file") as handle:
        number, text = next(((n, line) for n, line in enumerate(handle, start=1) if line.strip()), (0, ""))
    if not text:
        raise AnnotationError(f"list file {list_file} is empty")
    fields = len(text.split())
    if fields not in (2, 3):
        raise AnnotationError(f"{list_file}:{number}: cannot tell the list format from {fields} fields; "
                              f"expected {LIST_LAYOUT['RGB']} or {LIST_LAYOUT['video']}")
    return "video" if fields == 2 else "RGB"


def list_modality(list_file, configured=None):
    """How to read a list: as configured, except that a `<file> <label>` list is always a video list.

    None or 'auto' takes the format of the list's first line. Video lists may also carry a frame
    count (`<file> <num_frames> <label>`), which is ignored: the decoder counts the frames.
    """
    detected = detect_modality(list_file)
    if configured in (None, "auto"):
        return detected
    if configured not in LIST_FIELDS:
        raise AnnotationError(f"data.modality must be one of {sorted(LIST_FIELDS)}, got {configured!r}")
    if configured == "RGB" and detected == "video":
        logger.warning("%s has `<file> <label>` lines: reading video files although data.modality is RGB",
                       list_file)
        return "video"
    return configured


def read_video_list(list_file, num_classes, modality=None):
    """Records of a frame list or a video list; `modality` as in `list_modality`."""
    modality = list_modality(list_file, modality)
    records = []
    for number, text in _numbered_lines(list_file, "list file"):
        where = f"{list_file}:{number}"
        fields = text.split()
        if len(fields) not in LIST_FIELDS[modality]:
            raise AnnotationError(f"{where}: expected `{LIST_LAYOUT[modality]}` for data.modality {modality}, "
                                  f"got {len(fields)} fields: {text!r}")
        label = _check_label(_number(fields[-1], "label", where), num_classes, where)
        num_frames = _number(fields[1], "num_frames", where) if len(fields) == 3 else None
        if num_frames is not None and num_frames < 0:
            raise AnnotationError(f"{where}: num_frames must not be negative, got {num_frames}")
        records.append(VideoRecord(fields[0], label, num_frames if modality == "RGB" else None, where=where))
    return records


def _charades_class(code, num_classes, where):
    match = CHARADES_CLASS.fullmatch(code)
    if match is None:
        raise AnnotationError(f"{where}: expected a Charades class like c092, got {code!r}")
    return _check_label(int(match.group(1)), num_classes, where)


def _charades_video(row, num_classes, where):
    labels = set()
    for action in filter(None, row["actions"].split(";")):
        parts = action.split()
        if len(parts) != 3:
            raise AnnotationError(f"{where}: action {action!r} is not `c<class> <start> <end>`")
        labels.add(_charades_class(parts[0], num_classes, where))
    return VideoRecord(row["id"], tuple(sorted(labels)), where=where)


def _charades_instance(row, num_classes, fps, where):
    start, end, total = (_number(row[key], key, where, float) for key in ("start_time", "end_time", "total_time"))
    label = _charades_class(row["label"], num_classes, where)
    first = int(start * fps)
    return VideoRecord(row["video_id"], label, int(min(end, total) * fps - first), first, where)


def read_charades_csv(csv_file, num_classes, fps):
    """Records of a Charades CSV.

    `Charades_v1_*.csv` (columns id, actions): one record per video, label a sorted tuple of class ids
    (maybe empty), num_frames None (the frame folder is counted when loading).
    `Charades_train_split_label.csv` (video_id, label, start_time, end_time, total_time): one record per
    action instance with its single class id; start_frame and num_frames come from the times at `fps`;
    instances without frames (end <= start) are dropped, as in the original.
    """
    with _open(csv_file, "Charades CSV") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or ())
        per_video = {"id", "actions"} <= columns
        if not per_video and not columns.issuperset(CHARADES_INSTANCE_COLUMNS):
            raise AnnotationError(f"{csv_file}: header must have columns id,actions (Charades_v1_*.csv) or "
                                  f"{','.join(CHARADES_INSTANCE_COLUMNS)}; got {sorted(columns)}")
        records = []
        for row in reader:
            where = f"{csv_file}:{reader.line_num}"
            records.append(_charades_video(row, num_classes, where) if per_video
                           else _charades_instance(row, num_classes, fps, where))
    if not records:
        raise AnnotationError(f"Charades CSV {csv_file} has no rows")
    kept = [record for record in records if record.num_frames is None or record.num_frames > 0]
    if len(kept) < len(records):
        logger.info("%s: dropped %d action instances without frames (end <= start)",
                    csv_file, len(records) - len(kept))
    return kept


def select_few_shot(records, shot, seed):
    """`shot` random records per class (seeded), repeated to about the original number of records.

    Classes are visited in order of first appearance; the selection repeats `len(records) // selected`
    times so an epoch has roughly as many iterations as with the full list.
    """
    by_class = {}
    for record in records:
        if isinstance(record.label, tuple):
            raise AnnotationError(f"{record.where}: data.shot needs single-label data")
        by_class.setdefault(record.label, []).append(record)
    rng = random.Random(seed)
    selected = []
    for label, members in by_class.items():
        if len(members) < shot:
            raise AnnotationError(f"data.shot={shot}: class {label} has only {len(members)} videos "
                                  f"(first at {members[0].where})")
        selected.extend(rng.sample(members, shot))
    return selected * (len(records) // len(selected))


def write_list(path, lines):
    """An annotation list: one entry per line, newline-terminated."""
    Path(path).write_text("".join(line + "\n" for line in lines))


def write_labels_csv(path, names):
    """Labels CSV in the BIKE format: header `id,name`, one class per row."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["id", "name"])
        writer.writerows(enumerate(names))
