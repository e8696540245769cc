"""The shared world of the wrong-input catalogue (tests/test_bad_inputs*.py): tiny checkpoints, a pipeline, a
synthetic matrix, a finished fit checkpoint and a set of broken files, written once per session and then only read
(every case checks that a refused call left this folder as it was)."""
from __future__ import annotations

from pathlib import Path

import torch

from sv4d_models.tiny_checkpoint import write_tiny_checkpoint
from video_files import OPAQUE, encode, noise_frames, truncate

SIZE = 16
NAN, INF = float("nan"), float("inf")


def build(tmp_path_factory) -> dict:
    """Tiny checkpoints, a pipeline, a synthetic matrix and a few broken files (written once, then read-only)."""
    from safetensors.torch import save_file

    from sv4d_models.pipeline import SV4DPipeline
    from sv4d_models.synthetic import SyntheticScene

    d = tmp_path_factory.mktemp("bad_inputs")
    files = {k: write_tiny_checkpoint(d / f"{k}.safetensors", k) for k in ("sv4d", "sv3d_u", "sv4d2")}
    data = files["sv4d"].read_bytes()
    (d / "truncated.safetensors").write_bytes(data[: len(data) // 3])
    (d / "text.safetensors").write_text("not a checkpoint")
    (d / "model.ckpt").write_bytes(b"\x80\x04")
    save_file({"cond_stage_model.transformer.x": torch.zeros(2), "model.diffusion_model.input_blocks.0.0.weight":
               torch.zeros(4, 4, 3, 3)}, str(d / "sd.safetensors"))
    (d / "bad.gif").write_text("not a gif")
    torch.save({"format": "someone_else/1", "step": 3}, d / "other_fit.pt")
    (d / "clip.xyz").write_bytes(b"?")
    (d / "empty_folder").mkdir()
    (d / "manifest_dir").mkdir()
    (d / "manifest_dir" / "manifest.json").write_text("{broken")
    pipe = SV4DPipeline.from_checkpoints(files["sv4d"], files["sv3d_u"],
                                         config={"image_size": SIZE, "num_steps": 2, "device": "cpu"})
    matrix = SyntheticScene.make(kind="rigid", seed=1).render_matrix(n_frames=3, size=SIZE)
    c = {"dir": d, "files": files, "pipe": pipe, "m": matrix, "video": torch.rand(5, SIZE, SIZE, 3)}
    c["fit"] = fit(c, checkpoint_dir=str(d / "fit"))  # a finished fit checkpoint (seed 0) to resume against
    whole = (d / "fit" / "nerf_checkpoint.pt").read_bytes()
    (d / "recon" / "nerf").mkdir(parents=True)  # a reconstruction folder whose fit (seed 0) a new run must not mix in
    (d / "recon" / "nerf" / "nerf_checkpoint.pt").write_bytes(whole)
    (d / "damaged_fit").mkdir()
    (d / "damaged_fit" / "nerf_checkpoint.pt").write_bytes(whole[: len(whole) // 2])
    (d / "damaged_work").mkdir()
    (d / "damaged_work" / "pass_000.pt").write_bytes(whole[: len(whole) // 3])
    (d / "transforms.json").write_text('{"frames": [{"transform_matrix": [[1, 0')
    (d / "lacks.json").write_text('{"h": 16, "frames": [{"file_path": "a.png"}]}')
    (d / "lpips_heads.pth").write_bytes(b"PK\x03\x04 truncated")
    for container in ("mp4", "mov", "mkv", "webm"):
        truncate(encode(d / f"cut.{container}", noise_frames(30), OPAQUE[container]))
    (d / "text.mp4").write_text("this is not a video")
    encode(d / "clip.gif", noise_frames(5, 32), [])
    return c


def fit(c, checkpoint_dir: str = "", seed: int = 0, **kw):
    """The tiny 2-step fit on the world's matrix (``kw`` replaces images, masks, cameras, times or normal_maps)."""
    from sv4d_models.nerf.fit import fit_dynamic_nerf
    from sv4d_models.nerf.fit_config import tiny_preset

    m = {**c["m"], **kw}
    cfg = tiny_preset(static_steps=1, dynamic_steps=1, checkpoint_dir=checkpoint_dir, seed=seed)
    return fit_dynamic_nerf(m["images"], m["masks"], m["cameras"], m["times"], cfg,
                            normal_maps=kw.get("normal_maps"))


def train_cfg(*overrides):
    from train.config import TrainConfig

    return TrainConfig().with_overrides(list(overrides))


def snapshot(folder: Path) -> dict:
    """``{relative path: (size, mtime)}`` of everything under ``folder``: equal before and after = nothing written."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def case_name(case) -> str:
    """The id of a catalogue case (a tuple, or a ``pytest.param``)."""
    return case.values[0] if hasattr(case, "marks") else case[0]
