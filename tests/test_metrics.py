"""mAP figures against hand-computed average precision and the original scripts' formulas written out in
plain Python (torchnet's APMeter rank formula, the original test scripts' softmaxes and batching)."""
import math
from pathlib import Path

import pytest
import torch

from workflows.evaluation import score_metrics
from utils.metrics import average_precisions, mean_average_precision


def threshold_ap(scores, positives):
    """AP with tied scores as one threshold: sum over thresholds of recall gain x precision."""
    total = sum(positives)
    ap, tp, fp = 0.0, 0, 0
    for threshold in sorted(set(scores), reverse=True):
        group = [p for s, p in zip(scores, positives) if s == threshold]
        gained = sum(group)
        tp, fp = tp + gained, fp + len(group) - gained
        ap += gained / total * tp / (tp + fp)
    return ap


def torchnet_ap(scores, positives):
    """torchnet's APMeter for one class (distinct scores): precision at the rank of every positive,
    summed, over max(positives, 1): a class without positives gets 0."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    tp, total = 0, 0.0
    for rank, index in enumerate(order, start=1):
        if positives[index]:
            tp += 1
            total += tp / rank
    return total / max(sum(positives), 1)


def torchnet_map(scores, targets):
    columns = range(len(scores[0]))
    return 100 * sum(torchnet_ap([row[c] for row in scores], [row[c] for row in targets]) for c in columns) / len(columns)


def softmax_rows(rows):
    out = []
    for row in rows:
        exps = [math.exp(v) for v in row]
        out.append([e / sum(exps) for e in exps])
    return out


def test_average_precision_by_hand_with_ties():
    # Class 0: scores 0.9 (pos), 0.5 (neg), 0.5 (pos), 0.1 (pos): thresholds 0.9 -> P 1, R 1/3;
    # 0.5 -> P 2/3, R 2/3; 0.1 -> P 3/4, R 1; AP = (1 + 2/3 + 3/4) / 3 = 29/36.
    # Class 1: one positive tied with two negatives at the top: P 1/3, R 1 -> AP 1/3.
    # Class 2: no positives -> undefined (NaN); 'zero' counts it as 0 (torchnet), 'skip' leaves it out.
    scores = torch.tensor([[0.9, 0.7, 0.2], [0.5, 0.7, 0.3], [0.5, 0.7, 0.1], [0.1, 0.2, 0.4]])
    targets = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 0, 0], [1, 0, 0]])
    ap = average_precisions(scores, targets)
    assert ap[:2].tolist() == pytest.approx([29 / 36, 1 / 3])
    assert math.isnan(ap[2])
    assert mean_average_precision(scores, targets, "skip") == pytest.approx(100 * (29 / 36 + 1 / 3) / 2)
    assert mean_average_precision(scores, targets, "zero") == pytest.approx(100 * (29 / 36 + 1 / 3) / 3)
    # torchnet's rule (the original's): ranks in a stable order, ties in list order. Class 0 ranks
    # pos, neg, pos, pos: (1 + 2/3 + 3/4) / 3 = 29/36 again; class 1 ranks neg, pos, neg: 1/2.
    ranked = average_precisions(scores, targets, ties="ranked")
    assert ranked[:2].tolist() == pytest.approx([29 / 36, 1 / 2])
    # Class indices are one-hot targets.
    assert mean_average_precision(scores, torch.tensor([0, 1, 0, 0]), "skip") == pytest.approx(100 * (29 / 36 + 1 / 3) / 2)


def test_average_precision_matches_plain_python_on_random_scores_with_ties():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 6, (40, 7), generator=generator).float() / 5  # many ties
    targets = (torch.rand(40, 7, generator=generator) < 0.3).long()
    expected = [threshold_ap(scores[:, c].tolist(), targets[:, c].tolist()) for c in range(7)]
    assert average_precisions(scores, targets).tolist() == pytest.approx(expected)


def view_probabilities(generator, videos, views, classes, spread=0.3):
    logits = torch.randn(videos, views, classes, generator=generator) * spread
    return logits.softmax(dim=-1).mean(dim=1)


def test_activitynet_map_is_the_originals_published_protocol():
    # The original: per-view softmax, mean over views, softmax over classes (test.py); then its
    # mean_average_precision softmaxes again and feeds torchnet's mAPMeter (no positives: AP 0).
    generator = torch.Generator().manual_seed(1)
    probabilities = view_probabilities(generator, 30, 6, 5, spread=1)
    labels = torch.randint(0, 4, (30,), generator=generator)  # class 4 never occurs
    final = softmax_rows(softmax_rows(probabilities.tolist()))
    one_hot = [[int(label == c) for c in range(5)] for label in labels.tolist()]
    expected = torchnet_map(final, one_hot)

    result = score_metrics(probabilities, labels, with_map=True)
    assert result.mean_ap == pytest.approx(expected, abs=1e-4)
    # A skipped softmax or leaving the empty class out would show.
    for fewer_softmaxes in (probabilities.tolist(), softmax_rows(probabilities.tolist())):
        assert abs(torchnet_map(fewer_softmaxes, one_hot) - expected) > 1e-3
    assert result.classes_without_positives == 1
    assert result.map_without_empty_classes == pytest.approx(expected * 5 / 4, abs=1e-4)
    summary = result.summary()
    assert f"Overall mAP {expected:.3f}%" in summary
    assert "1 of 5 classes have no positive video and count as AP 0" in summary
    assert f"over the other classes: {expected * 5 / 4:.3f}%" in summary


def original_charades_steps(num_videos, batch_size, processes):
    """The original's DistributedSampler(shuffle=True, seed=0) at epoch 0, written out: a permutation from
    a generator seeded 0, padded with its first indices to a multiple of the processes, rank r taking every
    processes-th index from r; each step gathers every rank's next batch in rank order."""
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(num_videos, generator=generator).tolist()
    per_rank = math.ceil(num_videos / processes)
    order += order[: per_rank * processes - num_videos]
    shards = [order[rank::processes] for rank in range(processes)]
    return [sum((shard[start:start + batch_size] for shard in shards), [])
            for start in range(0, per_rank, batch_size)]


