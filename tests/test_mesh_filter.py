"""Floaters removed by mask reprojection (issue 23, item 3): the object's component is kept, a blob outside the
silhouettes is removed and counted; on the demo scene's true masks the object survives whole."""
from __future__ import annotations

import numpy as np
import torch
import trimesh

from sv4d_models.camera import matrix_cameras, pixel_rays
from sv4d_models.export.mesh_filter import connected_components, filter_components, foreground_support


def _sphere_masks(cameras, radius: float, size: int = 32) -> torch.Tensor:
    """[V, S, S] masks of a sphere of ``radius`` at the origin (exact ray-sphere test per pixel centre)."""
    idx = torch.arange(size)
    o, d = pixel_rays(cameras.c2w, cameras.fov_deg, size, size, idx.expand(len(cameras), -1),
                      idx.expand(len(cameras), -1), dtype=torch.float64)
    b = (o * d).sum(-1)
    disc = b ** 2 - ((o * o).sum(-1) - radius ** 2)
    return (disc > 0).float()


def _scene():
    cams = matrix_cameras("sv4d")
    body = trimesh.creation.icosphere(subdivisions=2, radius=0.28)
    blob = trimesh.creation.icosphere(subdivisions=1, radius=0.05)
    blob.apply_translation([0.0, 0.0, 0.75])  # above the object: outside the silhouette of the near-horizontal views
    v = np.concatenate([body.vertices, blob.vertices]).astype(np.float32)
    f = np.concatenate([body.faces, blob.faces + len(body.vertices)]).astype(np.int32)
    return cams, v, f, len(body.vertices), len(blob.vertices)


def test_components_are_the_connected_pieces():
    _, v, f, n_body, n_blob = _scene()
    labels = connected_components(len(v), f)
    assert len(np.unique(labels)) == 2 and len(set(labels[:n_body])) == 1 and len(set(labels[n_body:])) == 1
    assert connected_components(3, np.zeros((0, 3), int)).tolist() == [0, 1, 2]


def test_the_floater_is_removed_and_counted_and_the_object_kept():
    cams, v, f, n_body, n_blob = _scene()
    masks = _sphere_masks(cams, 0.3)
    support = foreground_support(v, cams.c2w, cams.fov_deg, masks)
    assert support[:n_body].min() == 1.0 and support[n_body:].max() < 0.5
    colors = np.arange(len(v) * 3, dtype=np.uint8).reshape(-1, 3)
    v2, f2, c2, removed = filter_components(v, f, colors, cams.c2w, cams.fov_deg, masks)
    assert removed == n_blob and len(v2) == n_body and np.array_equal(v2, v[:n_body])
    assert np.array_equal(c2, colors[:n_body]) and f2.max() < n_body
    assert len(f2) == len(trimesh.creation.icosphere(subdivisions=2).faces)


def test_specks_inside_the_silhouette_are_removed():
    cams = matrix_cameras("sv4d")
    body = trimesh.creation.icosphere(subdivisions=4, radius=0.28)  # 2562 vertices
    speck = trimesh.creation.icosphere(subdivisions=0, radius=0.01)  # 12 vertices inside the object: < 1 %
    v = np.concatenate([body.vertices, speck.vertices]).astype(np.float32)
    f = np.concatenate([body.faces, speck.faces + len(body.vertices)]).astype(np.int32)
    masks = _sphere_masks(cams, 0.3)
    v2, _, _, removed = filter_components(v, f, None, cams.c2w, cams.fov_deg, masks)
    assert removed == 12 and len(v2) == len(body.vertices)
    assert filter_components(v, f, None, cams.c2w, cams.fov_deg, masks, min_fraction=0.0)[3] == 0


def test_the_best_supported_component_is_kept_even_without_support():
    cams, v, f, n_body, n_blob = _scene()
    empty = torch.zeros(len(cams), 32, 32)
    v2, _, _, removed = filter_components(v, f, None, cams.c2w, cams.fov_deg, empty)
    assert len(v2) > 0 and removed < len(v)  # never an empty frame


def test_the_demo_scene_object_survives_whole():
    """The demo scene's own geometry (its true masks, every frame's views): nothing of the object is removed."""
    from sv4d_models.demo import DEMO_SCENE
    from sv4d_models.export.mesh import MeshConfig, extract_mesh
    from sv4d_models.synthetic import SyntheticScene

    scene = SyntheticScene.make(**DEMO_SCENE)
    m = scene.render_matrix(model_kind="sv4d2_8views", n_frames=2, size=48)
    cams = m["cameras"]
    for frame, t in enumerate(m["times"].tolist()):
        v, f, _ = extract_mesh(scene.density_fn, float(t), None,
                               MeshConfig(resolution=48, threshold=scene.iso_density, aabb_half_size=1.0))
        _, _, _, removed = filter_components(v, f, None, cams.c2w, cams.fov_deg, m["masks"][frame])
        assert len(v) > 100 and removed == 0
