"""Score analysis: confusion counts, per-class accuracy, largest confusions, the picture, and errors."""
import numpy as np
import pytest
import torch
from PIL import Image

import tools.analyze_scores as analyze_scores
from utils.score_analysis import analyse

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
