"""Data preparation tools: frame extraction and the converters of official annotations into BIKE lists."""
import csv
import logging
import random

import numpy as np
import pytest
from PIL import Image

from datasets.synthetic import write_mp4
from tests.codec_files import set_mp4_rotation
from tests.data_factory import frame_image, write_video
from tools import convert_annotations, extract_frames
from tools.annotations import ConversionError, convert_charades, convert_hmdb51, convert_kinetics, convert_ucf101
from tools.extract_frames import FrameOptions

HEIGHT, WIDTH = 48, 64


def _level(index):
    return 20 + 9 * index


def _write_gray_video(path, num_frames, fps=10):
    """Frame k is flat gray at level 20 + 9k, which survives H.264 and JPEG within a level or two."""
    frames = np.stack([np.full((HEIGHT, WIDTH, 3), _level(k), np.uint8) for k in range(num_frames)])
    write_mp4(path, frames, fps=fps)


def _levels(folder, names):
    return [round((float(np.asarray(Image.open(folder / name)).mean()) - 20) / 9) for name in names]


@pytest.fixture
def videos(tmp_path):
    root = tmp_path / "videos"
    _write_gray_video(root / "a" / "one.mp4", 5)
    _write_gray_video(root / "two.mkv", 3)
    video_list = tmp_path / "videos.txt"
    video_list.write_text("a/one.mp4 3\n\ntwo.mkv 0\n")
    return root, video_list


def _jpegs(count, tmpl="img_{:05d}.jpg", first=1):
    return [tmpl.format(i) for i in range(first, first + count)]


def test_list_source_gives_ordered_resized_frames_and_the_frame_list(videos, tmp_path):
    root, video_list = videos
    out, frame_list = tmp_path / "frames", tmp_path / "frames.txt"
    status = extract_frames.main([str(video_list), "--video-root", str(root), "--out", str(out),
                                  "--frame-list", str(frame_list), "--short-side", "32", "--workers", "1",
                                  "--no-progress"])
    assert status == 0
    assert frame_list.read_text() == "a/one 5 3\ntwo 3 0\n"
    assert sorted(p.name for p in (out / "a" / "one").iterdir()) == _jpegs(5)
    assert _levels(out / "a" / "one", _jpegs(5)) == [0, 1, 2, 3, 4]
    assert _levels(out / "two", _jpegs(3)) == [0, 1, 2]
    assert Image.open(out / "two" / "img_00001.jpg").size == (43, 32)  # 64x48 -> short side 32, 4:3 kept


def test_resized_scales_the_short_side_and_keeps_the_aspect_ratio():
    assert extract_frames.resized(640, 480, 320) == (427, 320)
    assert extract_frames.resized(480, 640, 320) == (320, 427)
    assert extract_frames.resized(171, 128, 0) == (171, 128)


def test_folder_source_with_a_named_template_and_fps_subsampling(tmp_path):
    _write_gray_video(tmp_path / "in" / "clips" / "XYZ12.mp4", 20, fps=10)
    (tmp_path / "in" / "notes.txt").write_text("not a video")
    assert extract_frames.find_videos(tmp_path / "in") == ["clips/XYZ12.mp4"]
    status = extract_frames.main([str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--fps", "2",
                                  "--image-tmpl", "{}-{:06d}.jpg", "--short-side", "0", "--workers", "1",
                                  "--no-progress"])
    folder = tmp_path / "out" / "clips" / "XYZ12"
    assert status == 0
    names = _jpegs(4, "XYZ12-{:06d}.jpg")
    assert sorted(p.name for p in folder.iterdir()) == names
    assert _levels(folder, names) == [0, 5, 10, 15]  # 2 s at 10 fps sampled at 0, 0.5, 1.0, 1.5 s
    assert Image.open(folder / names[0]).size == (WIDTH, HEIGHT)


