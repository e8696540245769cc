"""The bundled demo model (``sv4d_models/assets/sv4d2_8views_demo.safetensors``) and the pieces of its recipe: it
loads through the library's standard loaders, fits the size budget, and one sampled window on a held-out synthetic
scene beats repeating the input view; the VAE rescaling keeps decode(encode(x)) unchanged; the encoders file loads."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from sv4d_models.encoders.vae import LATENT_SCALE
from sv4d_models.assets import DEMO_CARD, DEMO_IMAGE_SIZE, DEMO_KIND, demo_model_path, demo_pipeline_config

HELD_OUT_SEED = 900_100  # never used by train/make_demo_model.py (1000.., 500000..) nor the benchmark's first seeds


@pytest.fixture
def one_thread():
    """The sphere tracer and the tiny UNet are far faster single-threaded on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_demo_model_fits_the_budget_and_loads_through_load_unet():
    from safetensors import safe_open

    from sv4d_models import load_unet
    from sv4d_models.checkpoint import resolve_kind

    path = demo_model_path()
    assert path.stat().st_size <= 20 * 2**20
    with safe_open(str(path), framework="pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    assert dtypes == {"F16"}
    info = resolve_kind(path)
    assert info.kind == DEMO_KIND and info.reason.startswith("file metadata") and sum(info.vector_dims) > 0
    assert load_unet(path).model_kind == DEMO_KIND  # the stored dtype (float16) by default
    unet = load_unet(path, dtype=torch.float32)  # what the pipeline does on a CPU: float16 storage upcast on load
    assert {p.dtype for p in unet.parameters()} == {torch.float32}
    assert all(torch.isfinite(p).all() for p in unet.parameters())
    card = json.loads(DEMO_CARD.read_text())
    assert card["model_kind"] == DEMO_KIND and card["image_size"] == DEMO_IMAGE_SIZE


def test_one_window_on_a_held_out_scene_beats_repeating_the_input(one_thread):
    from sv4d_models.pipeline import SV4DPipeline
    from sv4d_models.synthetic import SyntheticScene

    gt = SyntheticScene.make(kind="rigid", seed=HELD_OUT_SEED).render_matrix(
        model_kind=DEMO_KIND, n_frames=5, size=DEMO_IMAGE_SIZE)["images"]  # [5, 9, 64, 64, 3]
    pipe = SV4DPipeline.from_checkpoints(demo_model_path(), config=demo_pipeline_config(device="cpu", offload="cpu"))
    assert next(pipe.models.unet.parameters()).dtype == torch.float32  # float16 file, float32 run on the CPU
    images = pipe.run(gt[:, 0]).images
    assert images.shape == gt.shape and torch.isfinite(images).all()
    truth = gt[:, 1:]
    mse = float(((images[:, 1:] - truth) ** 2).mean())
    mse_copy = float(((gt[:, :1] - truth) ** 2).mean())
    assert mse < 0.75 * mse_copy  # > 1.25 dB better than the copy-input baseline
    torch.testing.assert_close(images[:, 0], gt[:, 0], atol=1 / 255 + 1e-6, rtol=0)  # column 0 is the input


def test_vae_rescaling_keeps_the_reconstruction(tmp_path):
    from sv4d_models.encoders.vae import AutoencoderKL
    from train.train_vae import DEMO_VAE_CONFIG, latent_std, posterior, rescale_latents, to_model

    torch.manual_seed(0)
    ae = AutoencoderKL(DEMO_VAE_CONFIG).eval()
    images = (torch.rand(4, 16, 16, 3) * 255).to(torch.uint8)
    with torch.no_grad():
        before = ae.decoder(posterior(ae, to_model(images))[0])
        rescale_latents(ae, 1.0 / (LATENT_SCALE * latent_std(ae, images)))
        after = ae.decoder(posterior(ae, to_model(images))[0])
    assert LATENT_SCALE * latent_std(ae, images) == pytest.approx(1.0, rel=1e-4)
    torch.testing.assert_close(after, before, atol=2e-4, rtol=1e-4)


def test_encoders_file_loads_through_the_engine_loaders(tmp_path):
    from sv4d_models.encoders.clip import ClipImageEncoder
    from sv4d_models.encoders.vae import AutoencoderKL
    from sv4d_models.pipeline.models import load_encoder_models
    from train.make_demo_model import build_encoders_file
    from train.train_image_encoder import DEMO_CLIP_CONFIG, save_image_encoder
    from train.train_vae import DEMO_VAE_CONFIG, save_vae

    torch.manual_seed(0)
    ae, clip = AutoencoderKL(DEMO_VAE_CONFIG).eval(), ClipImageEncoder(DEMO_CLIP_CONFIG).eval()
    save_vae(ae, tmp_path / "vae.safetensors", {})
    save_image_encoder(clip, tmp_path / "clip.safetensors", {})
    path = build_encoders_file(tmp_path / "vae.safetensors", tmp_path / "clip.safetensors",
                               tmp_path / "enc.safetensors")
    models = load_encoder_models(path, DEMO_KIND)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    torch.testing.assert_close(models.clip_embed(x), clip(x))
    with torch.no_grad():
        torch.testing.assert_close(models.encode("motion", x), ae.quant_conv(ae.encoder(x))[:, :4])
        z = torch.randn(2, 4, 8, 8)
        torch.testing.assert_close(models.decode(z), ae.decoder(z / LATENT_SCALE))


def test_the_card_matches_the_committed_recipe():
    """The bundled model is what ``train/configs/demo.yaml`` describes: same steps, schedule and noise levels."""
    from train.config import load_config

    cfg = load_config(Path(__file__).resolve().parents[1] / "train" / "configs" / "demo.yaml", [])
    card = json.loads(DEMO_CARD.read_text())
    assert card["unet_steps"] == cfg.run.max_steps
    optim = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg.optim).items()}
    assert card["unet_optim"] == optim and card["unet_diffusion"] == dataclasses.asdict(cfg.diffusion)
    assert card["quality"]["psnr"] > card["quality"]["psnr_copy"] + 3.0  # benchmarks/demo_quality.py --card
