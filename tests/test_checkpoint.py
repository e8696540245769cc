"""load_unet / tiny checkpoints: round trips for every kind, kind + config inference, clear errors for bad files."""
from __future__ import annotations

import json

import pytest
import torch
import yaml
from conftest import PARITY, REFERENCE, require_shared
from safetensors.torch import load_file, save_file

from sv4d_models import load_clip_image_encoder, load_unet, load_vae_decoder, load_vae_encoder
from sv4d_models.checkpoint import infer_model_kind, infer_network_config
from sv4d_models.config import official_config
from sv4d_models.kinds import MODEL_KINDS
from sv4d_models.tiny_checkpoint import main as tiny_main
from sv4d_models.tiny_checkpoint import tiny_engine_state_dict, write_tiny_checkpoint

PREFIX = "model.diffusion_model."


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    return {k: write_tiny_checkpoint(d / f"{k}.safetensors", k, seed=3) for k in MODEL_KINDS}


def _unet_call(model, n_frames=2, n_views=None, size=8, gen=None):
    gen = gen or torch.Generator().manual_seed(0)
    cfg = model.config
    if model.is_sv4d:
        n_views = n_views or 2
        n = n_frames * n_views
        extra = dict(context=torch.randn(1, n_frames, cfg.context_dim, generator=gen),
                     cond_view=torch.randn(n_views, 4, size, size, generator=gen), cond_motion=torch.randn(n_frames, 4, size, size))
    else:
        n = n_frames
        extra = dict(context=torch.randn(n, 1, cfg.context_dim, generator=gen))
    return dict(x=torch.randn(n, cfg.in_channels, size, size, generator=gen), timesteps=torch.full((n,), 0.1),
                y=torch.randn(n, cfg.adm_in_channels, generator=gen), num_video_frames=n,
                image_only_indicator=torch.zeros(1, n), **extra)


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_tiny_checkpoint_round_trip(tiny_files, kind):
    path = tiny_files[kind]
    model = load_unet(path, model_kind="sv4d2_8views" if kind == "sv4d2_8views" else None)
    assert model.model_kind == kind
    assert model.config.use_3d_attention == (kind == "sv4d2")
    stored = load_file(path)
    for name, p in model.state_dict().items():
        assert torch.equal(p, stored[PREFIX + name]), name
    with torch.no_grad():
        out = model(**_unet_call(model))
    assert out.shape[1] == 4 and torch.isfinite(out).all()
    clip = load_clip_image_encoder(path)
    emb = clip(torch.rand(2, 3, 40, 40) * 2 - 1)
    assert emb.shape == (2, model.config.context_dim)
    z = load_vae_encoder(path).encode(torch.rand(1, 3, 32, 32) * 2 - 1)
    assert z.shape == (1, 4, 4, 4)
    assert load_vae_decoder(path).decode(z).shape == (1, 3, 32, 32)


def test_sv4d2_defaults_to_4_views_and_says_so(tiny_files, caplog):
    sd, _ = tiny_engine_state_dict("sv4d2", seed=0)  # no metadata: kind only from keys
    with caplog.at_level("INFO", logger="sv4d"):
        from sv4d_models.checkpoint import CheckpointSource, unet_shapes

        kind = infer_model_kind(unet_shapes(CheckpointSource(sd))[1])
    assert kind == "sv4d2" and "sv4d2_8views" in caplog.text


def test_tiny_factory_is_deterministic_and_seeded():
    a, meta = tiny_engine_state_dict("sv4d", seed=5)
    b, _ = tiny_engine_state_dict("sv4d", seed=5)
    c, _ = tiny_engine_state_dict("sv4d", seed=6)
    key = PREFIX + "input_blocks.1.1.proj_in.weight"
    assert torch.equal(a[key], b[key]) and not torch.equal(a[key], c[key])
    assert json.loads(meta["sv4d_network_config"])["params"]["model_channels"] == 32


def test_cli_writes_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "t.safetensors"
    assert tiny_main([str(out), "--model", "sv3d_u", "--seed", "2"]) == 0
    assert "sv3d_u" in capsys.readouterr().out and out.is_file()
    with pytest.raises(FileExistsError, match="--overwrite"):
        tiny_main([str(out), "--model", "sv3d_u"])


def test_state_dict_input_is_assigned_without_copies():
    sd, meta = tiny_engine_state_dict("sv4d", seed=0)
    cfg = json.loads(meta["sv4d_network_config"])
    model = load_unet(sd, network_config=cfg)
    key = "input_blocks.1.1.proj_in.weight"
    assert model.state_dict()[key].data_ptr() == sd[PREFIX + key].data_ptr()
    bare = {k[len(PREFIX):]: v for k, v in sd.items() if k.startswith(PREFIX)}  # UNet-only export, no prefix
    assert torch.equal(load_unet(bare, network_config=cfg).state_dict()[key], sd[PREFIX + key])


