"""Keep the object, drop the floaters: per-frame mesh components filtered by mask reprojection.

A NeRF fitted to a few views leaves small blobs of density in empty space ("floaters") that marching cubes turns into
stray mesh pieces. Every connected component of a frame's mesh is projected into that frame's views: a vertex is
supported in a view when it lands on the view's foreground mask (dilated by ``dilate`` pixels, for the masks'
anti-aliased edges), and a component's support is the mean over its vertices and views. The object's surface lies
inside every silhouette (support ~1); a floater lies outside most of them. Components with support below
``min_support`` are removed, and so are specks smaller than ``min_fraction`` of the frame's vertices (marching-cubes
crumbs of a few vertices, which a silhouette cannot tell from the object because they sit inside it); the
component with the most supported vertices is always kept, so a frame never loses its whole mesh.
"""
from __future__ import annotations

import numpy as np
import torch

from ..camera import focal_from_fov


def connected_components(n_vertices: int, faces: np.ndarray) -> np.ndarray:
    """Component label ``[n_vertices]`` (0..K-1) of every vertex; vertices connected through shared faces get the
    same label (min-label propagation with pointer jumping, numpy only)."""
    labels = np.arange(n_vertices)
    if len(faces) == 0:
        return labels
    faces = np.asarray(faces, dtype=np.int64)
    while True:
        face_min = labels[faces].min(axis=1)
        new = labels.copy()
        for k in range(3):
            np.minimum.at(new, faces[:, k], face_min)
        new = new[new]  # pointer jumping: a label points at its own (smaller) label
        if np.array_equal(new, labels):
            break
        labels = new
    _, dense = np.unique(labels, return_inverse=True)
    return dense


def foreground_support(points: np.ndarray, c2w: torch.Tensor, fov_deg: float, masks: torch.Tensor,
                       dilate: int = 2) -> np.ndarray:
    """Per point ``[N]``: the fraction of views (``c2w [V, 4, 4]``, ``masks [V, H, W]``) in whose dilated foreground
    the point projects (views it projects outside of, or is behind, count as not supported)."""
    v, h, w = masks.shape
    m = (masks.float() > 0.5).float()[:, None]
    if dilate > 0:
        m = torch.nn.functional.max_pool2d(m, 2 * dilate + 1, stride=1, padding=dilate)
    m = m[:, 0].bool().numpy()
    c2w = c2w.to(torch.float64).numpy()
    f = focal_from_fov(fov_deg, h)
    p = np.asarray(points, dtype=np.float64)
    hits = np.zeros(len(p))
    for i in range(v):
        rel = p - c2w[i, :3, 3]
        cam = rel @ c2w[i, :3, :3]  # world -> camera (R^T (p - t)); OpenGL: the camera looks along -z
        depth = -cam[:, 2]
        front = depth > 1e-6
        with np.errstate(divide="ignore", invalid="ignore"):
            col = np.floor(f * cam[:, 0] / depth + w / 2).astype(np.int64)
            row = np.floor(h / 2 - f * cam[:, 1] / depth).astype(np.int64)
        inside = front & (col >= 0) & (col < w) & (row >= 0) & (row < h)
        hits[inside] += m[i, row[inside], col[inside]]
    return hits / v


def filter_components(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None, c2w: torch.Tensor,
                      fov_deg: float, masks: torch.Tensor, min_support: float = 0.5, min_fraction: float = 0.01
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
    """(vertices, faces, colors, removed vertex count) with the unsupported components removed (module docstring)."""
    if len(vertices) == 0:
        return vertices, faces, colors, 0
    labels = connected_components(len(vertices), faces)
    support = foreground_support(vertices, c2w, fov_deg, masks)
    sizes = np.bincount(labels)
    per_component = np.bincount(labels, weights=support) / sizes
    keep_component = (per_component >= min_support) & (sizes >= min_fraction * len(vertices))
    keep_component[int(np.argmax(per_component * sizes))] = True  # the most supported vertex mass, not a speck
    keep = keep_component[labels]
    if keep.all():
        return vertices, faces, colors, 0
    new_index = np.full(len(vertices), -1, dtype=np.int64)
    new_index[keep] = np.arange(int(keep.sum()))
    faces = np.asarray(faces)
    kept_faces = faces[keep[faces].all(axis=1)]
    return (vertices[keep], new_index[kept_faces].astype(faces.dtype), None if colors is None else colors[keep],
            int((~keep).sum()))


__all__ = ["connected_components", "foreground_support", "filter_components"]
