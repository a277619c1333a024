"""What every converter shares: the error type, reading text files by line, writing video or frame lists."""
import csv
import logging
from pathlib import Path

from datasets.annotations import AnnotationError
from datasets.annotations import write_labels_csv, write_list
from tools.extract_frames import count_frames, frame_folder_name

logger = logging.getLogger(__name__)

__all__ = ["ConversionError", "csv_rows", "list_kind", "numbered_lines", "write_entries", "write_labels_csv"]


class ConversionError(AnnotationError):
    """An official annotation file is missing or malformed; the message names the file and line."""


def numbered_lines(path, what):
    """(line number, stripped text) of the non-blank lines of a text file (official files use CRLF too)."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{what} {path} does not exist")
    with open(path, encoding="utf-8") as handle:
        return [(number, line.strip()) for number, line in enumerate(handle, start=1) if line.strip()]


def csv_rows(path, what, columns):
    """(file:line, row dict) of a CSV file that must have `columns` in its header."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{what} {path} does not exist")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in columns if column not in (reader.fieldnames or ())]
        if missing:
            raise ConversionError(f"{path}: missing columns {missing}; a {what} has {', '.join(columns)}")
        for row in reader:
            yield f"{path}:{reader.line_num}", row


def list_kind(frames_root):
    """'rgb' for frame lists (frames extracted under `frames_root`), 'video' for video lists."""
    return "video" if frames_root is None else "rgb"


def write_entries(path, entries, frames_root=None, skip_missing=False):
    """Write (video file, label) entries as a video list, or as a frame list when `frames_root` is given.

    A frame list takes each video's folder (its path without the extension) under `frames_root` and
    counts the frames in it. Videos without frames are an error, or with `skip_missing` left out.
    """
    if frames_root is None:
        write_list(path, [f"{video} {label}" for video, label in entries])
        return path
    lines, missing = [], []
    for video, label in entries:
        folder = frame_folder_name(video)
        num_frames = count_frames(Path(frames_root) / folder) if (Path(frames_root) / folder).is_dir() else 0
        if num_frames:
            lines.append(f"{folder} {num_frames} {label}")
        else:
            missing.append(folder)
    if missing:
        examples = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        message = f"{path}: {len(missing)} of {len(entries)} videos have no frames under {frames_root}: {examples}"
        if not skip_missing:
            raise ConversionError(message + " (extract them with tools/extract_frames.py, or pass --skip-missing)")
        logger.warning("%s; left out", message)
    write_list(path, lines)
    return path
