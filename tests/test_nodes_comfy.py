"""The nodes inside ComfyUI, in-process (``COMFYUI_PATH``; CPU, pytorch attention, fp32 CLIP as --fp32-text-enc):
ComfyUI's CLIP_VISION / VAE give the library's conditioning within 1e-5, the MODEL's network is the library UNet bit
for bit, the node path gives SV4DPipeline.run's images, progress / previews / Cancel / resume work, and bad input
fails with messages that name the fix."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from comfyui_env import comfy_in_process, pack_module
from sv4d_models import SV4DPipeline
from sv4d_models.pipeline import load_engine_models
from sv4d_models.tiny_checkpoint import write_tiny_checkpoint

pytestmark = pytest.mark.comfyui
SIZE, STEPS = 32, 2
ENCODER_TOL = 1e-5  # observed: CLIP 1.4e-6, VAE encode 2.6e-6, decode 1.9e-6 (ComfyUI's own CLIP / VAE modules)
PATH_TOL = 1e-3  # observed <= 1.3e-4: the encoders' rounding carried through two random tiny networks


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    mm = comfy_in_process()
    from comfy.cli_args import args
    import folder_paths

    root = tmp_path_factory.mktemp("comfy_inprocess")
    ckpts = root / "checkpoints"
    for i, kind in enumerate(("sv4d", "sv4d2", "sv3d_u")):
        write_tiny_checkpoint(ckpts / f"{kind}_tiny.safetensors", kind, seed=i)
    shutil.copy(ckpts / "sv3d_u_tiny.safetensors", ckpts / "sv4d_is_really_sv3d.safetensors")
    one_decoder_sv3d(ckpts / "sv3d_u_tiny.safetensors", ckpts / "sv3d_u_onedecoder.safetensors")
    from comfy.cli_args import LatentPreviewMethod

    saved = dict(fp32=args.fp32_text_enc, temp=folder_paths.get_temp_directory(),
                 output=folder_paths.get_output_directory(), preview=args.preview_method)
    args.fp32_text_enc = True  # CLIP weights in float32 (ComfyUI's default on CPU is float16)
    args.preview_method = LatentPreviewMethod.Latent2RGB  # as --preview-method latent2rgb
    folder_paths.set_temp_directory(str(root / "temp"))
    folder_paths.set_output_directory(str(root / "output"))
    folder_paths.add_model_folder_path("checkpoints", str(ckpts))
    yield mm, ckpts
    args.fp32_text_enc, args.preview_method = saved["fp32"], saved["preview"]
    folder_paths.set_temp_directory(saved["temp"])
    folder_paths.set_output_directory(saved["output"])


def one_decoder_sv3d(src, dst) -> None:
    """A tiny SV3D file whose cond-frames AE decodes like its first stage (decoder copied, identity
    post_quant_conv): core's SV3D VAE (embedder 1) then decodes as the official script (first_stage_model)."""
    from safetensors import safe_open

    sd = load_file(str(src))
    with safe_open(str(src), "pt") as f:
        meta = f.metadata()
    pre, dec = "conditioner.embedders.1.encoder.", "first_stage_model.decoder."
    sd.update({pre + "decoder." + k[len(dec):]: v.clone() for k, v in list(sd.items()) if k.startswith(dec)})
    sd[pre + "post_quant_conv.weight"], sd[pre + "post_quant_conv.bias"] = torch.eye(4).view(4, 4, 1, 1), torch.zeros(4)
    save_file(sd, str(dst), metadata=meta)


def video(n: int, size: int = SIZE) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return torch.rand(n, size, size, 3, generator=g)


def load(name: str):
    return pack_module("nodes.loaders").load_checkpoint(name)[:3]  # MODEL, CLIP_VISION, VAE (not the info text)


