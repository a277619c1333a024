"""Reduced precision stays within bf16 rounding of fp32 on the tiny model (bf16 autocast through the project's
own precision code, and bf16 weights).

Tolerances: bf16 keeps 8 significant bits, a relative rounding step of 2**-8 = 0.0039. Cosine similarities
lie in [-1, 1], so two such steps, 0.008, bound the logits; class probabilities near 1/4 move by about a
quarter of that, 0.002 bounds them. Measured on seeds 0-4: at most 0.0035 (logits) and 0.0005 (probabilities),
against a spread of 0.06-0.16 and 0.01-0.026 across the compared values, so a real bug shows.
"""
import copy
from pathlib import Path

import pytest
import torch

import clip
from modules import VideoHeader, text_prompt
from modules.video_clip import VideoEncoder, class_features, view_scores
from utils.hardware import native_bf16_flags
from utils.precision import autocast_for, resolve_precision

CPU = torch.device("cpu")
LOGIT_TOLERANCE, SCORE_TOLERANCE = 2 * 2 ** -8, 2 ** -9


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    clip_model = clip.create_model("ViT-Tiny/16", image_resolution=32).eval()
    return VideoEncoder(clip_model).eval(), VideoHeader.for_clip("Transf", "VCS", clip_model).eval()


def scores(encoder, header, views, prompts, autocast):
    with torch.no_grad(), autocast():
        eot, tokens = class_features(encoder, prompts)
        return view_scores(encoder, header, views, eot, tokens).float(), header(
            encoder.encode_video(views.flatten(0, 1)), tokens, eot).float()


def test_bf16_autocast_and_bf16_weights_match_fp32_within_bf16_rounding(model):
    encoder, header = model
    views = torch.randn(3, 2, 4, 3, 32, 32)
    prompts = text_prompt(["moving left", "moving right", "growing", "shrinking"])
    reference_scores, reference_logits = scores(encoder, header, views, prompts, autocast_for("fp32", CPU))
    bf16 = autocast_for(resolve_precision("bf16", CPU), CPU)
    autocast_scores, autocast_logits = scores(encoder, header, views, prompts, bf16)
    half_encoder, half_header = copy.deepcopy(encoder).to(torch.bfloat16), copy.deepcopy(header).to(torch.bfloat16)
    half_scores, half_logits = scores(half_encoder, half_header, views.to(torch.bfloat16), prompts,
                                      autocast_for("fp32", CPU))
    # The tolerances are far below the spread of what they compare, and bf16 really ran.
    assert LOGIT_TOLERANCE < (reference_logits.max() - reference_logits.min()) / 10
    assert SCORE_TOLERANCE < (reference_scores.max() - reference_scores.min()) / 10
    for logits in (autocast_logits, half_logits):  # cosine similarities in [-1, 1]
        assert not torch.equal(logits, reference_logits)
        torch.testing.assert_close(logits, reference_logits, atol=LOGIT_TOLERANCE, rtol=0)
    for result in (autocast_scores, half_scores):
        torch.testing.assert_close(result, reference_scores, atol=SCORE_TOLERANCE, rtol=0)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from tests.tiny_run import write_tiny_checkpoint
    return write_tiny_checkpoint(tmp_path_factory.mktemp("precision_ckpt") / "model_best.pt", seed=0)


@pytest.fixture
def evaluated_weight_dtypes(monkeypatch):
    """The dtypes of the encoder's and header's weights at every evaluation forward (test.py), as a list."""
    from workflows import evaluation

    weight_dtypes, real_view_scores = [], evaluation.view_scores

    def recording_view_scores(encoder, header, *args, **kwargs):
        weight_dtypes.append({p.dtype for p in (*encoder.parameters(), *header.parameters())})
        return real_view_scores(encoder, header, *args, **kwargs)

    monkeypatch.setattr(evaluation, "view_scores", recording_view_scores)
    return weight_dtypes


