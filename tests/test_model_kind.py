"""One kind resolver for every entry point (``sv4d_models.checkpoint.kind``): requested kind, then our metadata, then
the official file name, then the weights. The official 8-view SV4D 2.0 file (same keys as the 4-view one) runs as
8 views through the library and the CLI by its name; renamed, every entry point says it guessed."""
from __future__ import annotations

import json
import warnings

import pytest
import torch

from conftest import official_layout
from sv4d_models import SV4DPipeline, load_unet
from sv4d_models.checkpoint import resolve_kind
from sv4d_models.cli import main
from sv4d_models.tiny_checkpoint import write_tiny_checkpoint


@pytest.fixture(scope="module")
def eight(tmp_path_factory):
    """The tiny 8-view file in the official layout, under its official name and under two others."""
    d = tmp_path_factory.mktemp("kinds")
    tiny = write_tiny_checkpoint(d / "tiny.safetensors", "sv4d2_8views", seed=3)
    return {name: official_layout(tiny, d / name / f"{name}.safetensors" if name != "official" else
                                  d / "official" / "sv4d2_8views.safetensors")
            for name in ("official", "sv4d2", "my_sv4d2_8view_fp16", "renamed")}


@pytest.mark.parametrize("name,kind,reason", [
    ("official", "sv4d2_8views", "official file name sv4d2_8views.safetensors"),
    ("sv4d2", "sv4d2", "official file name sv4d2.safetensors"),
    ("my_sv4d2_8view_fp16", "sv4d2_8views", "file name contains '8view'"),
])
def test_the_file_name_decides_between_look_alike_kinds(eight, name, kind, reason):
    info = resolve_kind(eight[name])
    assert (info.kind, info.reason, info.warning) == (kind, reason, None)


def test_only_the_weights_left_is_a_guess_that_names_the_fix(eight):
    info = resolve_kind(eight["renamed"])
    assert info.kind == "sv4d2" and info.reason == "weights (sv4d2 assumed)"
    assert "renamed.safetensors" in info.warning and "--model-kind" in info.warning and "sv4d2_8views" in info.warning
    assert resolve_kind(eight["renamed"], "sv4d2_8views").warning is None  # asked for: no guess, no warning
    with pytest.raises(ValueError, match="model_kind='sv4d' was requested but the weights are a 'sv4d2'"):
        resolve_kind(eight["renamed"], "sv4d")


def test_metadata_beats_the_name_and_must_agree_with_the_weights(tmp_path):
    path = write_tiny_checkpoint(tmp_path / "sv4d2_8views.safetensors", "sv4d2", seed=1)  # our file, misnamed
    assert (resolve_kind(path).kind, resolve_kind(path).reason) == ("sv4d2", "file metadata (sv4d_model_kind)")
    from safetensors.torch import load_file, save_file

    save_file(load_file(str(path)), str(tmp_path / "lie.safetensors"), metadata={"sv4d_model_kind": "sv4d"})
    with pytest.raises(ValueError, match="metadata says sv4d_model_kind='sv4d' but the weights are a 'sv4d2'"):
        resolve_kind(tmp_path / "lie.safetensors")


def test_library_runs_the_official_name_as_8_views_and_warns_when_renamed(eight):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the official name: no guess, no warning
        pipe = SV4DPipeline.from_checkpoints(eight["official"], config={"image_size": 32, "num_steps": 1})
        unet = load_unet(eight["official"])
    assert pipe.config.sampling.model_kind == "sv4d2_8views" and unet.model_kind == "sv4d2_8views"
    assert not unet.config.use_3d_attention  # the 8-view model's view attention, not the 4-view one's
    result = pipe.run(torch.rand(5, 3, 32, 32) * 2 - 1)
    assert result.images.shape[:2] == (5, 9)
    with pytest.warns(UserWarning, match="renamed.safetensors.*sv4d2_8views"):
        assert SV4DPipeline.from_checkpoints(eight["renamed"]).config.sampling.model_kind == "sv4d2"
    with pytest.warns(UserWarning, match="--model-kind"):
        assert load_unet(eight["renamed"]).model_kind == "sv4d2"


def _clip(tmp_path):
    from PIL import Image

    frames = [Image.fromarray((torch.rand(32, 32, 3) * 255).byte().numpy()) for _ in range(5)]
    frames[0].save(tmp_path / "clip.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return tmp_path / "clip.gif"


def test_cli_runs_the_official_name_as_8_views_and_warns_on_stderr_when_renamed(eight, tmp_path, capsys):
    video = _clip(tmp_path)
    common = ["--image-size", "32", "--steps", "1", "--device", "cpu", "--skip-nerf", "--quiet"]
    assert main(["run", str(video), "--out", str(tmp_path / "a"), "--sv4d", str(eight["official"]), *common]) == 0
    assert "warning" not in capsys.readouterr().err
    kind = json.loads((tmp_path / "a" / "manifest.json").read_text())["models"]["sv4d"]["kind"]
    assert (kind["kind"], kind["reason"], kind["warning"]) == ("sv4d2_8views", "official file name "
                                                               "sv4d2_8views.safetensors", None)
    assert len(list((tmp_path / "a" / "videos").glob("v*.mp4"))) == 9
    assert main(["run", str(video), "--out", str(tmp_path / "b"), "--sv4d", str(eight["renamed"]), *common]) == 0
    err = capsys.readouterr().err
    assert err.startswith("sv4d: warning: renamed.safetensors") and "--model-kind" in err
    kind = json.loads((tmp_path / "b" / "manifest.json").read_text())["models"]["sv4d"]["kind"]
    assert kind["kind"] == "sv4d2" and "--model-kind" in kind["warning"]
    assert len(list((tmp_path / "b" / "videos").glob("v*.mp4"))) == 5