def test_loader_gives_comfyui_objects_with_the_library_conditioning(comfy):
    mm, ckpts = comfy
    import comfy.clip_vision
    import comfy.model_base
    import comfy.model_patcher
    import comfy.sd

    model, clip_vision, vae = load("sv4d_tiny.safetensors")
    assert isinstance(model, comfy.model_patcher.ModelPatcher) and isinstance(model.model, comfy.model_base.BaseModel)
    assert model.model.model_type == comfy.model_base.ModelType.V_PREDICTION_EDM
    assert (model.model.model_sampling.sigma_min, model.model.model_sampling.sigma_max) == pytest.approx((0.002, 700))
    assert isinstance(clip_vision, comfy.clip_vision.ClipVisionModel) and isinstance(vae, comfy.sd.VAE)
    lib = load_engine_models(ckpts / "sv4d_tiny.safetensors")
    adapter = pack_module("nodes.comfy_bridge").ComfySamplingModels(model, clip_vision, vae)
    x = video(3).permute(0, 3, 1, 2).contiguous() * 2 - 1
    assert float((adapter.clip_embed(x) - lib.clip_embed(x)).abs().max()) < ENCODER_TOL
    for role in ("concat", "view", "motion"):  # three different conditioner copies in the tiny file
        assert float((adapter.encode(role, x).cpu() - lib.encode(role, x).cpu()).abs().max()) < ENCODER_TOL, role
    z = torch.randn(3, 4, SIZE // 8, SIZE // 8)
    assert float((adapter.decode(z) - lib.decode(z).clamp(-1, 1)).abs().max()) < ENCODER_TOL
    assert clip_vision.encode_image(video(2)).image_embeds.shape == (2, 64)  # core CLIPVisionEncode's call works
    assert vae.decode(z / 0.18215).shape == (3, SIZE, SIZE, 3)  # core VAEDecode's call works


@pytest.mark.parametrize("kind", ["sv4d", "sv4d2"])
def test_model_network_is_the_library_unet_bit_for_bit(comfy, kind, monkeypatch):
    """The MODEL's network is the library UNet: bit for bit once the library uses the same attention (ComfyUI's
    optimized_attention) and the same GEMMs (ComfyUI's casting linears never take the oneDNN fused path); with the
    library's own attention and fused linears, equal within float32 rounding."""
    from nodes.comfy_models import comfy_attention_backend
    from sv4d_models import fast_ops
    from sv4d_models.attention import set_attention_backend

    mm, ckpts = comfy
    model, _, _ = load(f"{kind}_tiny.safetensors")
    mm.load_models_gpu([model])
    lib = load_engine_models(ckpts / f"{kind}_tiny.safetensors").unet
    g = torch.Generator().manual_seed(1)
    t, v = (5, 8) if kind == "sv4d" else (12, 4)
    n = t * v
    args = (torch.randn(n, 8, 4, 4, generator=g), torch.randn(n, generator=g))
    kw = dict(context=torch.randn(1, t, 64, generator=g), y=torch.randn(n, lib.config.adm_in_channels, generator=g),
              cond_view=torch.randn(v, 4, 4, 4, generator=g), num_video_frames=n, image_only_indicator=torch.ones(1, n))
    with torch.no_grad():
        own = lib(*args, **kw)
        node = model.model.diffusion_model(*args, **kw)
        monkeypatch.setattr(fast_ops, "_linear_pointwise_works", lambda: False)
        set_attention_backend(lib, comfy_attention_backend)
        assert torch.equal(node, lib(*args, **kw))
    torch.testing.assert_close(node, own, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", ["fp16", "bf16", "fp8_e4m3fn"])
def test_reduced_precision_weights_run(comfy, dtype):
    loaders, bridge = pack_module("nodes.loaders"), pack_module("nodes.comfy_bridge")
    model, clip_vision, vae = loaders.load_checkpoint("sv4d2_tiny.safetensors", "auto", dtype)[:3]
    assert model.model.get_dtype() == {"fp16": torch.float16, "bf16": torch.bfloat16,
                                       "fp8_e4m3fn": torch.float8_e4m3fn}[dtype]
    unet = bridge.ComfySamplingModels(model, clip_vision, vae).unet
    n = 48
    out = unet(torch.randn(n, 8, 4, 4), torch.randn(n), context=torch.randn(1, 12, 64), y=torch.randn(n, 128),
               cond_view=torch.randn(4, 4, 4, 4), num_video_frames=n, image_only_indicator=torch.ones(1, n))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def node_path(name: str, frames, orbit_model=None, one_box=False):
    """Loader -> (orbit) -> anchors -> dense (or the one-box sampler) -> grid, through the nodes' execute."""
    samp, grid, ref = pack_module("nodes.sampling"), pack_module("nodes.grid"), pack_module("nodes.reference")
    model, cv, vae = load(name)
    orbit = cams = None
    if orbit_model is not None:
        orbit, cams = ref.SampleReferenceOrbit.execute(frames, 23, STEPS, 10.0, "", "", *orbit_model).result
    args = (model, cv, vae, frames, 23, STEPS, 0.0, 0.0, "auto")
    if one_box:
        passes = samp.SampleVideo.execute(*args, orbit=orbit, cameras=cams).result[0]
    else:
        passes = samp.SampleAnchors.execute(*args, orbit=orbit, cameras=cams).result[0]
        passes = samp.SampleDense.execute(model, cv, vae, passes, 23, STEPS, 0.0, 0.0).result[0]
    return orbit, grid.AssembleGrid.execute(passes, 10.0, 0).result


def test_node_path_gives_the_pipelines_images(comfy):
    from comfyui_tiny_sv3d import load_tiny_sv3d

    _, ckpts = comfy
    frames = video(9)
    sv3d = load_tiny_sv3d(str(ckpts / "sv3d_u_onedecoder.safetensors"))
    orbit, (views, grid, videos, cameras_json, matrix) = node_path("sv4d_tiny.safetensors", frames, sv3d)
    pipe = SV4DPipeline.from_checkpoints(ckpts / "sv4d_tiny.safetensors", ckpts / "sv3d_u_onedecoder.safetensors",
                                         config={"image_size": SIZE, "num_steps": STEPS})
    own = pipe.run(frames, work_dir=comfy[1].parent / "pipe")
    sv3d_orbit = ((own.store.load_pass(-1)["cells"] + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1)
    assert float((orbit[[2, 5, 7, 9, 12, 14, 16, 19]] - sv3d_orbit).abs().max()) < PATH_TOL
    expected = pipe.run(frames, reference_views=orbit).images  # the orbit as the IMAGE the node passes on
    assert matrix.images.shape == expected.shape == (9, 9, SIZE, SIZE, 3)
    assert float((matrix.images - expected).abs().max()) < PATH_TOL
    assert len(views) == len(videos) == 9 and torch.equal(views[3], matrix.images[:, 3])
    assert grid.shape == (1, 9 * SIZE, 9 * SIZE, 3) and '"frames"' in cameras_json
    _, one_box = node_path("sv4d_tiny.safetensors", frames, sv3d, one_box=True)
    assert torch.equal(one_box[4].images, matrix.images)  # SV4D Sampler = Anchors + Dense, bit for bit


def test_sv4d2_through_the_same_nodes(comfy):
    _, ckpts = comfy
    frames = video(14)
    _, out = node_path("sv4d2_tiny.safetensors", frames)
    pipe = SV4DPipeline.from_checkpoints(ckpts / "sv4d2_tiny.safetensors", config={"image_size": SIZE,
                                                                                  "num_steps": STEPS})
    expected = pipe.run(frames).images
    assert out[4].images.shape == (14, 5, SIZE, SIZE, 3)
    assert float((out[4].images - expected).abs().max()) < PATH_TOL


def test_progress_previews_cancel_and_resume(comfy):
    mm, _ = comfy
    import comfy.utils

    samp = pack_module("nodes.sampling")
    model, cv, vae = load("sv4d2_tiny.safetensors")
    frames, events, cancel = video(16), [], [True]

    def hook(value, total, preview, node_id=None):
        events.append((value, total, preview))
        if value == STEPS + 1 and cancel and cancel.pop():  # one step into the 2nd window: press Cancel (once)
            mm.interrupt_current_processing(True)

    comfy.utils.set_progress_bar_global_hook(hook)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            samp.SampleAnchors.execute(model, cv, vae, frames, 23, STEPS, 0.0, 0.0, "auto")
        assert events[-1][0] == STEPS + 1  # stopped within one step of the Cancel
        assert events[0][1] == 2 * STEPS and events[0][2][0] == "JPEG"  # overall steps; latent previews
        mm.interrupt_current_processing(False)
        events.clear()
        done = samp.SampleAnchors.execute(model, cv, vae, frames, 23, STEPS, 0.0, 0.0, "auto").result[0]
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
        mm.interrupt_current_processing(False)
    assert events[0][0] == STEPS and len([e for e in events if e[2] is not None]) == STEPS  # window 0 resumed
    assert done.missing() == []


def test_bad_input_names_the_fix(comfy):
    _, ckpts = comfy
    samp, ref, inputs = pack_module("nodes.sampling"), pack_module("nodes.reference"), pack_module("nodes.inputs")
    with pytest.raises(ValueError, match="is an SV3D checkpoint.*Image Only Checkpoint Loader"):
        load("sv4d_is_really_sv3d.safetensors")
    sd_like = {"cond_stage_model.x.weight": torch.zeros(2), "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3)}
    save_file(sd_like, str(ckpts / "sv4d_sd15.safetensors"))
    with pytest.raises(ValueError, match="Stable Diffusion 1.x/2.x.*load it with core 'Load Checkpoint'"):
        load("sv4d_sd15.safetensors")
    (ckpts / "sv4d_truncated.safetensors").write_bytes(load_file.__doc__.encode()[:100])
    with pytest.raises(ValueError, match="truncated or corrupt.*Download it again"):
        load("sv4d_truncated.safetensors")
    model, cv, vae = load("sv4d_tiny.safetensors")
    args = (model, cv, vae)
    with pytest.raises(ValueError, match="zero frames"):
        samp.SampleAnchors.execute(*args, torch.zeros(0, SIZE, SIZE, 3), 23, STEPS, 0.0, 0.0, "auto")
    with pytest.raises(ValueError, match="image size 24 cannot be used.*multiple of 16"):
        samp.SampleAnchors.execute(*args, video(9, 24), 23, STEPS, 0.0, 0.0, "auto", orbit=video(21, 24))
    with pytest.raises(ValueError, match="not square.*SV4D Prepare Video"):
        samp.SampleAnchors.execute(*args, torch.rand(9, 32, 48, 3), 23, STEPS, 0.0, 0.0, "auto")
    with pytest.raises(ValueError, match="orbit is 16x16 but the video frames are 32x32.*mixed sizes"):
        samp.SampleAnchors.execute(*args, video(9), 23, STEPS, 0.0, 0.0, "auto", orbit=video(21, 16))
    with pytest.raises(ValueError, match="the orbit has 5 views; give the 21-view"):
        ref.SampleReferenceOrbit.execute(video(9), 23, STEPS, 10.0, "", "", orbit=video(5))
    cams = inputs.MakeCameras.execute("sv4d2", "", "").result[0]
    with pytest.raises(ValueError, match="cameras describe 5 sv4d2 views but the MODEL is 'sv4d'"):
        samp.SampleAnchors.execute(*args, video(9), 23, STEPS, 0.0, 0.0, "auto", orbit=video(21), cameras=cams)
    with pytest.raises(ValueError, match="the reference orbit needs SV3D: load sv3d_u"):
        ref.SampleReferenceOrbit.execute(video(9), 23, STEPS, 10.0, "", "", *args)
    from comfyui_tiny_sv3d import load_tiny_sv3d

    sv3d = load_tiny_sv3d(str(ckpts / "sv3d_u_tiny.safetensors"))
    with pytest.raises(ValueError, match="'sv3d_u' \\(SV3D\\): connect SV4D Checkpoint Loader"):
        samp.SampleAnchors.execute(*sv3d, video(9), 23, STEPS, 0.0, 0.0, "auto")


def test_core_sigmas_drive_the_sampler(comfy):
    """A core scheduler's SIGMAS (k-diffusion's Karras schedule, what KarrasScheduler outputs) with the official
    range is the official EDM schedule bit for bit, so it gives the same images."""
    from comfy.k_diffusion.sampling import get_sigmas_karras

    samp = pack_module("nodes.sampling")
    model, cv, vae = load("sv4d2_tiny.safetensors")
    sigmas = get_sigmas_karras(3, 0.002, 700.0, rho=7.0)
    a = samp.SampleAnchors.execute(model, cv, vae, video(12), 5, 0, 0.0, 0.0, "auto", sigmas=sigmas).result[0]
    b = samp.SampleAnchors.execute(model, cv, vae, video(12), 5, 3, 0.0, 0.0, "auto").result[0]
    assert a.done() == b.done() == [0] and torch.equal(a.outputs[0], b.outputs[0])


@pytest.mark.parametrize("kind", ["sv4d", "sv4d2"])
def test_core_detection_takes_sv4d_for_sv3d_p(comfy, kind):
    """Why the README warns against core Image Only Checkpoint Loader for SV4D files: ComfyUI's detection, fed the
    official UNet key set and shapes (meta tensors), picks SV3D_p."""
    import comfy.model_detection
    from conftest import REFERENCE, require_shared

    keys = json.loads(require_shared(REFERENCE / f"{kind}_unet_keys.json").read_text())["keys"]
    sd = {k: torch.empty(v["shape"], device="meta") for k, v in keys.items()}
    config = comfy.model_detection.model_config_from_unet(sd, "model.diffusion_model.")
    assert type(config).__name__ == "SV3D_p"


class HalfEmptyField(torch.nn.Module):
    """A stand-in fitted field: a dense ball for t < 0.5, nothing at all afterwards (frames 2..4 of 5 are empty)."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(200.0))

    def density(self, x, t):
        return self.scale * (x.norm(dim=-1) < 0.3).float() * float(t < 0.5)

    def color(self, x, t):
        return torch.full_like(x, 0.5)


def test_export_node_refuses_a_fit_with_empty_frames_like_sv4d_run(comfy, tmp_path):
    """The Export node writes through the library's export_asset: the same empty-surface check, the same error as
    ``sv4d run`` (``reconstruct``) gives, and no asset folder."""
    import folder_paths

    from sv4d_models.nerf.fit_config import tiny_preset
    from sv4d_models.reconstruction import EmptyReconstructionError, ExportSettings, export_asset
    from sv4d_models.synthetic import SyntheticScene

    values, recon = pack_module("nodes.values"), pack_module("nodes.reconstruction")
    gt = SyntheticScene.make(kind="rigid", seed=3).render_matrix(model_kind="sv4d", n_frames=5, size=16)
    fit = type("Fit", (), {"model": HalfEmptyField(), "config": tiny_preset()})()
    matrix = values.ImageMatrixValue(gt["images"], gt["cameras"], gt["times"], "sv4d")
    with pytest.raises(EmptyReconstructionError) as library:
        export_asset(fit, gt["images"], gt["masks"], gt["cameras"], gt["times"], tmp_path / "lib",
                     ExportSettings(mesh_resolution=24), turntable=False)
    with pytest.raises(EmptyReconstructionError) as node:
        recon.ExportAsset.execute(values.NeRFValue(fit, matrix, gt["masks"], "tiny"), "sv4d/empty_test", 24, 0.0,
                                  10.0, "ply")
    assert str(node.value) == str(library.value)
    assert "in 3 of 5 frames (2, 3, 4)" in str(node.value) and "mesh_threshold" in str(node.value)
    assert not list(Path(folder_paths.get_output_directory()).glob("sv4d/empty_test*"))
    assert not (tmp_path / "lib").exists() or not any((tmp_path / "lib").iterdir())


def test_fit_node_bar_follows_the_steps_and_ignores_the_part_motion_events(comfy):
    """The cpu preset's fit ends with ``progress`` events of the part motion (no ``step`` key): the FitNeRF node's
    bar stays full instead of failing on them."""
    from sv4d_models import events

    recon = pack_module("nodes.reconstruction")
    seen = []
    bar = type("Bar", (), {"update_absolute": lambda self, value: seen.append(value)})()
    recon._fit_progress(bar, events.fit_step({"step": 650, "stage": "dynamic", "loss": 0.1, "terms": {},
                                              "n_evaluated": 1}, 650))
    recon._fit_progress(bar, events.progress("part motion", 1, 8, "frame step"))
    assert seen == [650]
