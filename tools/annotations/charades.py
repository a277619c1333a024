"""Charades: Charades_v1_classes.txt and Charades_v1_train.csv (one video per row, `actions` field)."""
import csv
import re
from pathlib import Path

from datasets.annotations import CHARADES_INSTANCE_COLUMNS, load_class_names
from tools.annotations.common import ConversionError, csv_rows, write_labels_csv


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_action(fields, length, num_classes):
    return (len(fields) == 3 and re.fullmatch(r"c\d{3}", fields[0]) is not None and int(fields[0][1:]) < num_classes
            and all(_is_number(value) for value in (fields[1], fields[2], length)))


def action_instances(csv_file, num_classes):
    """Rows (video_id, class, start, end, length) for every action of every video, times as written."""
    rows = []
    for where, row in csv_rows(csv_file, "Charades CSV", ("id", "actions", "length")):
        for action in filter(None, row["actions"].split(";")):
            fields = action.split()
            if not _is_action(fields, row["length"], num_classes):
                raise ConversionError(f"{where}: action {action!r} of video {row['id']} is "
                                      f"not `c<class> <start> <end>` with one of {num_classes} classes")
            rows.append([row["id"], *fields, row["length"]])
    return rows


def convert_charades(csv_file, classes_file, out_dir, name="Charades_train_split_label.csv"):
    """Write the per-instance training CSV (`video_id,label,start_time,end_time,total_time`) and charades_labels.csv.

    Videos without actions give no rows. The per-video test CSV (Charades_v1_test.csv) is used as it is.
    Returns the written paths.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = load_class_names(classes_file)
    rows = action_instances(csv_file, len(names))
    instances = out_dir / name
    with open(instances, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)  # CRLF line ends, as in the original repository's file
        writer.writerow(CHARADES_INSTANCE_COLUMNS)
        writer.writerows(rows)
    labels = out_dir / "charades_labels.csv"
    write_labels_csv(labels, names)
    return [instances, labels]
