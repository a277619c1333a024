"""BIKE checkpoints in the original layout: strict loading, clear mismatch errors, no code execution."""
import os

import pytest
import torch

import clip
from modules import VideoHeader
from tests.tiny_run import original_layout
from utils.checkpoint import load_bike_weights, save_atomically

ARCH = "ViT-Tiny/16"


def build(seed):
    torch.manual_seed(seed)
    model = clip.create_model(ARCH).eval()
    return model, VideoHeader.for_clip("Transf", "VCS", model).eval()


@pytest.mark.parametrize("prefix", ["", "module."])
def test_original_layout_loads_strictly_and_reproduces_outputs(prefix, tmp_path):
    source_model, source_header = build(seed=0)
    torch.save(original_layout(source_model, source_header, prefix), tmp_path / "model_best.pt")
    model, header = build(seed=1)
    checkpoint = load_bike_weights(tmp_path / "model_best.pt", model, header)
    assert checkpoint["epoch"] == 7
    frames = torch.randn(2 * 8, 3, 112, 112)
    text = clip.tokenize(["moving left", "growing"])
    with torch.no_grad():
        for m, h in ((source_model, source_header), (model, header)):
            eot, tokens = m.encode_text(text, return_token=True)
            logits = h(m.encode_image(frames).view(2, 8, -1), tokens, eot)
            if m is source_model:
                expected = logits
    torch.testing.assert_close(logits, expected, rtol=0, atol=0)


def test_wrong_shape_and_unknown_keys_are_named(tmp_path):
    model, header = build(seed=0)
    checkpoint = original_layout(model, header, "module.")
    checkpoint["fusion_model_state_dict"]["module.frame_position_embeddings.weight"] = torch.zeros(16, 128)
    checkpoint["model_state_dict"]["module.visual.extra_token"] = torch.zeros(3)
    del checkpoint["model_state_dict"]["module.ln_final.bias"]
    torch.save(checkpoint, tmp_path / "bad.pt")
    with pytest.raises(ValueError) as error:
        load_bike_weights(tmp_path / "bad.pt", *build(seed=1))
    message = str(error.value)
    assert "ln_final.bias" in message and "visual.extra_token" in message and "bad.pt" in message
    checkpoint["model_state_dict"] = original_layout(model, header, "")["model_state_dict"]
    torch.save(checkpoint, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"frame_position_embeddings.weight: expected \(77, 128\), got \(16, 128\)"):
        load_bike_weights(tmp_path / "bad.pt", *build(seed=1))


class RunsCodeOnLoad:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"model_state_dict": RunsCodeOnLoad()}, tmp_path / "evil.pt")
    with pytest.raises(clip.weights.UnsafeWeightsError, match="evil.pt"):
        load_bike_weights(tmp_path / "evil.pt", *build(seed=0))
    with pytest.raises(clip.weights.UnsafeWeightsError):
        clip.load(str(tmp_path / "evil.pt"))
    assert not (tmp_path / "pwned").exists()


def test_not_a_checkpoint_and_missing_file(tmp_path):
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a BIKE checkpoint"):
        load_bike_weights(tmp_path / "other.pt", *build(seed=0))
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        load_bike_weights(tmp_path / "absent.pt", *build(seed=0))
    (tmp_path / "truncated.pt").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(ValueError, match="truncated.pt"):
        load_bike_weights(tmp_path / "truncated.pt", *build(seed=0))


def test_clip_load_accepts_a_bike_checkpoint_for_its_clip_part(tmp_path):
    model, header = build(seed=0)
    torch.save(original_layout(model, header, "module."), tmp_path / "last_model.pt")
    loaded, _ = clip.load(str(tmp_path / "last_model.pt"))
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


def test_atomic_save_keeps_the_previous_file_when_saving_fails(tmp_path):
    target = tmp_path / "last_model.pt"
    save_atomically({"epoch": 1}, target)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("killed while saving")

    with pytest.raises(RuntimeError):
        save_atomically({"epoch": 2, "bad": Unpicklable()}, target)
    assert torch.load(target, weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last_model.pt"]
