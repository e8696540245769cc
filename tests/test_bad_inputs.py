"""A catalogue of wrong inputs over the public entry points, library part (settings classes, loaders, frames,
pipeline, planning, the 4D fit, cameras, writers, damaged files, videos, --model demo, node helpers). The rest of the
catalogue: tests/test_bad_inputs_cli.py (every CLI option), tests/test_bad_inputs_settings.py (every trainer override
and node widget), tests/test_bad_inputs_resume.py (every resume path); the shared files in tests/bad_inputs_world.py.
Each case asserts the error type, that the message names the value or the file and the fix, and that nothing was
written or changed."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bad_inputs_world import INF, NAN, SIZE, case_name, fit as _fit, snapshot, train_cfg as _train_cfg


@pytest.fixture(scope="module")
def ctx(bad_inputs_world):
    return bad_inputs_world


def _pcfg(**kw):
    from sv4d_models.pipeline import PipelineConfig

    return PipelineConfig.from_dict(kw)


def _load_unet(c, name, **kw):
    from sv4d_models import load_unet

    return load_unet(c["dir"] / name if isinstance(name, str) else name, **kw)


def _frames(x):
    from sv4d_models.pipeline.inputs import to_model_frames

    return to_model_frames(x)


def _load(path):
    from sv4d_models.frames_io import load_frames

    return load_frames(path)


def _plan(*a, **kw):
    from sv4d_models.sampling import make_plan

    return make_plan(*a, **kw)


def _export(**kw):
    from sv4d_models.reconstruction import ExportSettings

    return ExportSettings(**kw)


def _job(c, **kw):
    from sv4d_models.job import JobSettings

    return JobSettings(**{"video": "v.mp4", "out": str(c["dir"] / "o"), **kw})


def _mesh_cfg(**kw):
    from sv4d_models.export.mesh import MeshConfig

    return MeshConfig(**kw)


def _orbit(**kw):
    from sv4d_models.camera import Cameras

    return Cameras.orbit(**{"azimuth_deg": [0.0], "elevation_deg": 10.0, **kw})


def _transforms(c, images=None, times=None):
    from sv4d_models.export.cameras import export_transforms

    return export_transforms(c["dir"] / "tf", _orbit(), torch.rand(1, 4, 4, 3) if images is None else images,
                             times=times)


def _mesh_seq(vertices=None, times=(0.0,)):
    from sv4d_models.export.mesh import MeshSequence

    v = [np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)] if vertices is None else vertices
    return MeshSequence(v, [np.array([[0, 1, 2]], np.int32)], None, np.asarray(times))


def _demo(c, **options):
    from sv4d_models.demo import demo_settings

    return demo_settings(str(c["dir"] / "demo_out"), overrides=options)


def _nerf_cfg(**kw):
    from sv4d_models.nerf.fit_config import tiny_preset

    return tiny_preset(**kw)


CASES = [
    # ---- checkpoints ------------------------------------------------------------------------------------
    ("ckpt missing", lambda c: _load_unet(c, "nope.safetensors"), FileNotFoundError, r"nope.safetensors.*does not exist.*models/checkpoints"),
    ("ckpt is a folder", lambda c: _load_unet(c, "empty_folder"), FileNotFoundError, r"empty_folder.*is a folder, not a file; pass the .safetensors file inside it"),
    ("ckpt .ckpt file", lambda c: _load_unet(c, "model.ckpt"), ValueError, r"model.ckpt.*not a .safetensors file.*convert"),
    ("ckpt truncated", lambda c: _load_unet(c, "truncated.safetensors"), ValueError, r"truncated.safetensors.*truncated or corrupt"),
    ("ckpt text file", lambda c: _load_unet(c, "text.safetensors"), ValueError, r"text.safetensors.*not a readable safetensors"),
    ("ckpt SD file", lambda c: _load_unet(c, "sd.safetensors"), ValueError, r"Stable Diffusion 1.x/2.x.*Supported files"),
    ("ckpt wrong kind asked", lambda c: _load_unet(c, "sv4d.safetensors", model_kind="sv3d_p"), ValueError, r"model_kind='sv3d_p' was requested but the weights are a 'sv4d'"),
    ("ckpt sv3d asked as sv4d", lambda c: _load_unet(c, "sv3d_u.safetensors", model_kind="sv4d"), ValueError, r"model_kind='sv4d' was requested but the weights are a 'sv3d_u'"),
    ("ckpt unknown kind", lambda c: _load_unet(c, "sv4d.safetensors", model_kind="sv5d"), ValueError, r"model_kind='sv5d' is not supported"),
    ("ckpt not a path", lambda c: _load_unet(c, 42), TypeError, r"state dict.*safetensors"),
    ("ckpt network key", lambda c: _load_unet(c, "sv4d.safetensors", network_config={"params": {"magic": 1}}), ValueError, r"'magic'"),
    ("pipeline sv3d as 4D", lambda c: __import__("sv4d_models.pipeline", fromlist=["x"]).SV4DPipeline.from_checkpoints(c["files"]["sv3d_u"]), ValueError, r"sv3d_u.*'sv3d_u' checkpoint.*sv3d_checkpoint_path"),
    ("pipeline 4D as sv3d", lambda c: __import__("sv4d_models.pipeline", fromlist=["x"]).SV4DPipeline.from_checkpoints(c["files"]["sv4d"], c["files"]["sv4d2"]), ValueError, r"sv4d2.safetensors is a 'sv4d2' checkpoint; pass sv3d_u"),
    ("pipeline missing sv3d", lambda c: __import__("sv4d_models.pipeline", fromlist=["x"]).SV4DPipeline.from_checkpoints(c["files"]["sv4d"], c["dir"] / "no_sv3d.safetensors"), FileNotFoundError, r"no_sv3d.safetensors.*does not exist"),
    # ---- pipeline config ----------------------------------------------------------------------------------
    ("cfg unknown key", lambda c: _pcfg(stepz=3), ValueError, r"unknown PipelineConfig key 'stepz'"),
    ("cfg bad mode", lambda c: _pcfg(mode="fast"), ValueError, r"mode='fast'.*'official'"),
    ("cfg bad dtype", lambda c: _pcfg(dtype="half"), ValueError, r"dtype='half'"),
    ("cfg zero steps", lambda c: _pcfg(num_steps=0), ValueError, r"num_steps=0 must be >= 1"),
    ("cfg float seed", lambda c: _pcfg(seed=1.5), ValueError, r"seed=1.5 must be an integer"),
    ("cfg negative seed", lambda c: _pcfg(seed=-3), ValueError, r"seed=-3 must be an integer in \[0, 2\^63\)"),
    ("cfg bool seed", lambda c: _pcfg(seed=True), ValueError, r"seed=True"),
    ("cfg tiny image", lambda c: _pcfg(image_size=4), ValueError, r"image_size=4 must be >= 8"),
    ("cfg frame ratio", lambda c: _pcfg(image_frame_ratio=1.5), ValueError, r"image_frame_ratio=1.5"),
    ("cfg offload", lambda c: _pcfg(offload="gpu"), ValueError, r"offload='gpu'"),
    ("cfg sv3d kind", lambda c: _pcfg(sv3d_kind="sv4d"), ValueError, r"sv3d_kind='sv4d'"),
    ("cfg model kind", lambda c: _pcfg(model_kind="sv3d_u"), ValueError, r"model_kind='sv3d_u' is not supported"),
    ("cfg scalar azimuths", lambda c: _pcfg(azimuths_deg=30.0), ValueError, r"azimuths_deg must be a list"),
    ("cfg text elevations", lambda c: _pcfg(elevations_deg=["a"]), ValueError, r"could not convert string"),
    ("cfg bad group", lambda c: _pcfg(sampling={"image_size": 64}), ValueError, r"unknown SamplingConfig key 'image_size'"),
    ("cfg negative cond_aug", lambda c: _pcfg(cond_aug=-1.0), ValueError, r"cond_aug=-1.0 must be >= 0"),
    ("cfg zero chunks", lambda c: _pcfg(encoding_t=0), ValueError, r"encoding_t=0"),
    ("cfg configure device", lambda c: c["pipe"].configure(device="cuda"), ValueError, r"\['device'\] need other weights"),
    # ---- frames -----------------------------------------------------------------------------------------------
    ("frames empty list", lambda c: _frames([]), ValueError, r"no frames: got an empty list"),
    ("frames empty tensor", lambda c: _frames(torch.empty(0, 8, 8, 3)), ValueError, r"no frames"),
    ("frames RGBA tensor", lambda c: _frames(torch.rand(2, 8, 8, 4)), ValueError, r"4 channels.*RGB"),
    ("frames mixed sizes", lambda c: _frames([torch.rand(8, 8, 3), torch.rand(9, 9, 3)]), ValueError, r"different sizes.*resize"),
    ("frames NaN", lambda c: _frames(torch.full((1, 8, 8, 3), float("nan"))), ValueError, r"NaN or infinite"),
    ("frames 0..255 float HWC", lambda c: _frames(torch.rand(1, 8, 8, 3) * 255), ValueError, r"must be in \[0, 1\] but range over"),
    ("frames 0..255 float CHW", lambda c: _frames(torch.rand(1, 3, 8, 8) * 255), ValueError, r"must be in \[-1, 1\].*x / 127.5 - 1"),
    ("frames not square", lambda c: _frames(torch.rand(2, 8, 10, 3)), ValueError, r"square"),
    ("frames 5-d", lambda c: _frames(torch.rand(1, 2, 8, 8, 3)), ValueError, r"expected \[F, 3, S, S\]"),
    ("frames wrong type", lambda c: _frames("no"), TypeError, r"must be a tensor, numpy array, list of frames or a path"),
    ("video missing", lambda c: _load(c["dir"] / "nope.mp4"), FileNotFoundError, r"nope.mp4.*does not exist"),
    ("video corrupt gif", lambda c: _load(c["dir"] / "bad.gif"), ValueError, r"could not read .*bad.gif. as an image"),
    ("video bad extension", lambda c: _load(c["dir"] / "clip.xyz"), ValueError, r"unsupported file extension '.xyz'"),
    ("video empty folder", lambda c: _load(c["dir"] / "empty_folder"), ValueError, r"empty_folder.*contains no"),
    ("video glob no match", lambda c: _load(str(c["dir"] / "*.jpeg")), FileNotFoundError, r"no files match"),
    ("video max_frames 0", lambda c: __import__("sv4d_models.frames_io", fromlist=["x"]).load_frames(c["video"], max_frames=0), ValueError, r"max_frames must be a positive int"),
    ("preprocess 1x1 video", lambda c: __import__("sv4d_models.preprocess", fromlist=["x"]).preprocess_frames(torch.zeros(3, 1, 1, 3), size=64), ValueError, r"1x1 pixels.*larger video"),
    ("preprocess size", lambda c: __import__("sv4d_models.preprocess", fromlist=["x"]).preprocess_frames(torch.zeros(3, 32, 32, 3), size=4), ValueError, r"size must be an int >= 8"),
    # ---- pipeline run ----------------------------------------------------------------------------------------
    ("run size mismatch", lambda c: c["pipe"].run(torch.rand(5, 32, 32, 3)), ValueError, r"frames are 32x32 but image_size=16"),
    ("run size not multiple", lambda c: c["pipe"].configure(image_size=24).run(torch.rand(5, 24, 24, 3)), ValueError, r"image size 24 cannot be used.*multiple of 16"),
    ("run official 13 frames", lambda c: c["pipe"].configure(mode="official").run(torch.rand(13, SIZE, SIZE, 3)), ValueError, r"official sv4d script cannot run 13 frames"),
    ("run elevations count", lambda c: c["pipe"].configure(elevations_deg=[0, 1, 2]).run(c["video"]), ValueError, r"elevations_deg has 3 values; give 1 value or 21"),
    ("run azimuths count", lambda c: c["pipe"].configure(azimuths_deg=[0, 1]).run(c["video"]), ValueError, r"azimuths_deg has 2 values"),
    ("run reference count", lambda c: c["pipe"].run(c["video"], reference_views=torch.rand(5, SIZE, SIZE, 3)), ValueError, r"reference_views has 5 images"),
    ("run reference size", lambda c: c["pipe"].run(c["video"], reference_views=torch.rand(8, 32, 32, 3)), ValueError, r"reference_views are 32x32 but the frames are 16x16"),
    ("run reroll key", lambda c: c["pipe"].configure(offload="cpu").run(c["video"], reroll={9: 1}), ValueError, r"reroll keys \[9\] are not passes of this plan"),
    ("run corrupt manifest", lambda c: c["pipe"].run(c["video"], work_dir=c["dir"] / "manifest_dir"), ValueError, r"manifest.json \(the work dir's manifest\) is damaged"),
    ("run path missing", lambda c: c["pipe"].run(c["dir"] / "missing.mp4"), FileNotFoundError, r"missing.mp4.*does not exist"),
    # ---- planning and sampling --------------------------------------------------------------------------------
    ("plan kind", lambda c: _plan("sv3d_u", 5), ValueError, r"model_kind='sv3d_u' is not supported"),
    ("plan zero frames", lambda c: _plan("sv4d", 0), ValueError, r"n_frames=0 must be an integer >= 1"),
    ("plan float frames", lambda c: _plan("sv4d", 5.0), ValueError, r"n_frames=5.0"),
    ("plan mode", lambda c: _plan("sv4d", 5, mode="fast"), ValueError, r"mode='fast'"),
    ("plan steps", lambda c: _plan("sv4d", 5, num_steps=0), ValueError, r"num_steps=0 must be >= 1"),
    ("plan pad", lambda c: __import__("sv4d_models.sampling.plan", fromlist=["x"]).fit_rows([0, 1], 5, pad="mirror"), ValueError, r"pad='mirror'"),
    ("guider kind", lambda c: __import__("sv4d_models.sampling", fromlist=["x"]).default_guider("sv5d"), ValueError, r"model_kind='sv5d' is not supported"),
    ("pass sigmas mismatch", lambda c: __import__("sv4d_models.pipeline", fromlist=["x"]).sample_pass(c["pipe"].models, _plan("sv4d", 5, num_steps=2).passes[0], torch.zeros(5, 3, SIZE, SIZE), torch.zeros(5, 64), {"forward": torch.zeros(8, 3, SIZE, SIZE)}, seed=0, sigmas=torch.tensor([1.0, 0.5, 0.2, 0.0])), ValueError, r"3 sampler steps but the plan was made for 2"),
    ("pass missing reference", lambda c: __import__("sv4d_models.pipeline", fromlist=["x"]).sample_pass(c["pipe"].models, _plan("sv4d", 5, num_steps=2).passes[0], torch.zeros(5, 3, SIZE, SIZE), torch.zeros(5, 64), None, seed=0), ValueError, r"needs the views of frame 0 as references"),
    ("cond angles count", lambda c: __import__("sv4d_models.sampling", fromlist=["x"]).build_sv4d_cond("sv4d", torch.zeros(5, 8), torch.zeros(5, 4, 2, 2), torch.zeros(5, 4, 2, 2), None, [0.0] * 3, [0.0] * 3), ValueError, r"got 3 angles; expected V=8"),
    # ---- NeRF fit and reconstruction -----------------------------------------------------------------------------
    ("fit NaN images", lambda c: _fit(c, images=c["m"]["images"].clone().index_fill_(0, torch.tensor([0]), float("nan"))), ValueError, r"images contain NaN"),
    ("fit 0..255 images", lambda c: _fit(c, images=c["m"]["images"] * 255), ValueError, r"images must be in \[0, 1\] but range over .*divide 0..255"),
    ("fit 0..255 masks", lambda c: _fit(c, masks=c["m"]["masks"] * 255), ValueError, r"masks must be in \[0, 1\]"),
    ("fit empty masks", lambda c: _fit(c, masks=torch.zeros_like(c["m"]["masks"])), ValueError, r"every mask is empty"),
    ("fit uint8 images", lambda c: _fit(c, images=(c["m"]["images"] * 255).byte()), TypeError, r"float tensor in \[0, 1\].*torch.uint8"),
    ("fit times range", lambda c: _fit(c, times=torch.tensor([0.0, 0.5, 2.0])), ValueError, r"times must hold 3 values in \[0, 1\]"),
    ("fit times count", lambda c: _fit(c, times=torch.tensor([0.0, 1.0])), ValueError, r"times must hold 3 values"),
    ("fit masks shape", lambda c: _fit(c, masks=c["m"]["masks"][:, :, :8]), ValueError, r"masks must be \[F, V, H, W\]"),
    ("fit cameras count", lambda c: _fit(c, cameras=c["m"]["cameras"][torch.arange(4)]), ValueError, r"cameras must hold 9 views"),
    ("fit cameras type", lambda c: _fit(c, cameras="front"), TypeError, r"cameras must be Cameras"),
    ("nerf cfg zero steps", lambda c: _nerf_cfg(static_steps=0, dynamic_steps=0), ValueError, r"at least one step"),
    ("nerf cfg zero samples", lambda c: _nerf_cfg(n_samples=0), ValueError, r"n_samples=0 must be >= 1"),
    ("nerf cfg normals", lambda c: _nerf_cfg(normals="smooth"), ValueError, r"normals='smooth'"),
    ("nerf cfg schedule", lambda c: _nerf_cfg(resolution_schedule=((5, 32),)), ValueError, r"must start with \(0, resolution\)"),
    ("nerf guard factor", lambda c: __import__("sv4d_models.nerf.guard", fromlist=["x"]).GuardConfig(spike_factor=0.5), ValueError, r"spike_factor=0.5 must be > 1"),
    ("export frames", lambda c: _export(turntable_frames=0), ValueError, r"turntable_frames=0 must be >= 1"),
    ("export coverage", lambda c: _export(min_coverage_ratio=2.0), ValueError, r"min_coverage_ratio=2.0"),
    ("reconstruct out is file", lambda c: __import__("sv4d_models.reconstruction", fromlist=["x"]).reconstruct(c["m"]["images"], c["m"]["masks"], c["m"]["cameras"], c["m"]["times"], c["dir"] / "bad.gif"), FileExistsError, r"bad.gif exists and is not a folder"),
    ("fit result not ours", lambda c: __import__("sv4d_models.nerf.fit", fromlist=["x"]).load_fit_result(c["dir"] / "other_fit.pt"), ValueError, r"other_fit.pt is not an sv4d_nerf_fit/2 checkpoint \(format='someone_else/1'\)"),
    # ---- exports --------------------------------------------------------------------------------------------------
    ("mp4 bad fps", lambda c: __import__("sv4d_models.export.video", fromlist=["x"]).write_mp4(torch.zeros(2, 8, 8, 3), c["dir"] / "x.mp4", fps=0), ValueError, r"fps"),
    ("folder is a file", lambda c: __import__("sv4d_models.files", fromlist=["x"]).prepare_folder(c["dir"] / "bad.gif", ["a"], False), FileExistsError, r"bad.gif exists and is not a folder"),
    ("no clobber", lambda c: __import__("sv4d_models.files", fromlist=["x"]).atomic_write_bytes(c["dir"] / "bad.gif", b"x"), FileExistsError, r"bad.gif already exists; pass overwrite=True"),
    # ---- trainer and job settings ---------------------------------------------------------------------------------
    ("train unknown key", lambda c: _train_cfg("max_stepz=2"), ValueError, r"unknown config key 'max_stepz'"),
    ("train bad float", lambda c: _train_cfg("optim.lr=fast"), ValueError, r"optim.lr='fast': takes a float"),
    ("train bad kind", lambda c: _train_cfg("model.kind=sv3d_p"), ValueError, r"model.kind='sv3d_p'"),
    ("train bad precision", lambda c: _train_cfg("run.mixed_precision=fp8"), ValueError, r"mixed_precision='fp8'"),
    ("train missing data", lambda c: __import__("train.data", fromlist=["x"]).ShardedDataset(c["dir"] / "empty_folder"), ValueError, r"empty_folder holds no manifest.json.*prepare_data"),
    ("job resume+overwrite", lambda c: _job(c, resume=True, overwrite=True), ValueError, r"resume and overwrite exclude each other"),
    ("job preset", lambda c: _job(c, preset="huge"), ValueError, r"preset='huge'"),
    ("job fit steps", lambda c: _job(c, fit_steps=1), ValueError, r"fit_steps=1 must be >= 2"),
    # ---- node helpers (no ComfyUI needed) -------------------------------------------------------------------------
    ("node angle text", lambda c: __import__("nodes.values", fromlist=["x"]).parse_angles("10, ten", "elevations_deg"), ValueError, r"'ten' is not a number"),
    ("node sigmas shape", lambda c: __import__("nodes.runs", fromlist=["x"]).check_sigmas(torch.zeros(2, 2)), ValueError, r"1-D schedule"),
    ("node sigmas order", lambda c: __import__("nodes.runs", fromlist=["x"]).check_sigmas(torch.tensor([0.0, 1.0])), ValueError, r"must decrease and end in 0"),
    ("node sigmas NaN", lambda c: __import__("nodes.runs", fromlist=["x"]).check_sigmas(torch.tensor([1.0, NAN, 0.0])), ValueError, r"NaN|finite"),
    ("node angle nan", lambda c: __import__("nodes.values", fromlist=["x"]).parse_angles("10, nan", "elevations_deg"), ValueError, r"elevations_deg\[1\]=nan must be a finite number >= -90.0"),
    ("node angle inf", lambda c: __import__("nodes.values", fromlist=["x"]).parse_angles("inf", "azimuths_deg"), ValueError, r"azimuths_deg\[0\]=inf must be a finite number"),
    ("node angle 1000", lambda c: __import__("nodes.values", fromlist=["x"]).parse_angles("1000", "elevations_deg"), ValueError, r"elevations_deg\[0\]=1000.0 must be >= -90.0 and <= 90.0"),
    # ---- numbers at the door: NaN, infinities, absurd sizes, bools as ints (issue 21) --------------------------------
    ("cfg NaN cfg", lambda c: _pcfg(cfg=NAN), ValueError, r"cfg=nan must be a finite number >= 0.0 and <= 30.0"),
    ("cfg inf cond_aug", lambda c: _pcfg(cond_aug=INF), ValueError, r"cond_aug=inf must be a finite number"),
    ("cfg huge steps", lambda c: _pcfg(num_steps=1_000_000), ValueError, r"num_steps=1000000 must be >= 1 and <= 1000"),
    ("cfg huge image", lambda c: _pcfg(image_size=1_000_000), ValueError, r"image_size=1000000 must be >= 8 and <= 4096"),
    ("cfg NaN elevation", lambda c: _pcfg(elevations_deg=[NAN]), ValueError, r"elevations_deg\[0\]=nan must be a finite number >= -90.0"),
    ("cfg 1000 elevation", lambda c: _pcfg(elevations_deg=1000.0), ValueError, r"elevations_deg.*=1000.0 must be >= -90.0 and <= 90.0"),
    ("cfg inf azimuth", lambda c: _pcfg(azimuths_deg=[0.0, INF]), ValueError, r"azimuths_deg\[1\]=inf must be a finite number"),
    ("cfg device name", lambda c: _pcfg(device="gpu"), ValueError, r"device='gpu' is not a device name; use cpu, cuda or cuda:N"),
    ("cfg bool steps", lambda c: _pcfg(num_steps=True), ValueError, r"num_steps=True must be an integer"),
    ("job NaN elevation", lambda c: _job(c, elevation=NAN), ValueError, r"elevation=nan must be a finite number >= -90.0 and <= 90.0"),
    ("job 1000 elevation", lambda c: _job(c, elevation=1000.0), ValueError, r"elevation=1000.0 must be >= -90.0 and <= 90.0"),
    ("job huge steps", lambda c: _job(c, steps=1_000_000), ValueError, r"steps=1000000 must be >= 1 and <= 1000"),
    ("job NaN cfg", lambda c: _job(c, cfg=NAN), ValueError, r"cfg=nan must be a finite number"),
    ("job min_cfg above cfg", lambda c: _job(c, cfg=1.0, min_cfg=2.0), ValueError, r"min_cfg=2.0.*cfg=1.0"),
    ("job bool seed", lambda c: _job(c, seed=True), ValueError, r"seed=True must be an integer"),
    ("job huge turntable", lambda c: _job(c, turntable_size=1_000_000), ValueError, r"turntable_size=1000000 must be >= 8 and <= 4096"),
    ("job negative turntable", lambda c: _job(c, turntable_size=-64), ValueError, r"turntable_size=-64 must be >= 8"),
    ("job zero turntable frames", lambda c: _job(c, turntable_frames=0), ValueError, r"turntable_frames=0 must be >= 1"),
    ("job huge mesh", lambda c: _job(c, mesh_resolution=1_000_000), ValueError, r"mesh_resolution=1000000 must be >= 8 and <= 1024 .*memory grows with the cube"),
    ("job zero mesh", lambda c: _job(c, mesh_resolution=0), ValueError, r"mesh_resolution=0 must be >= 8"),
    ("job NaN mesh threshold", lambda c: _job(c, mesh_threshold=NAN), ValueError, r"mesh_threshold=nan must be a finite number"),
    ("job zero mask threshold", lambda c: _job(c, mask_threshold=0.0), ValueError, r"mask_threshold=0.0 must be > 0.0 and <= 1.0"),
    ("job device gpu", lambda c: _job(c, device="gpu"), ValueError, r"device='gpu' is not a device name"),
    ("job video list", lambda c: _job(c, video=["a.mp4", "b.mp4"]), TypeError, r"video=\['a.mp4', 'b.mp4'\] must be text, not list"),
    ("job out number", lambda c: _job(c, out=3), TypeError, r"out=3 must be text, not int"),
    ("job huge frames", lambda c: _job(c, frames=10**9), ValueError, r"frames=1000000000 must be >= 1 and <= 100000"),
    ("export NaN fps", lambda c: _export(fps=NAN), ValueError, r"export.fps=nan must be a finite number > 0.0 and <= 240.0"),
    ("export zero fps", lambda c: _export(fps=0.0), ValueError, r"export.fps=0.0 must be > 0.0"),
    ("export negative size", lambda c: _export(turntable_size=-64), ValueError, r"export.turntable_size=-64 must be >= 8"),
    ("export zero mesh", lambda c: _export(mesh_resolution=0), ValueError, r"export.mesh_resolution=0 must be >= 8"),
    ("export bool frames", lambda c: _export(turntable_frames=True), ValueError, r"export.turntable_frames=True must be an integer"),
    ("mesh huge resolution", lambda c: _mesh_cfg(resolution=1_000_000), ValueError, r"mesh.resolution=1000000 must be >= 2 and <= 1024 \(marching-cubes grid"),
    ("mesh NaN threshold", lambda c: _mesh_cfg(threshold=NAN), ValueError, r"threshold=nan must be a finite number"),
    ("mesh inf box", lambda c: _mesh_cfg(aabb_half_size=INF), ValueError, r"aabb_half_size=inf must be a finite number"),
    ("nerf cfg NaN lr", lambda c: _nerf_cfg(lr=NAN), ValueError, r"lr=nan must be a finite number"),
    ("nerf cfg inf lr deformation", lambda c: _nerf_cfg(lr_deformation=INF), ValueError, r"lr_deformation=inf must be a finite number"),
    ("nerf cfg huge samples", lambda c: _nerf_cfg(n_samples=10**9), ValueError, r"n_samples=1000000000 must be >= 1 and <= "),
    ("nerf cfg bool seed", lambda c: _nerf_cfg(seed=True), ValueError, r"seed=True must be an integer"),
    ("nerf cfg betas", lambda c: _nerf_cfg(adam_betas=(0.9, NAN)), ValueError, r"adam_betas\[1\]=nan must be a finite number"),
    ("nerf cfg render size", lambda c: _nerf_cfg(max_render_size=10**6), ValueError, r"max_render_size=1000000 must be >= 1 and <= 4096"),
    ("nerf guard NaN factor", lambda c: __import__("sv4d_models.nerf.guard", fromlist=["x"]).GuardConfig(spike_factor=NAN), ValueError, r"spike_factor=nan must be a finite number"),
    # ---- cameras, renders and writers refuse non-finite data ------------------------------------------------------
    ("camera fov 180", lambda c: _orbit(fov_deg=180.0), ValueError, r"fov_deg=180.0 must be >= 1.0 and <= 160.0"),
    ("camera fov 0", lambda c: _orbit(fov_deg=0.0), ValueError, r"fov_deg=0.0 must be >= 1.0"),
    ("camera NaN radius", lambda c: _orbit(radius=NAN), ValueError, r"radius=nan must be a finite number"),
    ("camera NaN angle", lambda c: _orbit(elevation_deg=NAN), ValueError, r"camera angles must be finite numbers"),
    ("camera NaN matrix", lambda c: __import__("sv4d_models.camera", fromlist=["x"]).Cameras(torch.full((1, 4, 4), NAN), torch.zeros(1), torch.zeros(1)), ValueError, r"camera matrices \(c2w\) hold NaN or infinite values"),
    ("orbit NaN elevation", lambda c: __import__("sv4d_models.camera", fromlist=["x"]).sv4d_conditioning_angles(elevations_deg=NAN), ValueError, r"elevation.*nan must be a finite number"),
    ("render time 1.7", lambda c: c["fit"].render(_orbit(), 1.7, 8), ValueError, r"times must lie in \[0, 1\] \(0 = the first frame, 1 = the last\), got \[1.70"),
    ("render time NaN", lambda c: c["fit"].render(_orbit(), NAN, 8), ValueError, r"times must lie in \[0, 1\] .*got \[nan\]"),
    ("render size 0", lambda c: c["fit"].render(_orbit(), 0.5, 0), ValueError, r"height=0 must be >= 1"),
    ("render size huge", lambda c: c["fit"].render(_orbit(), 0.5, 10**6), ValueError, r"height=1000000 must be >= 1 and <= 16384"),
    ("json NaN", lambda c: __import__("sv4d_models.files", fromlist=["x"]).json_text({"a": {"b": [1.0, NAN]}}, c["dir"] / "x.json"), ValueError, r"x.json: a.b\[1\]=nan is NaN or infinite; a JSON file cannot hold it"),
    ("transforms NaN times", lambda c: _transforms(c, times=torch.tensor([NAN])), ValueError, r"transforms.json: .* is NaN or infinite"),
    ("transforms NaN images", lambda c: _transforms(c, images=torch.full((1, 4, 4, 3), NAN)), ValueError, r"the images of transforms.json holds 48 NaN"),
    ("glb NaN vertices", lambda c: _mesh_seq(vertices=[np.full((3, 3), NAN)]), ValueError, r"frame 0: 9 vertex coordinates are NaN or infinite"),
    ("glb NaN times", lambda c: _mesh_seq(times=[NAN]), ValueError, r"times \[nan\] must be finite"),
    ("glb NaN fps", lambda c: __import__("sv4d_models.export.glb", fromlist=["x"]).write_glb(_mesh_seq(), c["dir"] / "x.glb", fps=NAN), ValueError, r"fps=nan"),
    ("glb morph NaN", lambda c: __import__("sv4d_models.export.glb", fromlist=["x"]).build_morph_glb(np.full((2, 3, 3), NAN), np.array([[0, 1, 2]])), ValueError, r"morph GLB vertices hold 18 NaN"),
    ("ply NaN vertices", lambda c: __import__("sv4d_models.export.sequence", fromlist=["x"]).ply_bytes(np.array([[0.0, 0.0, INF]]), np.zeros((0, 3), int)), ValueError, r"PLY vertices hold 1 NaN or infinite"),
    ("obj NaN vertices", lambda c: __import__("sv4d_models.export.sequence", fromlist=["x"]).obj_bytes(np.array([[NAN, 0.0, 0.0]]), np.zeros((0, 3), int)), ValueError, r"OBJ vertices hold 1 NaN"),
    ("mp4 NaN frames", lambda c: __import__("sv4d_models.export.video", fromlist=["x"]).write_mp4(torch.full((2, 8, 8, 3), NAN), c["dir"] / "x.mp4"), ValueError, r"NaN"),
    ("mp4 NaN fps", lambda c: __import__("sv4d_models.export.video", fromlist=["x"]).write_mp4(torch.zeros(2, 8, 8, 3), c["dir"] / "x.mp4", fps=NAN), ValueError, r"fps=nan"),
    ("fit normal maps shape", lambda c: _fit(c, normal_maps=torch.zeros(3, 9, 4, 4, 3)), ValueError, r"normal_maps must be \[F, V, H, W, 3\] like the images"),
    ("fit NaN normal maps", lambda c: _fit(c, normal_maps=torch.full_like(c["m"]["images"], NAN)), ValueError, r"normal_maps contain NaN"),
    ("fit masks 3-d", lambda c: _fit(c, masks=c["m"]["masks"][0]), ValueError, r"masks must be \[F, V, H, W\]"),
    ("fit NaN times", lambda c: _fit(c, times=torch.tensor([0.0, NAN, 1.0])), ValueError, r"times must hold 3 values in \[0, 1\], got \[0.0, nan, 1.0\]"),
    # ---- devices ------------------------------------------------------------------------------------------------
    ("device gpu on load", lambda c: _load_unet(c, "sv4d.safetensors", device="gpu"), ValueError, r"device='gpu' is not a device name; use cpu, cuda or cuda:N"),
    ("device cuda:x", lambda c: __import__("sv4d_models.validate", fromlist=["x"]).check_device("cuda:x"), ValueError, r"device='cuda:x' is not a device name"),
    ("device number", lambda c: __import__("sv4d_models.validate", fromlist=["x"]).check_device(3), TypeError, r"device=3"),
    # ---- damaged and foreign files are named ---------------------------------------------------------------------------
    ("damaged fit checkpoint", lambda c: __import__("sv4d_models.nerf.fit", fromlist=["x"]).load_fit_result(c["dir"] / "damaged_fit" / "nerf_checkpoint.pt"), ValueError, r"damaged_fit/nerf_checkpoint.pt \(a NeRF fit checkpoint\) is damaged and cannot be read .*delete it"),
    ("damaged fit resume", lambda c: _fit(c, checkpoint_dir=str(c["dir"] / "damaged_fit")), ValueError, r"damaged_fit/nerf_checkpoint.pt \(a NeRF fit checkpoint\) is damaged"),
    ("damaged pass file", lambda c: __import__("sv4d_models.pipeline.store", fromlist=["x"]).PassStore(c["dir"] / "damaged_work").load_pass(0), ValueError, r"damaged_work/pass_000.pt \(a sampling work file\) is damaged"),
    ("damaged transforms", lambda c: __import__("sv4d_models.export.cameras", fromlist=["x"]).load_transforms(c["dir"] / "transforms.json"), ValueError, r"transforms.json \(a camera file\) is damaged and cannot be read"),
    ("incomplete transforms", lambda c: __import__("sv4d_models.export.cameras", fromlist=["x"]).load_transforms(c["dir"] / "lacks.json"), ValueError, r"lacks.json lacks \['w', 'transform_matrix'\]"),
    ("missing transforms", lambda c: __import__("sv4d_models.export.cameras", fromlist=["x"]).load_transforms(c["dir"] / "empty_folder"), FileNotFoundError, r"empty_folder/transforms.json does not exist"),
    ("damaged lpips heads", lambda c: __import__("sv4d_models.files", fromlist=["x"]).torch_load(c["dir"] / "lpips_heads.pth", "the LPIPS heads"), ValueError, r"lpips_heads.pth \(the LPIPS heads\) is damaged"),
    ("torch file is a folder", lambda c: __import__("sv4d_models.files", fromlist=["x"]).torch_load(c["dir"] / "empty_folder", "a pass"), ValueError, r"empty_folder \(a pass\) is a folder, not a file"),
    # ---- resume: a fit checkpoint of other settings or data is refused, naming the difference ---------------------------
    ("fit resume other seed", lambda c: _fit(c, checkpoint_dir=str(c["dir"] / "fit"), seed=1), ValueError, r"fit/nerf_checkpoint.pt was written with other fit settings \(seed: 0 \(recorded\) vs 1 \(now\)\); pass --overwrite"),
    ("fit resume other data", lambda c: _fit(c, checkpoint_dir=str(c["dir"] / "fit"), images=c["m"]["images"].flip(-2)), ValueError, r"fit/nerf_checkpoint.pt was written for other images / masks / times"),
    ("reconstruct resume other seed", lambda c: __import__("sv4d_models.reconstruction", fromlist=["x"]).reconstruct(c["m"]["images"], c["m"]["masks"], c["m"]["cameras"], c["m"]["times"], c["dir"] / "recon", config=_nerf_cfg(static_steps=1, dynamic_steps=1, checkpoint_dir=str(c["dir"] / "fit"), seed=1)), ValueError, r"was written with other fit settings \(seed: 0 \(recorded\) vs 1 \(now\)\)"),
    # ---- videos: read completely or refused --------------------------------------------------------------------------
    ("video truncated mp4", lambda c: _load(c["dir"] / "cut.mp4"), ValueError, r"cut.mp4' is truncated: its header promises 3.00 s \(about 30 frames"),
    ("video truncated mov", lambda c: _load(c["dir"] / "cut.mov"), ValueError, r"cut.mov' is truncated"),
    ("video truncated mkv", lambda c: _load(c["dir"] / "cut.mkv"), ValueError, r"cut.mkv' is truncated"),
    ("video truncated webm", lambda c: _load(c["dir"] / "cut.webm"), ValueError, r"cut.webm' is truncated"),
    ("video text as mp4", lambda c: _load(c["dir"] / "text.mp4"), ValueError, r"could not decode video .*text.mp4"),
    ("video is a folder of nothing", lambda c: _load(c["dir"] / "manifest_dir"), ValueError, r"manifest_dir.*contains no"),
    # ---- --model demo with what it cannot honour ---------------------------------------------------------------------------
    ("demo image size", lambda c: _demo(c, image_size=32), ValueError, r"--image-size 32 cannot be used with --model demo: the demo model was trained at 64 px"),
    ("demo sv4d file", lambda c: _demo(c, sv4d="mine.safetensors"), ValueError, r"--sv4d mine.safetensors cannot be used with --model demo"),
    ("demo sv3d file", lambda c: _demo(c, sv3d="sv3d_p.safetensors"), ValueError, r"--sv3d sv3d_p.safetensors cannot be used with --model demo"),
    ("demo model kind", lambda c: _demo(c, model_kind="sv4d"), ValueError, r"--model-kind sv4d cannot be used with --model demo"),
    ("demo dtype", lambda c: _demo(c, dtype="float16"), ValueError, r"--dtype float16 cannot be used with --model demo: the demo model runs in float32"),
]



def test_the_catalogue_is_large_enough():
    from test_bad_inputs_cli import CLI_CASES
    from test_bad_inputs_resume import RESUME_CASES
    from test_bad_inputs_settings import NODE_CASES, TRAIN_CASES

    sections = {"library": CASES, "cli": CLI_CASES, "trainer": TRAIN_CASES, "nodes": NODE_CASES, "resume": RESUME_CASES}
    names = {key: [case_name(c) for c in cases] for key, cases in sections.items()}
    assert all(len(set(n)) == len(n) for n in names.values())
    assert len(CASES) >= 180 and len(CLI_CASES) >= 100 and len(RESUME_CASES) >= 14
    assert sum(len(n) for n in names.values()) >= 200


@pytest.mark.parametrize("name,call,exc,pattern", CASES, ids=[c[0] for c in CASES])
def test_wrong_input_is_refused_with_a_named_fix(ctx, name, call, exc, pattern):
    before = snapshot(ctx["dir"])
    with pytest.raises(exc, match=pattern):
        call(ctx)
    assert snapshot(ctx["dir"]) == before, "a refused call wrote or changed files"
