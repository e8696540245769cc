"""Marching cubes, animated GLB (frame switching + morph targets), OBJ/PLY sequences."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from sv4d_models.export.glb import build_morph_glb, from_gltf_axes, write_glb
from sv4d_models.export.mesh import MeshConfig, MeshSequence, extract_mesh, extract_mesh_sequence
from sv4d_models.export.sequence import write_mesh_sequence
from sv4d_models.synthetic import SyntheticScene

trimesh = pytest.importorskip("trimesh")
pygltflib = pytest.importorskip("pygltflib")


def sphere_density(radius: float, center=(0.0, 0.0, 0.0)):
    c = torch.tensor(center)

    def density_fn(x: torch.Tensor, t: float) -> torch.Tensor:
        r = radius * (1.0 + 0.5 * t)  # grows with t so frames differ
        return 100.0 * torch.sigmoid(-((x - c).norm(dim=-1) - r) / 0.01)

    return density_fn


def red_blue(x: torch.Tensor, t: float) -> torch.Tensor:
    out = torch.zeros_like(x)
    out[:, 0] = (x[:, 2] > 0).float()
    out[:, 2] = (x[:, 2] <= 0).float()
    return out


@pytest.fixture(scope="module")
def seq() -> MeshSequence:
    cfg = MeshConfig(resolution=24, threshold=50.0, aabb_half_size=0.6)
    return extract_mesh_sequence(sphere_density(0.3), red_blue, [0.0, 0.5, 1.0], cfg)


@pytest.mark.parametrize("backend", ["mcubes", "skimage"])
def test_marching_cubes_sphere_volume(backend):
    pytest.importorskip("mcubes" if backend == "mcubes" else "skimage")
    r = 0.35
    cfg = MeshConfig(resolution=48, threshold=50.0, aabb_half_size=0.6, backend=backend)
    v, f, c = extract_mesh(sphere_density(r, (0.05, -0.1, 0.02)), 0.0, red_blue, cfg)
    mesh = trimesh.Trimesh(v, f, process=False)
    assert mesh.is_watertight
    assert mesh.volume == pytest.approx(4.0 / 3.0 * math.pi * r ** 3, rel=0.02)
    assert np.allclose(mesh.centroid, [0.05, -0.1, 0.02], atol=5e-3)
    assert c.dtype == np.uint8 and c.shape == v.shape
    assert np.array_equal(c[v[:, 2] > 0.05], np.tile([255, 0, 0], (int((v[:, 2] > 0.05).sum()), 1)))


def test_mesh_cut_by_aabb_is_closed_and_inside():
    cfg = MeshConfig(resolution=24, threshold=50.0, aabb_half_size=0.3)
    v, f, _ = extract_mesh(sphere_density(0.6), 0.0, None, cfg)  # box corners (0.52) inside
    assert np.abs(v).max() <= 0.3 + 1e-6
    mesh = trimesh.Trimesh(v, f, process=False)
    assert mesh.is_watertight and mesh.volume == pytest.approx(0.6 ** 3, rel=0.05)


def test_empty_field_gives_empty_mesh():
    v, f, c = extract_mesh(lambda x, t: torch.zeros(len(x)), 0.0, red_blue, MeshConfig(resolution=8))
    assert v.shape == (0, 3) and f.shape == (0, 3) and c.shape == (0, 3)


def test_switch_glb_parses_and_has_frames(seq, tmp_path):
    path = write_glb(seq, tmp_path / "anim.glb", fps=8.0)
    g = pygltflib.GLTF2().load(str(path))
    anim = g.animations[0]
    assert len(anim.channels) == 3 and {c.target.path for c in anim.channels} == {"scale"}
    assert all(s.interpolation == "STEP" for s in anim.samplers)
    assert g.asset.extras["sv4d"]["frame_count"] == 3
    keys = g.accessors[anim.samplers[0].input]
    assert keys.count == 4 and keys.max == [pytest.approx(3 / 8.0)]
    assert g.accessors[g.meshes[0].primitives[0].attributes.COLOR_0].componentType == 5121
    # frame 0 visible at key 0 and at the loop key, hidden in between; frame 1 only at key 1
    blob = g.binary_blob()

    def scales(sampler):
        acc = g.accessors[sampler.output]
        view = g.bufferViews[acc.bufferView]
        return np.frombuffer(blob, np.float32, acc.count * 3, view.byteOffset).reshape(-1, 3)[:, 0]

    assert scales(anim.samplers[0]).tolist() == [1, 0, 0, 1]
    assert scales(anim.samplers[1]).tolist() == [0, 1, 0, 0]
    scene = trimesh.load(str(path))
    assert len(scene.geometry) == 3
    # positions come back in glTF y-up; undoing the axis map gives the world vertices
    geom = next(g for name, g in scene.geometry.items() if name.startswith("frame_0001"))
    assert np.allclose(np.sort(from_gltf_axes(geom.vertices), axis=0), np.sort(seq.vertices[1], axis=0), atol=1e-6)


def test_glb_axis_map_puts_world_z_on_gltf_y(tmp_path):
    v = np.array([[0, 0, 0], [0.1, 0, 0], [0, 0.1, 0], [0, 0, 0.5]], np.float32)
    f = np.array([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]], np.int32)
    path = write_glb(MeshSequence([v], [f], None, [0.0]), tmp_path / "one.glb")
    g = pygltflib.GLTF2().load(str(path))
    pos = g.accessors[g.meshes[0].primitives[0].attributes.POSITION]
    assert pos.max == [pytest.approx(0.1), pytest.approx(0.5), pytest.approx(0.1)]  # (y, z, x)
    assert not g.animations


def test_morph_glb_from_vertex_array(seq):
    base = seq.vertices[0]
    frames = np.stack([base + np.array([0.0, 0.0, 0.1 * i], np.float32) for i in range(4)])
    data = build_morph_glb(frames, seq.faces[0], seq.colors[0], fps=10.0)
    g = pygltflib.GLTF2.load_from_bytes(data)
    prim = g.meshes[0].primitives[0]
    assert len(prim.targets) == 3 and len(g.meshes[0].weights) == 3
    delta = g.accessors[prim.targets[2]["POSITION"]]
    assert delta.max[1] == pytest.approx(0.3) and delta.min[1] == pytest.approx(0.3)  # world z -> glTF Y
    sampler = g.animations[0].samplers[0]
    assert g.accessors[sampler.input].count == 5 and g.accessors[sampler.output].count == 5 * 3
    with pytest.raises(ValueError, match="same faces"):
        write_glb(seq, "unused.glb", mode="morph")  # marching-cubes frames have different topologies


def test_obj_and_ply_sequences_reload(seq, tmp_path):
    for fmt in ("obj", "ply"):
        paths = write_mesh_sequence(seq, tmp_path / fmt, fmt=fmt)
        assert [p.name for p in paths] == [f"frame_{i:04d}.{fmt}" for i in range(3)]
        meta = json.loads((tmp_path / fmt / "sequence.json").read_text())
        assert meta["frame_count"] == 3 and meta["times"] == [0.0, 0.5, 1.0]
        for i, p in enumerate(paths):
            m = trimesh.load(str(p), process=False)
            assert len(m.vertices) == len(seq.vertices[i]) and len(m.faces) == len(seq.faces[i])
            assert np.allclose(m.vertices, seq.vertices[i], atol=1e-5)
            assert np.array_equal(m.faces, seq.faces[i])
            assert np.abs(m.visual.vertex_colors[:, :3].astype(int) - seq.colors[i]).max() <= 1


def test_no_silent_overwrite(seq, tmp_path):
    path = write_glb(seq, tmp_path / "a.glb")
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_glb(seq, path, mode="switch", fps=30.0)
    assert path.read_bytes() == before
    write_glb(seq, path, fps=30.0, overwrite=True)
    assert path.read_bytes() != before
    write_mesh_sequence(seq, tmp_path / "s", fmt="ply")
    with pytest.raises(FileExistsError, match="frame_0000.ply"):
        write_mesh_sequence(seq, tmp_path / "s", fmt="ply")
    short = MeshSequence(seq.vertices[:1], seq.faces[:1], seq.colors[:1], [0.0])
    write_mesh_sequence(short, tmp_path / "s", fmt="ply", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "s").glob("frame_*")) == ["frame_0000.ply"]
    assert not list(tmp_path.glob("**/.*tmp*"))  # no temporary files left behind


def test_synthetic_scene_mesh_sequence_glb(tmp_path):
    scene = SyntheticScene.make("nonrigid", seed=0)
    cfg = MeshConfig(resolution=40, threshold=scene.iso_density, aabb_half_size=0.62)
    seq = extract_mesh_sequence(scene.density_fn, scene.color_fn, [0.0, 0.25], cfg)
    assert all(len(f) > 1000 for f in seq.faces)
    assert len(seq.vertices[0]) != len(seq.vertices[1])  # the object moved / deformed
    path = write_glb(seq, tmp_path / "scene.glb")
    assert len(trimesh.load(str(path)).geometry) == 2


def test_config_from_dict_rejects_unknown_key():
    assert MeshConfig.from_dict({"resolution": 32}).resolution == 32
    with pytest.raises(ValueError, match="resolutoin"):
        MeshConfig.from_dict({"resolutoin": 32})


def test_optional_decimation_recolours_vertices():
    pytest.importorskip("fast_simplification")
    full = MeshConfig(resolution=40, threshold=50.0, aabb_half_size=0.6)
    v, f, _ = extract_mesh(sphere_density(0.35), 0.0, None, full)
    dv, df, dc = extract_mesh(sphere_density(0.35), 0.0, red_blue, MeshConfig.from_dict(
        {"resolution": 40, "threshold": 50.0, "aabb_half_size": 0.6, "decimate_faces": 500}))
    assert len(df) <= 600 < len(f) and dc.shape == dv.shape
    assert np.array_equal(dc[dv[:, 2] > 0.02][:, 0], np.full(int((dv[:, 2] > 0.02).sum()), 255))
    mesh = trimesh.Trimesh(dv, df, process=False)
    assert mesh.volume == pytest.approx(4.0 / 3.0 * math.pi * 0.35 ** 3, rel=0.05)


def test_morph_sequence_inverts_a_backward_warp(tmp_path):
    from sv4d_models.export.mesh import morph_sequence

    v, f, c = extract_mesh(sphere_density(0.3), 0.0, red_blue, MeshConfig(resolution=20, threshold=50.0))

    def warp(x: torch.Tensor, t: float) -> torch.Tensor:  # canonical = world shifted back and slightly sheared
        return x - torch.tensor([0.0, 0.0, 0.2 * t]) - 0.1 * t * torch.sin(x[:, :1])

    seq, residual = morph_sequence(warp, [0.0, 0.5, 1.0], v, f, c, iters=20)
    assert seq.same_topology() and residual.max() < 1e-5
    assert np.allclose(seq.vertices[0], v, atol=1e-6)
    back = warp(torch.from_numpy(seq.vertices[2]), 1.0).numpy()
    assert np.allclose(back, v, atol=1e-5)
    assert seq.vertices[2][:, 2].mean() - v[:, 2].mean() == pytest.approx(0.2, abs=1e-3)
    path = write_glb(seq, tmp_path / "morph.glb", mode="morph")
    assert len(pygltflib.GLTF2().load(str(path)).meshes[0].primitives[0].targets) == 2


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    from sv4d_models.files import atomic_path

    target = tmp_path / "out.glb"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"done")
    assert target.read_bytes() == b"done" and [p.name for p in tmp_path.iterdir()] == ["out.glb"]
