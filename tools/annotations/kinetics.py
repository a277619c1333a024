"""Kinetics (400/600/700): the official CSVs `label,youtube_id,time_start,time_end,split[,is_cc]`."""
from pathlib import Path

from datasets.annotations import load_class_names
from tools.annotations.common import ConversionError, csv_rows, list_kind, write_entries, write_labels_csv

# The downloaders' usual file name: youtube id, start and end second, e.g. -aNccq2jvUA_000055_000065.mp4
DEFAULT_NAME_FORMAT = "{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"
COLUMNS = ("label", "youtube_id", "time_start", "time_end")


def read_kinetics_csv(path):
    """Rows as dicts with integer times; each row also carries `where` (file:line) for messages."""
    rows = []
    for where, row in csv_rows(path, "Kinetics CSV", COLUMNS):
        try:
            times = {key: int(float(row[key])) for key in ("time_start", "time_end")}
        except (TypeError, ValueError):
            raise ConversionError(f"{where}: time_start/time_end must be numbers, got "
                                  f"{row['time_start']!r}, {row['time_end']!r}") from None
        rows.append({**row, **times, "label": row["label"].strip(), "where": where})
    if not rows:
        raise ConversionError(f"Kinetics CSV {path} has no rows")
    return rows


def video_name(row, name_format):
    """The file name of a row's video from `name_format` (fields: youtube_id, time_start, time_end, label, split)."""
    try:
        return name_format.format(**row)
    except KeyError as error:
        raise ConversionError(f"name format {name_format!r}: unknown field {error}; fields are youtube_id, "
                              f"time_start, time_end, label, split") from None


def convert_kinetics(csv_files, out_dir, classes=None, name_format=DEFAULT_NAME_FORMAT, frames_root=None,
                     skip_missing=False):
    """Write kinetics_<N>_labels.csv and kinetics_{rgb,video}_<csv name>.txt per CSV.

    Class ids are the sorted labels of all given CSVs, or those of `classes` (an `id,name` CSV, e.g. to
    convert a val CSV alone with the ids of a training run). Returns the written paths.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = {Path(path): read_kinetics_csv(path) for path in csv_files}
    names = load_class_names(classes) if classes else sorted({row["label"] for rows in tables.values()
                                                              for row in rows})
    ids = {name: index for index, name in enumerate(names)}
    written = [out_dir / f"kinetics_{len(names)}_labels.csv"]
    write_labels_csv(written[0], names)
    kind = list_kind(frames_root)
    for path, rows in tables.items():
        unknown = next((row for row in rows if row["label"] not in ids), None)
        if unknown is not None:
            raise ConversionError(f"{unknown['where']}: label {unknown['label']!r} is not a class of {classes}")
        entries = [(video_name(row, name_format), ids[row["label"]]) for row in rows]
        written.append(write_entries(out_dir / f"kinetics_{kind}_{path.stem}.txt", entries, frames_root,
                                     skip_missing))
    return written
