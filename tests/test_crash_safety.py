"""SIGKILL at random moments while sampling passes, NeRF checkpoints and exports are written: every file left is
either a complete version or absent, and a rerun continues from what was kept (bit-identical for sampling)."""
from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sv4d_models.tiny_checkpoint import write_tiny_checkpoint

WORKER = Path(__file__).with_name("crash_worker.py")
pytestmark = pytest.mark.slow


def start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKER), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def kill_after(proc: subprocess.Popen, seconds: float) -> bool:
    """SIGKILL ``proc`` after ``seconds`` unless it finished; True when it was killed."""
    try:
        proc.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return True


def finish(*args) -> str:
    r = subprocess.run([sys.executable, str(WORKER), *map(str, args)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "DONE" in r.stdout, r.stderr[-2000:]
    return r.stdout


def test_sampling_work_dir_survives_sigkill(tmp_path):
    ckpt = tmp_path / "ckpt"
    for k in ("sv4d", "sv3d_u"):
        write_tiny_checkpoint(ckpt / f"{k}.safetensors", k)
    sys.path.insert(0, str(WORKER.parent))
    from crash_worker import sampling

    reference = sampling(tmp_path / "full", ckpt)
    work, rng = tmp_path / "work", random.Random(7)
    for _ in range(4):
        kill_after(start("sampling", work, ckpt), rng.uniform(4.0, 12.0))
        manifest = json.loads((work / "manifest.json").read_text()) if (work / "manifest.json").exists() else None
        for f in work.glob("pass_*.pt"):
            torch.load(f, weights_only=True)  # complete, or it would not parse
        if manifest is not None:
            assert all((work / ("pass_sv3d.pt" if i == -1 else f"pass_{i:03d}.pt")).is_file() for i in manifest["done"])
    finish("sampling", work, ckpt)
    assert torch.equal(sampling(work, ckpt), reference)  # resumed (nothing left to do) == uninterrupted
    assert not [p for p in work.iterdir() if p.name.startswith(".")]


def test_fit_checkpoint_survives_sigkill(tmp_path):
    sys.path.insert(0, str(WORKER.parent))
    from crash_worker import fit

    reference = fit(tmp_path / "full")
    work, rng = tmp_path / "work", random.Random(11)
    for _ in range(3):
        kill_after(start("fit", work), rng.uniform(3.0, 8.0))
        if (work / "nerf_checkpoint.pt").exists():
            step = torch.load(work / "nerf_checkpoint.pt", weights_only=True)["step"]
            assert 0 <= step <= 40
    finish("fit", work)
    resumed = fit(work)  # continues from the kept checkpoint: the uninterrupted result
    for (k, a), (_, b) in zip(reference.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), k


def test_exports_survive_sigkill(tmp_path):
    import pygltflib

    from sv4d_models.export.video import write_mp4  # noqa: F401  (imports checked before the kill loop)

    rng = random.Random(3)
    for i in range(4):
        work = tmp_path / f"w{i}"
        kill_after(start("export", work), rng.uniform(3.0, 10.0))
        if (work / "animated.glb").exists():
            glb = pygltflib.GLTF2().load(str(work / "animated.glb"))
            assert len(glb.meshes) == 3
        for ply in (work / "meshes").glob("*.ply") if (work / "meshes").exists() else []:
            header = ply.read_bytes()[:200]
            assert header.startswith(b"ply")
            n = int(header.split(b"element vertex ")[1].split(b"\n")[0])
            assert ply.stat().st_size > 12 * n  # the whole vertex block is there
        if (work / "turntable.mp4").exists():
            import imageio.v3 as iio

            assert iio.imread(work / "turntable.mp4", index=None).shape[0] == 4
        time.sleep(0.1)