def test_finished_folders_are_skipped_and_partial_ones_redone(videos, tmp_path):
    root, video_list = videos
    out, options = tmp_path / "frames", FrameOptions(short_side=0)
    entries = extract_frames.read_video_list(video_list)
    videos_only = [video for video, _ in entries]
    extract_frames.extract_all(videos_only, root, out, options, progress=False)
    first_jpeg = out / "a" / "one" / "img_00001.jpg"
    first_jpeg.write_bytes(b"left alone")
    for jpeg in (out / "two").iterdir():  # as if interrupted while writing video two
        jpeg.unlink()
    (out / "two").rename(out / "two.partial")
    (out / "two.partial" / "img_00001.jpg").write_bytes(b"half")

    outcomes = extract_frames.extract_all(videos_only, root, out, options, progress=False)
    assert [(o.video, o.status, o.num_frames) for o in outcomes] == [("a/one.mp4", "skipped", 5),
                                                                     ("two.mkv", "extracted", 3)]
    assert first_jpeg.read_bytes() == b"left alone"
    assert _levels(out / "two", _jpegs(3)) == [0, 1, 2]
    assert not (out / "two.partial").exists()


def test_a_bad_video_is_reported_and_the_others_go_on(videos, tmp_path, caplog):
    root, _ = videos
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    video_list = tmp_path / "with_bad.txt"
    video_list.write_text("broken.mp4 1\na/one.mp4 3\nmissing.mp4 2\ntwo.mkv 0\n")
    out, frame_list = tmp_path / "frames", tmp_path / "frames.txt"
    with caplog.at_level(logging.INFO, logger="tools.extract_frames"):
        status = extract_frames.main([str(video_list), "--video-root", str(root), "--out", str(out),
                                      "--frame-list", str(frame_list), "--workers", "2", "--no-progress"])
    assert status == 1
    failures = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(str(root / "broken.mp4") in message for message in failures)
    assert any(str(root / "missing.mp4") in message for message in failures)
    assert any("4 videos: 2 extracted, 0 already done, 2 failed" in r.getMessage() for r in caplog.records)
    assert frame_list.read_text() == "a/one 5 3\ntwo 3 0\n"
    assert sorted(p.name for p in out.iterdir()) == ["a", "two"]  # no folders, not even partial, for failures


def test_worker_processes_write_the_same_files_as_one_process(videos, tmp_path):
    root, video_list = videos
    videos_only = [video for video, _ in extract_frames.read_video_list(video_list)]
    for workers in (1, 2):
        extract_frames.extract_all(videos_only, root, tmp_path / f"w{workers}", FrameOptions(short_side=40),
                                   workers=workers, progress=False)
    serial = {p.relative_to(tmp_path / "w1"): p.read_bytes() for p in (tmp_path / "w1").rglob("*.jpg")}
    parallel = {p.relative_to(tmp_path / "w2"): p.read_bytes() for p in (tmp_path / "w2").rglob("*.jpg")}
    assert len(serial) == 8 and serial == parallel


def test_frames_of_a_rotated_phone_video_are_extracted_upright(tmp_path):
    set_mp4_rotation(write_video(str(tmp_path / "videos" / "phone.mp4"), 6), 90)
    extract_frames.extract_all(["phone.mp4"], tmp_path / "videos", tmp_path / "frames", FrameOptions(short_side=0),
                               progress=False)
    image = np.asarray(Image.open(tmp_path / "frames" / "phone" / "img_00004.jpg")).astype(np.float32)
    upright = np.rot90(frame_image(3), k=-1).astype(np.float32)  # turned clockwise, as played
    assert image.shape == upright.shape and np.abs(image - upright).mean() < 4


def test_a_malformed_video_list_line_is_named(tmp_path):
    video_list = tmp_path / "bad.txt"
    video_list.write_text("a.mp4 1\nb.mp4 label\n")
    with pytest.raises(ValueError, match=rf"{video_list}:2: expected `<file> <label>`"):
        extract_frames.read_video_list(video_list)


