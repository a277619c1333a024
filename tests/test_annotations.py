"""Annotation parsing: every shared list parses with the right counts; bad files give located errors."""
import csv
import logging
import random

import pytest

from datasets.annotations import (AnnotationError, VideoRecord, detect_modality, list_modality,
                                  load_class_names, read_charades_csv, read_video_list, select_few_shot)
from tests.data_factory import write_labels_csv, write_text

# list file -> (labels file, modality) for every list in ../shared/lists
SHARED_LISTS = {
    "anet/anet_full_for_zeroshot.txt": ("anet/anet1.3_labels.csv", "RGB"),
    "anet/anet_train_instance_fps1.txt": ("anet/anet1.3_labels.csv", "RGB"),
    "anet/anet_val_video_fps1.txt": ("anet/anet1.3_labels.csv", "RGB"),
    "k400/kinetics_rgb_val_se320.txt": ("k400/kinetics_400_labels.csv", "RGB"),
    "k400/kinetics_video_val_se320.txt": ("k400/kinetics_400_labels.csv", "video"),
    "hmdb51/hmdb_full_for_zeroshot.txt": ("hmdb51/hmdb51_labels.csv", "RGB"),
    "ucf101/ucf_full_for_zeroshot.txt": ("ucf101/ucf_labels.csv", "RGB"),
    **{f"k600/test_split{s}_exist.txt": (f"k600/k160_labels_split{s}.csv", "video") for s in (1, 2, 3)},
    **{f"{name}/{split}_rgb_split_{s}.txt": (labels, "RGB")
       for name, labels in (("hmdb51", "hmdb51/hmdb51_labels.csv"), ("ucf101", "ucf101/ucf_labels.csv"))
       for split in ("train", "val") for s in (1, 2, 3)},
}
CLASS_COUNTS = {"anet": 200, "k400": 400, "hmdb51": 51, "ucf101": 101, "k600": 160}


def test_every_shared_list_is_covered(shared_lists):
    on_disk = {str(p.relative_to(shared_lists)) for p in shared_lists.glob("*/*.txt")}
    assert on_disk - {"charades/Charades_v1_classes.txt"} == set(SHARED_LISTS)


@pytest.mark.parametrize("list_name", sorted(SHARED_LISTS))
def test_shared_list_parses_with_label_and_class_counts_of_its_labels_file(shared_lists, list_name):
    labels_name, modality = SHARED_LISTS[list_name]
    names = load_class_names(shared_lists / labels_name)
    assert len(names) == CLASS_COUNTS[list_name.split("/")[0]]
    lines = [line.split() for line in (shared_lists / list_name).read_text().splitlines() if line.strip()]
    assert detect_modality(shared_lists / list_name) == modality
    records = read_video_list(shared_lists / list_name, len(names))
    assert len(records) == len(lines)
    assert [r.label for r in records] == [int(fields[-1]) for fields in lines]
    assert {r.label for r in records} == set(range(len(names)))  # every class of the labels file is used
    if modality == "RGB":
        assert [r.num_frames for r in records] == [int(fields[1]) for fields in lines]


def test_shared_charades_csvs_parse(shared_lists):
    names = load_class_names(shared_lists / "charades/Charades_v1_classes.txt")
    assert len(names) == 157 and names[0] == "Holding some clothes"
    for split in ("train", "test"):
        path = shared_lists / f"charades/Charades_v1_{split}.csv"
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        records = read_charades_csv(path, len(names), fps=24)
        assert [r.path for r in records] == [row["id"] for row in rows]
        expected = [sorted({int(a.split()[0][1:]) for a in row["actions"].split(";") if a}) for row in rows]
        assert [list(r.label) for r in records] == expected
        assert set().union(*map(set, expected)) == set(range(157))
    path = shared_lists / "charades/Charades_train_split_label.csv"
    with open(path, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if float(row["end_time"]) > float(row["start_time"])]
    records = read_charades_csv(path, len(names), fps=24)
    assert len(records) == len(rows) and {r.label for r in records} == set(range(157))


def test_charades_instance_frames_follow_the_times(tmp_path):
    path = write_text(str(tmp_path / "instances.csv"), [
        "video_id,label,start_time,end_time,total_time",
        "46GP8,c092,11.90,21.20,24.83",   # frames int(11.9 * 24) = 285 .. int(21.2 * 24 - 285) = 223 frames
        "46GP8,c147,0.00,30.00,24.83",    # end clipped to total: int(24.83 * 24) = 595 frames
        "XXXXX,c001,5.00,5.00,24.83",     # empty span: dropped
    ])
    records = read_charades_csv(path, 157, fps=24)
    assert [(r.path, r.label, r.start_frame, r.num_frames) for r in records] == [
        ("46GP8", 92, 285, 223), ("46GP8", 147, 0, 595)]
    assert records[1].where == f"{path}:3"


def test_class_names_from_csv_in_id_order(tmp_path):
    path = write_text(str(tmp_path / "labels.csv"), ["id,name", "1,run", '0,"jump, high"', "2,swim"])
    assert load_class_names(path) == ["jump, high", "run", "swim"]
    with open(path, "w", encoding="utf-8-sig") as handle:  # spreadsheet exports start with a byte-order mark
        handle.write("id,name\n0,jump\n")
    assert load_class_names(path) == ["jump"]


