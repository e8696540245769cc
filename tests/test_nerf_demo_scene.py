"""Issue 8's regression: the demo object fitted with the CPU preset (what ``sv4d demo`` and ``sv4d run`` use without a
GPU) stays a full object in every turntable frame and scores above a measured floor on the held-out view and frame.

Before the fix the dynamic stage's first steps warped the points out of the box: the turntable was white after
frame 0 and 8 of 9 meshes were empty. Fitted on the scene's exact views (the generated views are tested by
``test_demo_job.py``), 9 frames x 9 columns at 64 px, the preset unchanged; about 5 minutes on 2 quiet cores.
"""
from __future__ import annotations

import numpy as np
import pytest

from sv4d_models.demo import DEMO_FRAMES, DEMO_SCENE

pytestmark = pytest.mark.slow

# Measured (2026-12-05, 2 threads, the cpu preset as shipped: K-Planes with 32-wide MLPs, 150 + 500 steps at Adam
# lr 0.03, coarse to fine per stage, then the parts' motion): fitted views 24.62 dB, held-out view 21.64 dB,
# held-out frame (frame 4, never fitted: between frames 3 and 5, read through the part motion) 17.92 dB (at the
# fifth session's lr 0.01: 23.46 / 21.50 / 18.32, without the part motion 18.43; with 64-wide MLPs and no motion
# 23.52 / 21.67 / 18.62; K-Planes v1: 22.32 / 20.79 / 18.56; the hash-grid preset before issue 23: 20.94 / 19.76 /
# 18.32). Before the fix of issue 8 the turntable was blank after frame 0. The floors leave 1.5 dB for float
# summation order on other CPUs.
HELD_OUT_VIEW_FLOOR_DB = 20.0
HELD_OUT_FRAME_FLOOR_DB = 16.4


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    from sv4d_models.nerf.fit_config import cpu_preset
    from sv4d_models.presets import get_preset
    from sv4d_models.reconstruction import reconstruct
    from sv4d_models.synthetic import SyntheticScene

    gt = SyntheticScene.make(**DEMO_SCENE).render_matrix(model_kind="sv4d2_8views", n_frames=DEMO_FRAMES, size=64)
    out = tmp_path_factory.mktemp("demo_scene_cpu")
    paths = reconstruct(gt["images"], gt["masks"], gt["cameras"], gt["times"], out, cpu_preset(),
                        get_preset("cpu").export_settings())
    return gt, paths


def test_every_turntable_frame_shows_the_whole_object(fitted):
    import imageio.v3 as iio

    gt, paths = fitted
    frames = iio.imread(paths["turntable"], plugin="pyav")
    assert len(frames) == 24
    foreground = (frames < 240).any(-1).mean(axis=(1, 2))
    mask = float(gt["masks"].mean())
    assert (foreground > mask / 2).all() and (foreground < mask * 2).all(), (foreground.round(3), mask)


def test_held_out_view_and_frame_are_above_the_measured_floor(fitted):
    m = fitted[1]["metrics"]
    print({k: round(m[k]["psnr"], 2) for k in ("fitted", "held_out_view", "held_out_frame")})
    assert not m["rollbacks"]
    assert m["held_out_view"]["psnr"] > HELD_OUT_VIEW_FLOOR_DB and m["held_out_frame"]["psnr"] > HELD_OUT_FRAME_FLOOR_DB
    assert min(m[k]["min_coverage_ratio"] for k in ("fitted", "held_out_view", "held_out_frame")) > 0.8


def test_every_frame_has_a_mesh(fitted):
    vertices = fitted[1]["mesh_vertices"]
    assert len(vertices) == DEMO_FRAMES and min(vertices) > 500, vertices
    assert np.isfinite(vertices).all()