# ---- annotation converters -------------------------------------------------------------------------------

def _list_entries(path):
    """(path, label) of a frame list `<dir> <num_frames> <label>`."""
    return [(line.split()[0], int(line.split()[-1])) for line in path.read_text().splitlines() if line.strip()]


def _names(labels_csv):
    return [line.split(",", 1)[1] for line in labels_csv.read_text().splitlines()[1:]]


def test_ucf101_lists_match_the_shared_split_1(shared_lists, tmp_path):
    """Official files rebuilt from the shared lists: trainlist with class numbers, testlist without."""
    shared = shared_lists / "ucf101"
    official = tmp_path / "ucfTrainTestlist"
    official.mkdir()
    names = _names(shared / "ucf_labels.csv")
    (official / "classInd.txt").write_text("".join(f"{i} {name}\r\n" for i, name in enumerate(names, start=1)))
    train, val = _list_entries(shared / "train_rgb_split_1.txt"), _list_entries(shared / "val_rgb_split_1.txt")
    (official / "trainlist01.txt").write_text("".join(f"{path}.avi {label + 1}\r\n" for path, label in train))
    (official / "testlist01.txt").write_text("".join(f"{path}.avi\r\n" for path, _ in val))

    written = convert_annotations.convert(convert_annotations.parse_args(
        ["ucf101", str(official), "--out", str(tmp_path / "out"), "--splits", "1"]))
    out = tmp_path / "out"
    assert sorted(p.name for p in written) == ["train_video_split_1.txt", "ucf_full_for_zeroshot_video.txt",
                                              "ucf_labels.csv", "val_video_split_1.txt"]
    assert (out / "ucf_labels.csv").read_text().splitlines() == (shared / "ucf_labels.csv").read_text().splitlines()
    assert (out / "train_video_split_1.txt").read_text().splitlines() == [f"{p}.avi {label}" for p, label in train]
    # test lists carry no class number: labels come from the class folder (HandstandPushups/v_HandStandPushups...)
    assert (out / "val_video_split_1.txt").read_text().splitlines() == [f"{p}.avi {label}" for p, label in val]
    full = _list_entries(shared / "ucf_full_for_zeroshot.txt")
    assert _list_entries(out / "ucf_full_for_zeroshot_video.txt") == [(f"{p}.avi", label) for p, label in full]


def test_ucf101_class_number_that_contradicts_its_folder_is_named(tmp_path):
    (tmp_path / "classInd.txt").write_text("1 Archery\n2 Biking\n")
    (tmp_path / "trainlist01.txt").write_text("Archery/v_Archery_g01_c01.avi 1\nBiking/v_Biking_g01_c01.avi 1\n")
    with pytest.raises(ConversionError, match=r"trainlist01.txt:2: class number 1 disagrees with folder Biking"):
        convert_ucf101(tmp_path, tmp_path / "out", splits=(1,))


def test_hmdb51_lists_and_labels_match_the_shared_split_1(shared_lists, tmp_path):
    """Split files rebuilt from the shared lists (1 train, 2 test, plus an unused video flagged 0)."""
    shared = shared_lists / "hmdb51"
    train, val = _list_entries(shared / "train_rgb_split_1.txt"), _list_entries(shared / "val_rgb_split_1.txt")
    flags = {}
    for entries, flag in ((train, 1), (val, 2)):
        for path, _ in entries:
            folder, video = path.split("/")
            flags.setdefault(folder, []).append(f"{video}.avi {flag} ")
    official = tmp_path / "splits"
    official.mkdir()
    for folder, lines in flags.items():
        lines.append(f"zz_unused_{folder}_0.avi 0 ")
        (official / f"{folder}_test_split1.txt").write_text("\r\n".join(reversed(lines)) + "\r\n")

    convert_hmdb51(official, tmp_path / "out", splits=(1,))
    out = tmp_path / "out"
    assert _names(out / "hmdb51_labels.csv") == _names(shared / "hmdb51_labels.csv")  # 'brush hair', ...
    assert (out / "hmdb51_labels.csv").read_text().splitlines()[0] == "id,name"
    assert _list_entries(out / "train_video_split_1.txt") == [(f"{p}.avi", label) for p, label in train]
    assert _list_entries(out / "val_video_split_1.txt") == [(f"{p}.avi", label) for p, label in val]
    full = _list_entries(out / "hmdb_full_for_zeroshot_video.txt")
    assert len(full) == len(train) + len(val) + 51
    assert ("brush_hair/zz_unused_brush_hair_0.avi", 0) in full and ("wave/zz_unused_wave_0.avi", 50) in full


