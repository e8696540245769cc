"""``sv4d demo --fast`` end to end, as a new user runs it (the console script in a subprocess): the bundled clip and
demo model, sampling, videos, grid, the 4D fit on the generated views and every export, each opened and checked."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pygltflib
import pytest

from sv4d_models.demo import DEMO_FRAMES, DEMO_INPUT

MANIFEST_FIELDS = {"input", "models", "seeds", "settings", "library_version", "timings_s", "metrics", "quality",
                   "outputs", "export", "nerf_config", "plan"}


def sv4d(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("sv4d")
    cmd = [exe] if exe else [sys.executable, "-m", "sv4d_models"]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=900)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "sv4d_demo"
    proc = sv4d("demo", "--fast", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, proc


def test_the_bundled_clip_is_the_demo_objects_input_view():
    import torch

    from sv4d_models.assets import DEMO_IMAGE_SIZE, DEMO_KIND
    from sv4d_models.demo import ground_truth
    from sv4d_models.frames_io import load_frames
    from sv4d_models.images import psnr

    clip = torch.as_tensor(load_frames(DEMO_INPUT))[..., :3].float()
    assert clip.shape == (DEMO_FRAMES, DEMO_IMAGE_SIZE, DEMO_IMAGE_SIZE, 3)
    assert psnr(clip, ground_truth(DEMO_KIND, DEMO_IMAGE_SIZE)["images"][:, 0]) > 40  # palette rounding only


def test_demo_fast_writes_every_output_and_a_complete_manifest(demo):
    out, proc = demo
    manifest = json.loads((out / "manifest.json").read_text())
    assert MANIFEST_FIELDS <= set(manifest), MANIFEST_FIELDS - set(manifest)
    assert manifest["models"]["sv4d"]["sha256"] and manifest["input"]["frames"] == DEMO_FRAMES
    assert set(manifest["timings_s"]) == {"input", "models", "sampling", "videos", "reconstruction"}
    assert "[done] outputs in" in proc.stderr + proc.stdout
    for key in ("turntable", "glb", "transforms"):
        assert Path(manifest["outputs"][key]).is_file(), key
    assert [Path(p).name for p in manifest["outputs"]["meshes"]] == [f"frame_{f:04d}.ply" for f in range(DEMO_FRAMES)]
    assert (out / "grid.png").is_file() and len(list((out / "videos").glob("v*.mp4"))) == 9


def test_demo_fast_generated_views_beat_repeating_the_input(demo):
    quality = json.loads((demo[0] / "manifest.json").read_text())["quality"]
    assert quality["psnr_generated_vs_truth"] > quality["psnr_copy_input_vs_truth"] + 1.0, quality


def test_demo_fast_videos_decode_with_the_expected_frames_and_are_not_blank(demo):
    import imageio.v3 as iio

    out = demo[0]
    manifest = json.loads((out / "manifest.json").read_text())
    view = iio.imread(out / "videos" / "v003.mp4", plugin="pyav")
    assert view.shape[0] == DEMO_FRAMES
    turntable = iio.imread(manifest["outputs"]["turntable"], plugin="pyav")
    assert turntable.shape[0] == manifest["export"]["turntable_frames"]
    foreground = (turntable < 240).any(-1).mean(axis=(1, 2))  # white background
    input_fg = manifest["metrics"]["fitted"]["frames"][0]["mask_coverage"]
    assert foreground.min() > input_fg / 2 and foreground.max() < input_fg * 2, (foreground, input_fg)


def test_demo_fast_glb_has_one_nonempty_mesh_per_frame(demo):
    manifest = json.loads((demo[0] / "manifest.json").read_text())
    g = pygltflib.GLTF2().load(manifest["outputs"]["glb"])
    assert g.asset.extras["sv4d"]["frame_count"] == DEMO_FRAMES and len(g.meshes) == DEMO_FRAMES
    counts = [g.accessors[m.primitives[0].attributes.POSITION].count for m in g.meshes]
    assert min(counts) > 100, counts
    assert g.animations and len(g.animations[0].channels) == DEMO_FRAMES


def test_demo_fast_reports_reconstruction_quality(demo):
    metrics = json.loads((demo[0] / "reconstruction" / "metrics.json").read_text())
    assert metrics["fitted"]["psnr"] > 15 and metrics["held_out_view"]["psnr"] > 15 and not metrics["rollbacks"]
    assert metrics["fitted"]["min_coverage_ratio"] > 0.5
    assert metrics["held_out_frame"]["frames"][0]["frame"] == metrics["held_out_frame"]["frame"] == DEMO_FRAMES // 2
    assert [f["frame"] for f in metrics["fitted"]["frames"]] == metrics["fitted_frames"]
    assert metrics["mesh_threshold"] == pytest.approx(11.88, abs=0.01)  # tiny preset: ln 2 / (1.4 / 24)
    assert np.isfinite([f["psnr"] for f in metrics["held_out_view"]["frames"]]).all()


def test_demo_into_an_earlier_demo_refuses_without_writing(demo):
    out = demo[0]
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    proc = sv4d("demo", "--fast", "--out", str(out))
    assert proc.returncode == 2 and "--resume" in proc.stderr and "Traceback" not in proc.stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before
