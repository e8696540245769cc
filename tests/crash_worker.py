"""Subprocess for tests/test_crash_safety.py: one long writing job, killed with SIGKILL by the test at random moments.

    python tests/crash_worker.py sampling WORK CKPT_DIR     # SV4DPipeline.run with a work dir (21 frames)
    python tests/crash_worker.py fit WORK                   # NeRF fit checkpointing every step
    python tests/crash_worker.py export WORK                # the same GLB / PLY / mp4 rewritten over and over
Prints ``DONE`` when the job finished.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def video(n: int = 21, size: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, size, size, 3, generator=g)


def sampling(work: Path, ckpt: Path) -> torch.Tensor:
    from sv4d_models.pipeline import SV4DPipeline

    pipe = SV4DPipeline.from_checkpoints(ckpt / "sv4d.safetensors", ckpt / "sv3d_u.safetensors",
                                         config={"image_size": 16, "num_steps": 2, "device": "cpu"})
    return pipe.run(video(), work_dir=work).images


def fit(work: Path):
    from sv4d_models.nerf.fit import fit_dynamic_nerf
    from sv4d_models.nerf.fit_config import tiny_preset
    from sv4d_models.synthetic import SyntheticScene

    m = SyntheticScene.make(kind="rigid", seed=2).render_matrix(n_frames=3, size=16)
    cfg = tiny_preset(static_steps=20, dynamic_steps=20, checkpoint_dir=str(work), checkpoint_every=1,
                      resolution_schedule=((0, 16),), max_render_size=16, n_samples=12)
    return fit_dynamic_nerf(m["images"], m["masks"], m["cameras"], m["times"], cfg)


def export(work: Path) -> None:
    import numpy as np

    from sv4d_models.export.glb import write_glb
    from sv4d_models.export.mesh import MeshSequence
    from sv4d_models.export.sequence import write_mesh_sequence
    from sv4d_models.export.video import write_mp4

    rng = np.random.default_rng(0)
    for i in range(200):
        n = 2000 + 10 * i
        verts = [rng.random((n, 3)).astype(np.float32) for _ in range(3)]
        faces = [rng.integers(0, n, (2 * n, 3)).astype(np.int32) for _ in range(3)]
        seq = MeshSequence(verts, faces, None, np.linspace(0, 1, 3))
        write_glb(seq, work / "animated.glb", overwrite=True)
        write_mesh_sequence(seq, work / "meshes", fmt="ply", overwrite=True)
        write_mp4(torch.full((4, 32, 32, 3), i / 200.0), work / "turntable.mp4", overwrite=True)


if __name__ == "__main__":
    job, work = sys.argv[1], Path(sys.argv[2])
    work.mkdir(parents=True, exist_ok=True)
    if job == "sampling":
        sampling(work, Path(sys.argv[3]))
    elif job == "fit":
        fit(work)
    else:
        export(work)
    print("DONE", flush=True)