@pytest.mark.parametrize("batch_size, processes", [(4, 1), (3, 2)])
def test_charades_main_map_is_the_whole_set_and_the_originals_running_figure_is_labelled(batch_size, processes):
    generator = torch.Generator().manual_seed(2)
    probabilities = view_probabilities(generator, 23, 2, 6)
    targets = (torch.rand(23, 6, generator=generator) < 0.15).long()
    final = softmax_rows(probabilities.tolist())  # test_charades.py's final scores: the double softmax
    rows = targets.tolist()
    seen, weighted, count = [], 0.0, 0
    for step in original_charades_steps(23, batch_size, processes):
        seen += step
        weighted += len(step) * torchnet_map([final[i] for i in seen], [rows[i] for i in seen])
        count += len(step)

    result = score_metrics(probabilities, targets, original_batches=(batch_size, processes))
    assert result.mean_ap == pytest.approx(torchnet_map(final, rows), abs=1e-4)
    assert result.original_running_map == pytest.approx(weighted / count, abs=1e-4)
    assert abs(result.original_running_map - result.mean_ap) > 1  # the quirk is visible on this data
    assert (f"Original test_charades.py figure (running average over batches of {batch_size} x {processes} "
            f"processes of the cumulative mAP, not the test set's mAP): {weighted / count:.3f}%") in result.summary()


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    """A checkpoint of a random tiny model in the original layout."""
    import clip
    from modules import VideoHeader
    from tests.tiny_run import original_layout
    torch.manual_seed(0)
    model = clip.create_model("ViT-Tiny/16", image_resolution=32)
    path = tmp_path_factory.mktemp("weights") / "model.pt"
    torch.save(original_layout(model, VideoHeader.for_clip("Transf", "VCS", model), "module."), path)
    return str(path)


def run_test_py(config, weights, folder, capsys):
    import test as test_program
    test_program.main(["--config", config, "--weights", weights, "--cpu", "--no_progress",
                       "--save_scores", str(folder / "scores.pt")])
    return capsys.readouterr().out, torch.load(folder / "scores.pt", weights_only=True)


def test_test_py_prints_activitynet_map_by_the_published_protocol(tiny_config, random_weights, tmp_path, capsys):
    out, saved = run_test_py(tiny_config.write(data={"dataset": "anet"}), random_weights, tmp_path, capsys)
    one_hot = [[int(label == c) for c in range(8)] for label in saved["labels"].tolist()]
    expected = torchnet_map(softmax_rows(softmax_rows(saved["scores"].tolist())), one_hot)
    assert f"Overall mAP {expected:.3f}%" in out and "Overall Prec@1" in out


def test_test_py_on_charades_prints_the_whole_set_map_and_the_originals_figure(tiny_config, tiny_dataset,
                                                                              random_weights, tmp_path, capsys):
    names = [line.split(",", 1)[1] for line in Path(tiny_dataset.labels).read_text().splitlines()[1:]]
    classes = tmp_path / "classes.txt"
    classes.write_text("".join(f"c{i:03d} {name}\n" for i, name in enumerate(names)))
    rows = ["id,subject,scene,actions,length"]
    for position, line in enumerate(Path(tiny_dataset.val_frames).read_text().splitlines()):
        folder, _, label = line.split()
        actions = [f"c{int(label):03d} 0.00 1.00"] + ([f"c{(int(label) + 1) % 8:03d} 0.50 2.00"] if position % 3 else [])
        rows.append(f'{folder},S,Room,"{";".join(actions)}",2.0')
    csv = tmp_path / "Charades_v1_test.csv"
    csv.write_text("\n".join(rows) + "\n")
    config = tiny_config.write(data={"dataset": "charades", "val_list": str(csv), "label_list": str(classes),
                                     "batch_size": 3, "fps": 24})
    out, saved = run_test_py(config, random_weights, tmp_path, capsys)
    final, targets = softmax_rows(saved["scores"].tolist()), saved["labels"].long().tolist()
    seen, weighted, count = [], 0.0, 0
    for step in original_charades_steps(len(final), 3, 1):
        seen += step
        weighted += len(step) * torchnet_map([final[i] for i in seen], [targets[i] for i in seen])
        count += len(step)
    assert f"Overall mAP {torchnet_map(final, targets):.3f}%" in out
    assert (f"Original test_charades.py figure (running average over batches of 3 x 1 processes of the cumulative "
            f"mAP, not the test set's mAP): {weighted / count:.3f}%") in out
