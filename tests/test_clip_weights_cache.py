"""Finding OpenAI weights: cache folder, SHA-256 check, download (over file://), clear errors offline."""
import hashlib

import pytest
import torch

import clip
import clip.clip as clip_api


def tiny_weights_url(tmp_path, content=None):
    """A file laid out like OpenAI's URLs: .../<sha256>/<name>.pt, served through file://."""
    source = tmp_path / "source.pt"
    torch.save(clip.create_model("RN-Tiny").state_dict(), source)
    data = source.read_bytes() if content is None else content
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    folder = tmp_path / "server" / digest
    folder.mkdir(parents=True)
    (folder / "RN-Tiny-weights.pt").write_bytes(data)
    return f"file://{folder}/RN-Tiny-weights.pt", digest


def test_download_verifies_and_caches(tmp_path):
    url, digest = tiny_weights_url(tmp_path)
    cache = tmp_path / "cache"
    path = clip_api.download(url, cache)
    assert path == cache / "RN-Tiny-weights.pt" and clip_api.sha256_of(path) == digest
    (tmp_path / "server" / digest / "RN-Tiny-weights.pt").unlink()
    assert clip_api.download(url, cache) == path  # served from the cache, no network needed


def test_corrupt_download_is_rejected_and_leaves_nothing(tmp_path):
    url, _ = tiny_weights_url(tmp_path, content=b"not the weights")
    with pytest.raises(clip.WeightsUnavailableError, match="SHA-256"):
        clip_api.download(url, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_offline_error_names_file_url_and_folder(tmp_path):
    url = f"file://{tmp_path}/nowhere/{'0' * 64}/ViT-B-32.pt"
    with pytest.raises(clip.WeightsUnavailableError) as error:
        clip_api.download(url, tmp_path / "cache")
    message = str(error.value)
    assert "ViT-B-32.pt" in message and url in message and str(tmp_path / "cache") in message


def test_load_by_name_uses_the_cache_folder_from_the_environment(tmp_path, monkeypatch):
    url, _ = tiny_weights_url(tmp_path)
    monkeypatch.setitem(clip_api.MODEL_URLS, "RN50", url)
    monkeypatch.setenv(clip_api.CACHE_ENV, str(tmp_path / "env-cache"))
    model, _ = clip.load("RN50")
    assert (tmp_path / "env-cache" / "RN-Tiny-weights.pt").is_file()
    assert model.config == clip.architectures.RANDOM_INIT_ARCHITECTURES["RN-Tiny"]


def test_original_spelling_of_the_336px_model_is_accepted(tmp_path, monkeypatch):
    url, _ = tiny_weights_url(tmp_path)
    monkeypatch.setitem(clip_api.MODEL_URLS, "ViT-L/14@336px", url)
    clip.load("ViT-L/14-336px", download_root=tmp_path / "cache")
    assert (tmp_path / "cache" / "RN-Tiny-weights.pt").is_file()
    assert "ViT-L/14@336px" in clip.available_models()