def test_test_py_holds_bf16_weights_and_scores_within_bf16_rounding(tiny_config, checkpoint, tmp_path,
                                                                     evaluated_weight_dtypes):
    """--precision bf16: the evaluated model's weights are bf16 (autocast casts none of them per forward)."""
    import test as test_program

    config, scores = tiny_config.write(), {}
    for precision in ("fp32", "bf16"):
        evaluated_weight_dtypes.clear()
        test_program.main(["--config", config, "--weights", checkpoint, "--cpu", "--no_progress",
                           "--precision", precision, "--save_scores", str(tmp_path / f"{precision}.pt")])
        expected = torch.float32 if precision == "fp32" else torch.bfloat16
        assert evaluated_weight_dtypes and all(dtypes == {expected} for dtypes in evaluated_weight_dtypes), precision
        scores[precision] = torch.load(tmp_path / f"{precision}.pt", weights_only=True)["scores"]
    assert SCORE_TOLERANCE < (scores["fp32"].max() - scores["fp32"].min()) / 5  # untrained: probabilities near 1/8
    assert not torch.equal(scores["bf16"], scores["fp32"])
    torch.testing.assert_close(scores["bf16"], scores["fp32"], atol=SCORE_TOLERANCE, rtol=0)


@pytest.mark.parametrize("flags, expected", [
    ("fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile", ("amx_bf16", "avx512_bf16")),  # Sapphire Rapids
    ("fpu sse avx2 avx512f avx512_bf16", ("avx512_bf16",)),  # Zen 4, Cooper Lake
    ("fpu sse avx2 avx512f avx512_vnni", ()),  # Ice Lake: AVX-512 without bf16
])
def test_native_bf16_flags_are_read_from_the_cpuinfo_flags_line(flags, expected, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("".join(f"processor\t: {n}\nmodel name\t: some CPU with amx_bf16 in its name\n"
                               f"flags\t\t: {flags}\nbugs\t\t: avx512_bf16_bug\n\n" for n in range(2)))
    assert native_bf16_flags(str(cpuinfo)) == expected
    assert native_bf16_flags(str(tmp_path / "missing")) == ()


@pytest.mark.parametrize("flags, precision, line", [
    (("avx512_bf16",), "bf16", "precision bf16 (the default on this CPU: avx512_bf16; --precision fp32 for float32)"),
    ((), "fp32", "precision fp32 (the default on a CPU without native bf16)"),
])
def test_default_cpu_precision_follows_native_bf16_and_is_logged(flags, precision, line, tiny_config, checkpoint,
                                                                  tmp_path, monkeypatch, capsys,
                                                                  evaluated_weight_dtypes):
    """Without --precision, test.py on the CPU runs bf16 (bf16 weights) where the CPU multiplies bf16 natively,
    float32 elsewhere, and its first line says which and why; an explicit --precision fp32 always wins."""
    import test as test_program
    from utils import precision as precisions

    monkeypatch.setattr(precisions, "native_bf16_flags", lambda: flags)
    assert precisions.resolve_precision(None, CPU) == precision
    assert precisions.resolve_precision(None, torch.device("cuda")) == "amp"
    assert precisions.resolve_precision("fp32", CPU) == "fp32"
    test_program.main(["--config", tiny_config.write(), "--weights", checkpoint, "--cpu", "--no_progress"])
    assert line in capsys.readouterr().out
    expected = torch.bfloat16 if precision == "bf16" else torch.float32
    assert evaluated_weight_dtypes and all(dtypes == {expected} for dtypes in evaluated_weight_dtypes)


def test_predictor_holds_bf16_weights_and_predicts_within_bf16_rounding(tiny_config, checkpoint):
    """tools/predict.py and the app: the Predictor of --precision bf16 scores with bf16 weights."""
    from utils.config import load_config
    from workflows.prediction import Predictor

    config = load_config(tiny_config.write())
    video = str(Path(config.data.val_root) / Path(config.data.val_list).read_text().split()[0])  # a frame folder
    classes = ["moving left", "moving right", "growing", "shrinking"]
    predictions = {p: Predictor(config, classes, checkpoint, precision=p) for p in ("fp32", "bf16")}
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        predictor = predictions[precision]
        assert {t.dtype for t in (*predictor.encoder.parameters(), *predictor.header.parameters())} == {dtype}
    fp32, bf16 = (predictions[p].predict(video).scores for p in ("fp32", "bf16"))
    assert not torch.equal(bf16, fp32)
    torch.testing.assert_close(bf16, fp32, atol=SCORE_TOLERANCE, rtol=0)