@pytest.mark.parametrize("lines, message", [
    (["id,name", "0,a", "0,b"], r"labels.csv:3: class id 0 appears twice"),
    (["id,name", "0,a", "2,b"], r"labels.csv: class ids must be 0..1; missing \[1\]"),
    (["id,name", "x,a"], r"labels.csv:2: class id must be an integer, got 'x'"),
    (["name only"], r"labels.csv:1: expected `id,name` CSV"),
])
def test_bad_labels_file_is_located(tmp_path, lines, message):
    with pytest.raises(AnnotationError, match=message):
        load_class_names(write_text(str(tmp_path / "labels.csv"), lines))


@pytest.mark.parametrize("lines, modality, message", [
    (["a 10 0", "b 10"], "RGB", r"list.txt:2: expected `<dir> <num_frames> <label>` for data.modality RGB, "
                                r"got 2 fields: 'b 10'"),
    (["a.mp4 0", "b.mp4 1 2 3"], None, r"list.txt:2: expected `<file> <label>` for data.modality video, got 4"),
    (["a 10 0"], "flow", r"data.modality must be one of \['RGB', 'video'\], got 'flow'"),
    (["a 10 zero"], "RGB", r"list.txt:1: label must be an integer, got 'zero'"),
    (["a 1.5 0"], "RGB", r"list.txt:1: num_frames must be an integer"),
    (["a 10 0", "b 10 3"], "RGB", r"list.txt:2: label 3 is outside the 3 classes"),
    (["a 10 -1"], "RGB", r"list.txt:1: label -1 is outside"),
    (["a 1 2 3"], None, r"list.txt:1: cannot tell the list format from 4 fields"),
    (["", "  "], None, r"list file \S*list.txt is empty"),
])
def test_bad_list_is_located(tmp_path, lines, modality, message):
    list_file = write_text(str(tmp_path / "list.txt"), lines)
    with pytest.raises(AnnotationError, match=message):
        read_video_list(list_file, 3, modality)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(AnnotationError, match=r"list file \S*nope.txt does not exist"):
        read_video_list(str(tmp_path / "nope.txt"), 3)
    with pytest.raises(AnnotationError, match=r"labels file \S*nope.csv does not exist"):
        load_class_names(str(tmp_path / "nope.csv"))


def test_a_video_list_is_read_as_one_whatever_the_configured_modality(tmp_path, caplog):
    list_file = write_text(str(tmp_path / "list.txt"), ["a.mp4 0", "b.mp4 1"])
    assert list_modality(list_file, None) == list_modality(list_file, "video") == "video"
    with caplog.at_level(logging.WARNING):
        assert list_modality(list_file, "RGB") == "video"
    assert "list.txt has `<file> <label>` lines" in caplog.text


def test_video_list_may_carry_frame_counts_which_the_decoder_replaces(tmp_path):
    list_file = write_text(str(tmp_path / "list.txt"), ["a.mp4 300 0", "b.mp4 1"])
    assert list_modality(list_file, None) == "RGB"
    assert [(r.path, r.num_frames, r.label) for r in read_video_list(list_file, 3, "video")] == [
        ("a.mp4", None, 0), ("b.mp4", None, 1)]


def test_blank_lines_are_ignored_and_lines_keep_their_numbers(tmp_path):
    list_file = write_text(str(tmp_path / "list.txt"), ["a.mp4 0", "", "b.mp4 2"])
    records = read_video_list(list_file, 3)
    assert records == [VideoRecord("a.mp4", 0, where=f"{list_file}:1"), VideoRecord("b.mp4", 2, where=f"{list_file}:3")]


@pytest.mark.parametrize("actions, message", [
    ("c999 0.0 1.0", r"test.csv:2: label 999 is outside the 157 classes"),
    ("x001 0.0 1.0", r"test.csv:2: expected a Charades class like c092, got 'x001'"),
    ("c001 0.0", r"test.csv:2: action 'c001 0.0' is not"),
])
def test_bad_charades_action_is_located(tmp_path, actions, message):
    path = write_text(str(tmp_path / "test.csv"), ["id,actions,length", f"AB12,{actions},3.0"])
    with pytest.raises(AnnotationError, match=message):
        read_charades_csv(path, 157, fps=24)


def test_charades_csv_with_unknown_header_is_rejected(tmp_path):
    with pytest.raises(AnnotationError, match="header must have columns"):
        read_charades_csv(write_labels_csv(str(tmp_path / "x.csv"), ["a"]), 157, fps=24)


def records_of(counts):
    return [VideoRecord(f"v{label}_{i}", label, 10) for label, count in enumerate(counts) for i in range(count)]


def test_few_shot_selection_matches_an_independent_seeded_draw():
    records = records_of([5, 7, 3])
    selected = select_few_shot(records, 2, seed=11)
    rng = random.Random(11)  # classes in order of first appearance, random.sample each
    expected = [r for label in range(3) for r in rng.sample([r for r in records if r.label == label], 2)]
    assert selected == expected * (15 // 6)
    assert select_few_shot(records, 2, seed=11) == selected


def test_few_shot_needs_enough_videos_per_class():
    with pytest.raises(AnnotationError, match="data.shot=4: class 2 has only 3 videos"):
        select_few_shot(records_of([5, 7, 3]), 4, seed=0)
