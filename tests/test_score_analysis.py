"""Score analysis: confusion counts, per-class accuracy, largest confusions, the picture, and errors."""
import numpy as np
import pytest
import torch
from PIL import Image

import tools.analyze_scores as analyze_scores
from workflows.score_analysis import MAX_CLASSES_DRAWN, analyse, confusion_figure, describe

NAMES = ["moving left", "moving right", "growing"]


def scores_for(predictions, num_classes=3):
    return torch.nn.functional.one_hot(torch.tensor(predictions), num_classes).float() * 0.5 + 0.1


def test_confusion_matrix_and_accuracy_match_hand_counts():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    predicted = [0, 1, 1, 0, 1, 2, 2, 0, 2]
    analysis = analyse(scores_for(predicted), labels, NAMES)
    assert analysis.confusion.tolist() == [[1, 2, 0], [1, 1, 0], [1, 0, 3]]
    assert analysis.per_class_accuracy.tolist() == pytest.approx([100 / 3, 50.0, 75.0])
    confusions = analysis.top_confusions(10)
    assert confusions[0] == ("moving left", "moving right", 2)
    assert set(confusions[1:]) == {("moving right", "moving left", 1), ("growing", "moving left", 1)}


def test_command_writes_table_and_a_non_blank_png(tmp_path, capsys):
    labels = torch.tensor([0, 1, 2, 2])
    torch.save({"scores": scores_for([1, 1, 2, 0]), "labels": labels}, tmp_path / "scores.pt")
    (tmp_path / "labels.csv").write_text("id,name\n" + "".join(f"{i},{n}\n" for i, n in enumerate(NAMES)))
    analyze_scores.main([str(tmp_path / "scores.pt"), "--classes", str(tmp_path / "labels.csv"),
                         "--out", str(tmp_path / "confusion.png"), "--table", str(tmp_path / "table.csv")])
    assert "moving left -> moving right: 1" in capsys.readouterr().out
    assert (tmp_path / "table.csv").read_text().splitlines()[1:] == [
        "moving left,1,0.00", "moving right,1,100.00", "growing,2,50.00"]
    with Image.open(tmp_path / "confusion.png") as image:
        pixels = torch.from_numpy(np.asarray(image.convert("L"), dtype=np.float32))
        assert image.size[0] >= 400 and pixels.std() > 10


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        analyze_scores.main([str(tmp_path / "absent.pt"), "--classes", "x.csv"])
    with pytest.raises(ValueError, match="3 class names"):
        analyse(scores_for([0, 1], num_classes=4), torch.tensor([0, 1]), NAMES)
    torch.save({"scores": torch.zeros(2, 3), "labels": torch.zeros(2, 3)}, tmp_path / "multi.pt")
    with pytest.raises(ValueError, match="multi-label"):
        analyze_scores.main([str(tmp_path / "multi.pt"), "--classes", "x.csv"])


def test_picture_names_model_data_and_top1_and_counts_every_non_empty_cell():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    analysis = analyse(scores_for([0, 1, 1, 0, 1, 2, 2, 0, 2]), labels, NAMES)
    saved = {"weights": "exps/run/model_best.pt", "video_list": "/data/lists/val_videos.txt"}
    title = describe(saved, "scores.pt", analysis)
    assert title == "exps/run/model_best.pt on val_videos.txt: top-1 55.6% of 9 videos"  # 5 of 9 right
    assert describe({}, "runs/scores.pt", analysis).startswith("scores runs/scores.pt: top-1 55.6%")

    figure = confusion_figure(analysis, title)
    axes = figure.axes[0]
    assert axes.get_title().startswith(title + "\nall 3 classes")
    assert [label.get_text() for label in axes.get_xticklabels()] == NAMES
    assert [label.get_text() for label in axes.get_yticklabels()] == NAMES
    cells = {(round(text.get_position()[1]), round(text.get_position()[0])): text.get_text() for text in axes.texts}
    assert cells == {(0, 0): "1", (0, 1): "2", (1, 0): "1", (1, 1): "1", (2, 0): "1", (2, 2): "3"}


def test_many_classes_draw_the_most_confused_ones_and_say_so():
    size = 100
    labels = torch.arange(size).repeat(3)  # 3 videos a class, all right but the planted confusions
    predicted = labels.clone()
    planted = {(10, 11): 3, (11, 10): 2, (42, 7): 2, (99, 0): 1}
    for (true, wrong), videos in planted.items():
        predicted[(labels == true).nonzero().flatten()[:videos]] = wrong
    analysis = analyse(scores_for(predicted.tolist(), size), labels, [f"class {i}" for i in range(size)])
    shown = analysis.most_confused_classes(MAX_CLASSES_DRAWN)
    assert shown[:6] == [10, 11, 42, 7, 99, 0]  # largest confusions first, pairs side by side
    assert len(shown) == MAX_CLASSES_DRAWN == len(set(shown))

    axes = confusion_figure(analysis, "model on data").axes[0]
    assert f"the {MAX_CLASSES_DRAWN} of {size} classes most often confused" in axes.get_title()
    assert [label.get_text() for label in axes.get_xticklabels()] == [f"class {i}" for i in shown]
    assert {text.get_text() for text in axes.texts} >= {"3", "2", "1"}
