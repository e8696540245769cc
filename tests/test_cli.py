"""`python -m sv4d_models demo`: the whole chain on the embedded default writes every output."""
from __future__ import annotations

import json

import pytest

from sv4d_models.cli import main


def test_demo_runs_every_stage_and_refuses_to_clobber(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--frames", "5", "--size", "32", "--steps", "2", "--preset", "test", "--fit-steps", "12"]
    assert main(args) == 0
    assert "[done]" in capsys.readouterr().out
    rec = out / "reconstruction"
    for name in ("turntable.mp4", "animated.glb", "cameras/transforms.json", "nerf/nerf_checkpoint.pt"):
        assert (rec / name).is_file(), name
    assert len(list((rec / "meshes").glob("frame_*.ply"))) == 5
    assert len(list((out / "sampling_videos").glob("*.mp4"))) == 9  # input column + 8 generated views
    pygltflib = pytest.importorskip("pygltflib")
    glb = pygltflib.GLTF2().load(str(rec / "animated.glb"))
    assert glb.asset.extras["sv4d"]["frame_count"] == 5
    assert len(glb.animations[0].channels) == 5  # one visibility (scale) track per frame node
    frames = json.loads((rec / "cameras" / "transforms.json").read_text())["frames"]
    assert len(frames) == 5 * 9
    with pytest.raises(SystemExit, match="--resume"):
        main(args)