def test_fixture_weights_need_network_config_and_then_match():
    d = require_shared(PARITY / "fixture_a")
    weights = {k: v.float() for k, v in load_file(d / "weights.safetensors").items()}
    with pytest.raises(ValueError, match="num_head_channels"):
        load_unet(weights)
    cfg = yaml.safe_load((d / "tiny_config.yaml").read_text())["network_config"]
    model = load_unet(weights, network_config=cfg)
    inp, exp = load_file(d / "inputs.safetensors"), load_file(d / "expected_output.safetensors")
    with torch.no_grad():
        out = model(inp["unet.x"], inp["unet.timesteps"], inp["unet.context"], inp["unet.y"], cond_view=inp["unet.cond_view"],
                    cond_motion=inp["unet.cond_motion"], num_video_frames=6, image_only_indicator=inp["unet.image_only_indicator"])
    assert (out - exp["unet_out"]).abs().max() < 1e-4


@pytest.mark.parametrize("kind", ["sv4d", "sv4d2", "sv3d_u", "sv3d_p"])
def test_full_size_kind_and_config_inferred_from_official_keys(kind):
    ref = json.loads(require_shared(REFERENCE / f"{kind}_unet_keys.json").read_text())
    shapes = {k[len(PREFIX):]: tuple(v["shape"]) for k, v in ref["keys"].items()}
    assert infer_model_kind(shapes) == kind
    assert infer_network_config(kind, shapes, {}) == official_config(kind)


def _save(path, sd):
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


def test_sd_checkpoint_is_named(tmp_path):
    sd = {"cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": torch.zeros(4, 4),
          PREFIX + "input_blocks.0.0.weight": torch.zeros(32, 4, 3, 3), PREFIX + "label_emb.0.0.weight": torch.zeros(8, 8)}
    with pytest.raises(ValueError, match="Stable Diffusion 1.x/2.x text-to-image"):
        load_unet(_save(tmp_path / "sd15.safetensors", sd))


def test_svd_checkpoint_is_named(tmp_path):
    sd = {PREFIX + "input_blocks.1.0.time_stack.in_layers.0.weight": torch.zeros(4),
          PREFIX + "label_emb.0.0.weight": torch.zeros(16, 768), PREFIX + "input_blocks.0.0.weight": torch.zeros(32, 8, 3, 3)}
    with pytest.raises(ValueError, match=r"Stable Video Diffusion \(SVD img2vid\)"):
        load_unet(_save(tmp_path / "svd.safetensors", sd))


def test_truncated_file_is_reported(tiny_files, tmp_path):
    data = tiny_files["sv4d"].read_bytes()
    bad = tmp_path / "sv4d.safetensors"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match="truncated or corrupt") as exc:
        load_unet(bad)
    assert str(bad) in str(exc.value)


def test_shape_mismatch_and_missing_keys_are_listed(tmp_path):
    sd, meta = tiny_engine_state_dict("sv4d", seed=0)
    sd[PREFIX + "out.2.weight"] = torch.zeros(5, 32, 3, 3)
    del sd[PREFIX + "middle_block.1.proj_out.bias"]
    path = tmp_path / "damaged.safetensors"
    save_file(sd, str(path), metadata=meta)
    with pytest.raises(ValueError) as exc:
        load_unet(path)
    msg = str(exc.value)
    assert "looks like a 'sv4d' checkpoint" in msg
    assert "out.2.weight: file (5, 32, 3, 3) vs model (4, 32, 3, 3)" in msg
    assert "1 missing keys" in msg and "middle_block.1.proj_out.bias" in msg


def test_missing_file_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="models/checkpoints"):
        load_unet(tmp_path / "sv4d.safetensors")


def test_unknown_network_config_key_in_load_unet(tiny_files):
    cfg = json.loads(tiny_engine_state_dict("sv4d", 0)[1]["sv4d_network_config"])
    cfg["params"]["use_magic"] = True
    with pytest.raises(ValueError, match="'use_magic'"):
        load_unet(tiny_files["sv4d"], network_config=cfg)


def test_requested_kind_must_match_weights(tiny_files):
    with pytest.raises(ValueError, match="model_kind='sv3d_p' was requested but the weights are a 'sv4d'"):
        load_unet(tiny_files["sv4d"], model_kind="sv3d_p")
