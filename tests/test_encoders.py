"""Conditioning encoders: kornia-0.6.9 resize, OpenCLIP image tower, SD 2.x VAE, strict loaders, tiny weights."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from sv4d_models.encoders import (
    CLIP_MEAN,
    CLIP_PREFIX,
    CLIP_STD,
    TEXT_LEFTOVER_KEYS,
    TINY_VAE_CONFIG,
    ClipVisionConfig,
    VAEConfig,
    antialias_params,
    load_clip_image_encoder,
    load_vae_decoder,
    load_vae_encoder,
    resize,
    tiny_clip_state_dict,
    tiny_vae_state_dict,
)
from sv4d_models.checkpoint import CheckpointSource
from conftest import REFERENCE, require_shared

SV4D_VAE_PREFIXES = [f"conditioner.embedders.{i}.encoder." for i in (1, 4, 5)]
DEC_PREFIX = "first_stage_model.decoder."


def _ref(name: str) -> dict:
    return json.loads(require_shared(REFERENCE / name).read_text())


@pytest.fixture(scope="module")
def tiny_sd() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {**tiny_clip_state_dict(g), **tiny_vae_state_dict(g, prefix=SV4D_VAE_PREFIXES)}


@pytest.fixture(scope="module")
def clip(tiny_sd):
    return load_clip_image_encoder(tiny_sd)


@pytest.fixture(scope="module")
def vae_enc(tiny_sd):
    return load_vae_encoder(tiny_sd)


@pytest.fixture(scope="module")
def vae_dec(tiny_sd):
    return load_vae_decoder(tiny_sd)


def _images(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ----------------------------------------------------------------------------------------------- resize


@pytest.mark.parametrize("hw", [(576, 576), (300, 500), (225, 224), (1024, 768), (100, 640), (120, 90), (231, 1000)])
def test_resize_matches_kornia(hw):
    kornia = pytest.importorskip("kornia")
    x = _images(2, *hw)
    ours = resize(x, (224, 224), interpolation="bicubic", align_corners=True, antialias=True)
    ref = kornia.geometry.transform.resize(x, (224, 224), interpolation="bicubic", align_corners=True, antialias=True)
    assert ours.shape == (2, 3, 224, 224)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_antialias_params_follow_kornia_069_formula():
    # 576 -> 224: f = 2.571, sigma = 0.786, ks = int(max(3.14, 3)) = 3
    ks, sig = antialias_params((576, 576), (224, 224))
    assert ks == (3, 3) and sig[0] == pytest.approx((576 / 224 - 1) / 2)
    # 1024 x 300 -> 224: f = (4.571, 1.339), ks = (int(7.14) = 7, 3)
    ks, sig = antialias_params((1024, 300), (224, 224))
    assert ks == (7, 3) and sig[1] == pytest.approx((300 / 224 - 1) / 2)
    # even int -> next odd: 1200 -> 224, sigma 2.18, 4 sigma = 8.7 -> 8 -> 9
    assert antialias_params((1200, 1200), (224, 224))[0] == (9, 9)
    # upscaling in both axes: no blur; upscaling in one axis only: minimum sigma 0.001 there
    assert antialias_params((100, 200), (224, 224)) is None
    assert antialias_params((100, 640), (224, 224))[1][0] == 0.001


def test_resize_antialias_blurs_and_same_size_is_identity():
    x = _images(1, 448, 448)
    blurred = resize(x, (224, 224))
    plain = torch.nn.functional.interpolate(x, size=(224, 224), mode="bicubic", align_corners=True)
    assert (blurred - plain).abs().max() > 0.1  # the Gaussian pre-blur is really applied
    assert blurred.std() < plain.std()
    assert resize(x, (448, 448)) is x  # kornia 0.6.9 returns the input unchanged


# ----------------------------------------------------------------------------------------------- full size


def _meta_state(keys: dict, prefix: str) -> dict[str, torch.Tensor]:
    return {k: torch.empty(v["shape"], device="meta") for k, v in keys.items() if k.startswith(prefix)}


def test_full_size_clip_keys_shapes_and_counts_match_reference():
    ref = _ref("sv4d_conditioner_keys.json")
    sd = _meta_state(ref["keys"], CLIP_PREFIX)
    model = load_clip_image_encoder(sd)  # full loader path on meta tensors: inference + strict key check
    cfg = model.config
    assert cfg == ClipVisionConfig()  # ViT-H-14: 224 / 14, width 1280, 32 layers, 16 heads, mlp 4, out 1024
    assert model.visual.transformer.resblocks[0].attn.num_heads == 16
    mine = {CLIP_PREFIX + k: list(v.shape) for k, v in model.state_dict().items()}
    visual = {k: v["shape"] for k, v in ref["keys"].items() if k.startswith(CLIP_PREFIX + "visual.")}
    assert mine == visual
    leftovers = {k[len(CLIP_PREFIX):] for k in sd if not k.startswith(CLIP_PREFIX + "visual.")}
    assert leftovers == set(TEXT_LEFTOVER_KEYS)
    assert sum(t.numel() for t in sd.values()) == 683_800_065 == ref["embedders"][0]["n_parameters"]


@pytest.mark.parametrize("ref_name,indices", [("sv4d_conditioner_keys.json", (1, 4, 5)),
                                              ("sv3d_p_conditioner_keys.json", (1,))])
def test_full_size_vae_encoder_copies_match_reference(ref_name, indices):
    ref = _ref(ref_name)
    all_prefixes = {k.split(".")[2] for k in ref["keys"] if ".encoder." in k}
    assert all_prefixes == {str(i) for i in indices}
    for i in indices:
        prefix = f"conditioner.embedders.{i}.encoder."
        sd = _meta_state(ref["keys"], prefix)
        assert sum(t.numel() for t in sd.values()) == 83_653_863
        enc = load_vae_encoder(sd, prefix=prefix)
        assert enc.config == VAEConfig()  # ch 128, [1,2,4,4], 2 res blocks, z 4, embed 4
        mine = {prefix + k: list(v.shape) for k, v in enc.state_dict().items()}
        expected = {k: list(t.shape) for k, t in sd.items() if not k.startswith(
            (prefix + "decoder.", prefix + "post_quant_conv."))}
        assert mine == expected
        # the tiny factory uses the same key names as the official copy
        tiny = tiny_vae_state_dict(torch.Generator().manual_seed(0), prefix=prefix, decoder_prefix=None)
        assert set(tiny) == set(sd)


def test_full_size_decoder_matches_reference():
    ref = _ref("sv4d_first_stage_model_keys.json")
    sd = _meta_state(ref["keys"], DEC_PREFIX)
    assert len(sd) == len(ref["keys"]) and sum(t.numel() for t in sd.values()) == 49_490_179
    dec = load_vae_decoder(sd)
    assert dec.config == VAEConfig()
    assert {DEC_PREFIX + k: list(v.shape) for k, v in dec.state_dict().items()} == {
        k: v["shape"] for k, v in ref["keys"].items()}
    tiny = tiny_vae_state_dict(torch.Generator().manual_seed(0), prefix=[])
    assert set(tiny) == set(sd)


# ----------------------------------------------------------------------------------------------- numerics


def test_clip_forward_matches_manual_pipeline(clip):
    x = _images(3, 96, 128)
    try:
        import kornia

        pixels = kornia.geometry.transform.resize(x, (224, 224), interpolation="bicubic", align_corners=True,
                                                  antialias=True)
    except ImportError:
        pixels = resize(x, (224, 224))
    pixels = (pixels + 1.0) / 2.0
    pixels = (pixels - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    v = clip.visual
    tokens = v.conv1(pixels).flatten(2).transpose(1, 2)  # [B, 256, width]
    tokens = torch.cat([v.class_embedding.expand(3, 1, -1), tokens], dim=1) + v.positional_embedding
    h = v.transformer(v.ln_pre(tokens))
    expected = v.ln_post(h[:, 0]) @ v.proj
    out = clip(x)
    assert out.shape == (3, 64)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(clip(x, chunk=2), out, atol=1e-6, rtol=0)


def test_vae_encoder_returns_unscaled_posterior_mean(vae_enc):
    x = _images(3, 32, 48)
    z = vae_enc.encode(x)
    assert z.shape == (3, 4, 4, 6)
    moments = vae_enc.quant_conv(vae_enc.encoder(x))  # [B, 8, h, w] = (mean, logvar)
    torch.testing.assert_close(z, moments[:, :4], atol=0, rtol=0)
    torch.testing.assert_close(vae_enc.encode(x, chunk=1), z, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(vae_enc.encode(x, chunk=2), z, atol=1e-5, rtol=1e-5)


def test_vae_decoder_divides_by_scale_factor(vae_dec):
    z = torch.randn(3, 4, 4, 5, generator=torch.Generator().manual_seed(1))
    img = vae_dec.decode(z)
    assert img.shape == (3, 3, 32, 40)
    with torch.no_grad():
        manual = vae_dec(z / 0.18215)
        unscaled = vae_dec(z)
    torch.testing.assert_close(img, manual, atol=1e-5, rtol=1e-5)
    assert (img - unscaled).abs().max() > 1e-2
    torch.testing.assert_close(vae_dec.decode(z, chunk=2), img, atol=1e-5, rtol=1e-5)


def test_vae_attention_is_single_head_softmax_over_positions(vae_enc):
    attn = vae_enc.encoder.mid.attn_1
    x = torch.randn(2, 96, 3, 5, generator=torch.Generator().manual_seed(2))
    hn = attn.norm(x)
    q, k, v = (m(hn).flatten(2) for m in (attn.q, attn.k, attn.v))  # [B, C, HW]
    w = torch.softmax(torch.einsum("bci,bcj->bij", q, k) * 96**-0.5, dim=2)
    out = torch.einsum("bij,bcj->bci", w, v).reshape(2, 96, 3, 5)
    torch.testing.assert_close(attn(x), x + attn.proj_out(out), atol=1e-5, rtol=1e-5)


def test_chunk_must_be_positive(vae_enc):
    with pytest.raises(ValueError, match="chunk must be a positive"):
        vae_enc.encode(_images(3, 16, 16), chunk=0)


# ----------------------------------------------------------------------------------------------- loaders


def test_loaders_assign_without_copy(tiny_sd, clip, vae_enc, vae_dec):
    key = CLIP_PREFIX + "visual.conv1.weight"
    assert clip.visual.conv1.weight.data_ptr() == tiny_sd[key].data_ptr()
    assert vae_enc.quant_conv.weight.data_ptr() == tiny_sd[SV4D_VAE_PREFIXES[0] + "quant_conv.weight"].data_ptr()
    for m in (clip, vae_enc, vae_dec):
        assert not m.training
        assert all(not p.is_meta and not p.requires_grad for p in m.parameters())


def test_safetensors_round_trip_reads_only_needed_keys(tiny_sd, clip, vae_enc, vae_dec, tmp_path, monkeypatch):
    path = tmp_path / "tiny_sv4d.safetensors"
    save_file(tiny_sd, str(path))
    read: list[str] = []
    original = CheckpointSource.get  # every tensor of a file is read through get (tensor() calls it)
    monkeypatch.setattr(CheckpointSource, "get", lambda self, k, *a, **kw: read.append(k) or original(self, k, *a, **kw))
    clip_f = load_clip_image_encoder(path)
    assert read and all(k.startswith(CLIP_PREFIX + "visual.") for k in read)
    read.clear()
    enc_f = load_vae_encoder(str(path), prefix=SV4D_VAE_PREFIXES[1])
    assert all(k.startswith((SV4D_VAE_PREFIXES[1] + "encoder.", SV4D_VAE_PREFIXES[1] + "quant_conv.")) for k in read)
    dec_f = load_vae_decoder(path, dtype=torch.float64)
    x = _images(2, 32, 32)
    torch.testing.assert_close(clip_f(x), clip(x), atol=0, rtol=0)
    z = vae_enc.encode(x)
    torch.testing.assert_close(dec_f.decode(z.double()), vae_dec.decode(z).double(), atol=1e-4, rtol=1e-4)
    # embedder 4 is an independent copy in the tiny factory: different weights, same architecture
    assert (enc_f.encode(x) - z).abs().max() > 1e-3


def test_tiny_factories_are_deterministic():
    a = tiny_clip_state_dict(torch.Generator().manual_seed(3), width=80, layers=1, output_dim=32)
    b = tiny_clip_state_dict(torch.Generator().manual_seed(3), width=80, layers=1, output_dim=32)
    c = tiny_clip_state_dict(torch.Generator().manual_seed(4), width=80, layers=1, output_dim=32)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a[CLIP_PREFIX + "visual.proj"], c[CLIP_PREFIX + "visual.proj"])
    assert a[CLIP_PREFIX + "visual.proj"].shape == (80, 32)
    with pytest.raises(ValueError, match="multiple of 80"):
        tiny_clip_state_dict(torch.Generator(), width=64)


def test_missing_key_is_named(tiny_sd):
    key = CLIP_PREFIX + "visual.transformer.resblocks.1.attn.out_proj.weight"
    broken = {k: v for k, v in tiny_sd.items() if k != key}
    with pytest.raises(ValueError, match=r"missing keys: .*resblocks\.1\.attn\.out_proj\.weight.*SV4D"):
        load_clip_image_encoder(broken)


def test_missing_inference_key_is_named(tiny_sd):
    key = SV4D_VAE_PREFIXES[0] + "quant_conv.weight"
    broken = {k: v for k, v in tiny_sd.items() if k != key}
    with pytest.raises(ValueError, match=r"missing keys: conditioner\.embedders\.1\.encoder\.quant_conv\.weight"):
        load_vae_encoder(broken)


def test_wrong_shape_is_named(tiny_sd):
    key = DEC_PREFIX + "mid.attn_1.q.weight"
    broken = dict(tiny_sd)
    broken[key] = torch.zeros(96, 32, 1, 1)
    with pytest.raises(ValueError, match=r"wrong shapes: first_stage_model\.decoder\.mid\.attn_1\.q\.weight: file "
                                         r"\(96, 32, 1, 1\) vs model \(96, 96, 1, 1\)"):
        load_vae_decoder(broken)


def test_unexpected_key_is_named(tiny_sd):
    extra = dict(tiny_sd)
    extra[CLIP_PREFIX + "visual.attn_pool.query"] = torch.zeros(2)
    with pytest.raises(ValueError, match=r"unexpected keys: .*visual\.attn_pool\.query"):
        load_clip_image_encoder(extra)


def test_sd_checkpoint_without_conditioner_is_explained():
    sd = {
        "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4, 4, 3, 3),
        "cond_stage_model.model.token_embedding.weight": torch.zeros(4, 4),
        "first_stage_model.encoder.conv_in.weight": torch.zeros(32, 3, 3, 3),
    }
    with pytest.raises(ValueError, match=r"no VAE encoder weights.*Stable Diffusion 1\.x/2\.x.*"
                                         r"prefix='first_stage_model\.'"):
        load_vae_encoder(sd)
    with pytest.raises(ValueError, match=r"no CLIP image encoder weights.*Stable Diffusion"):
        load_clip_image_encoder(sd)


def test_truncated_or_wrong_files_raise_value_error(tiny_sd, tmp_path):
    path = tmp_path / "full.safetensors"
    save_file({k: v for k, v in tiny_sd.items() if k.startswith(DEC_PREFIX)}, str(path))
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_vae_decoder(cut)
    with pytest.raises(ValueError, match="does not exist"):
        load_vae_decoder(tmp_path / "nope.safetensors")
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"x")
    with pytest.raises(ValueError, match="not a .safetensors file"):
        load_vae_decoder(ckpt)
    with pytest.raises(TypeError, match="state dict"):
        load_vae_decoder(42)


def test_config_from_dict_rejects_unknown_keys():
    assert VAEConfig.from_dict({"ch": 32, "ch_mult": [1, 2]}) == VAEConfig(ch=32, ch_mult=(1, 2))
    with pytest.raises(ValueError, match="unknown VAEConfig key 'chmult'"):
        VAEConfig.from_dict({"chmult": [1]})
    with pytest.raises(ValueError, match="unknown ClipVisionConfig key 'depth'"):
        ClipVisionConfig.from_dict({"depth": 2})
    assert TINY_VAE_CONFIG.ch % 32 == 0 and math.prod(TINY_VAE_CONFIG.ch_mult) > 0


def test_importing_encoders_does_not_import_open_clip():
    import subprocess
    import sys

    code = "import sys, sv4d_models.encoders as e; e.VAEConfig; print('open_clip' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "False"


def test_clip_heads_inferred_from_width_or_given():
    from sv4d_models.encoders import ClipImageEncoder

    cfg = ClipVisionConfig(image_size=56, patch_size=14, width=64, layers=1, heads=2, output_dim=16)
    model = ClipImageEncoder(cfg)
    sd = {CLIP_PREFIX + k: v for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"width 64 is not a multiple of the ViT-H-14 head width 80; pass heads="):
        load_clip_image_encoder(sd)
    loaded = load_clip_image_encoder(sd, heads=2)
    assert loaded.config == cfg and loaded.visual.transformer.resblocks[0].attn.num_heads == 2
    x = _images(2, 40, 30)
    torch.testing.assert_close(loaded(x), model.eval()(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("keys,phrase", [
    (["model.diffusion_model.a", "conditioner.embedders.5.encoder.b"], "SV4D / SV4D 2.0 checkpoint"),
    (["model.diffusion_model.a", "conditioner.embedders.1.encoder.b"], "SV3D checkpoint"),
    (["model.diffusion_model.a", "conditioner.embedders.3.encoder.b"], "SVD"),
    (["encoder.conv_in.weight", "decoder.conv_in.weight"], "standalone AutoencoderKL"),
    (["foo.bar"], "unrecognised checkpoint (1 tensors, e.g. foo.bar)"),
])
def test_describe_checkpoint(keys, phrase):
    from sv4d_models.encoders import describe_checkpoint

    assert phrase in describe_checkpoint(keys)