def test_hmdb51_bad_flag_is_named(tmp_path):
    (tmp_path / "clap_test_split1.txt").write_text("a.avi 1\nb.avi 3\n")
    with pytest.raises(ConversionError, match=r"clap_test_split1.txt:2: expected `<video>.avi <0\|1\|2>`"):
        convert_hmdb51(tmp_path, tmp_path / "out", splits=(1,))


def _write_kinetics_csv(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
        writer.writerows(rows)


def test_kinetics_classes_are_the_sorted_labels_as_in_the_shared_k400_labels(shared_lists, tmp_path):
    names = _names(shared_lists / "k400" / "kinetics_400_labels.csv")
    shuffled = random.Random(0).sample(names, len(names))
    _write_kinetics_csv(tmp_path / "train.csv", [(name, f"id{i:08d}_x", 10 * i, 10 * i + 10, "train")
                                                 for i, name in enumerate(shuffled)])
    _write_kinetics_csv(tmp_path / "validate.csv", [("abseiling", "-aNccq2jvUA", 55, 65, "val"),
                                                    ("passing American football (in game)", "AbC", 0, 7, "val")])
    written = convert_kinetics([tmp_path / "train.csv", tmp_path / "validate.csv"], tmp_path / "out")
    assert [p.name for p in written] == ["kinetics_400_labels.csv", "kinetics_video_train.txt",
                                         "kinetics_video_validate.txt"]
    labels = (tmp_path / "out" / "kinetics_400_labels.csv").read_text().splitlines()
    assert labels == (shared_lists / "k400" / "kinetics_400_labels.csv").read_text().splitlines()
    assert (tmp_path / "out" / "kinetics_video_validate.txt").read_text() == (
        "-aNccq2jvUA_000055_000065.mp4 0\nAbC_000000_000007.mp4 208\n")
    train_lines = (tmp_path / "out" / "kinetics_video_train.txt").read_text().splitlines()
    assert train_lines[0] == f"id00000000_x_000000_000010.mp4 {names.index(shuffled[0])}"


def test_kinetics_name_format_and_fixed_classes(tmp_path):
    _write_kinetics_csv(tmp_path / "val.csv", [("b", "yt1", 1, 11, "val"), ("a", "yt2", 2.0, 12.0, "val")])
    (tmp_path / "classes.csv").write_text("id,name\n0,b\n1,a\n")
    convert_kinetics([tmp_path / "val.csv"], tmp_path / "out", classes=tmp_path / "classes.csv",
                     name_format="{label}/{youtube_id}.mp4")
    assert (tmp_path / "out" / "kinetics_video_val.txt").read_text() == "b/yt1.mp4 0\na/yt2.mp4 1\n"
    (tmp_path / "classes.csv").write_text("id,name\n0,b\n")
    with pytest.raises(ConversionError, match=r"val.csv:3: label 'a' is not a class"):
        convert_kinetics([tmp_path / "val.csv"], tmp_path / "out", classes=tmp_path / "classes.csv")
    with pytest.raises(ConversionError, match="unknown field 'start'"):
        convert_kinetics([tmp_path / "val.csv"], tmp_path / "out", name_format="{youtube_id}_{start}.mp4")


def test_charades_instances_reproduce_the_shared_training_csv(shared_lists, tmp_path):
    shared = shared_lists / "charades"
    written = convert_charades(shared / "Charades_v1_train.csv", shared / "Charades_v1_classes.txt", tmp_path)
    assert [p.name for p in written] == ["Charades_train_split_label.csv", "charades_labels.csv"]
    assert written[0].read_bytes() == (shared / "Charades_train_split_label.csv").read_bytes()
    labels = written[1].read_text().splitlines()
    assert labels[:2] == ["id,name", "0,Holding some clothes"] and len(labels) == 158


def test_charades_small_file_line_by_line_and_a_bad_action_named(tmp_path):
    (tmp_path / "classes.txt").write_text("c000 Holding some clothes\nc001 Putting clothes somewhere\n")
    header = "id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length\n"
    (tmp_path / "train.csv").write_text(header + 'AAA,S,Kitchen,6,7,Yes,"x, y",a,d,c001 1.50 3.00;c000 0.00 2.25,9.10\n'
                                        "BBB,S,Hall,6,7,Yes,x,a,d,,5.00\n")
    instances, _ = convert_charades(tmp_path / "train.csv", tmp_path / "classes.txt", tmp_path / "out")
    assert instances.read_text().splitlines() == ["video_id,label,start_time,end_time,total_time",
                                                  "AAA,c001,1.50,3.00,9.10", "AAA,c000,0.00,2.25,9.10"]
    (tmp_path / "train.csv").write_text(header + "AAA,S,K,6,7,Yes,x,a,d,c001 1.50 3.00,9.10\n"
                                        "BBB,S,K,6,7,Yes,x,a,d,c002 0.00 1.00,5.00\n")
    with pytest.raises(ConversionError, match=r"train.csv:3: action 'c002 0.00 1.00' of video BBB"):
        convert_charades(tmp_path / "train.csv", tmp_path / "classes.txt", tmp_path / "out")


def test_frame_lists_count_the_extracted_frames_and_report_missing_folders(tmp_path, caplog):
    (tmp_path / "classInd.txt").write_text("1 Archery\n2 Biking\n")
    (tmp_path / "trainlist01.txt").write_text("Archery/v_Archery_g01_c01.avi 1\nBiking/v_Biking_g01_c01.avi 2\n")
    (tmp_path / "testlist01.txt").write_text("Biking/v_Biking_g02_c01.avi\n")
    frames = tmp_path / "frames"
    for folder, count in (("Archery/v_Archery_g01_c01", 3), ("Biking/v_Biking_g01_c01", 7)):
        (frames / folder).mkdir(parents=True)
        for index in range(1, count + 1):
            (frames / folder / f"img_{index:05d}.jpg").write_bytes(b"")
    args = ["ucf101", str(tmp_path), "--out", str(tmp_path / "out"), "--splits", "1", "--frames-root", str(frames)]
    with pytest.raises(ConversionError, match=r"val_rgb_split_1.txt: 1 of 1 videos have no frames under .*"
                                         r"Biking/v_Biking_g02_c01"):
        convert_annotations.main(args)
    with caplog.at_level(logging.WARNING):
        convert_annotations.main(args + ["--skip-missing"])
    assert (tmp_path / "out" / "train_rgb_split_1.txt").read_text() == (
        "Archery/v_Archery_g01_c01 3 0\nBiking/v_Biking_g01_c01 7 1\n")
    assert (tmp_path / "out" / "val_rgb_split_1.txt").read_text() == ""
    assert (tmp_path / "out" / "ucf_full_for_zeroshot.txt").is_file()
    assert any("Biking/v_Biking_g02_c01" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_missing_official_file_is_named(tmp_path):
    with pytest.raises(ConversionError, match=rf"UCF-101 class index {tmp_path}/classInd.txt does not exist"):
        convert_annotations.main(["ucf101", str(tmp_path), "--out", str(tmp_path / "out")])
