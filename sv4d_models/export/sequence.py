"""Per-frame OBJ / PLY sequence folders with vertex colours (Blender "stop motion" import, MeshLab, Open3D).

Files are ``frame_0000.obj`` / ``frame_0000.ply`` ... plus ``sequence.json`` (frame times, fps, axis convention).
OBJ stores colours as the common ``v x y z r g b`` extension (floats in [0, 1]); PLY is binary little-endian with
``uchar red green blue``. Coordinates are world z-up by default (consistent with the exported cameras);
``up_axis="y"`` applies the glTF mapping (x, y, z) -> (y, z, x) for y-up tools. Pure numpy, atomic writes.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from ..files import atomic_write_bytes, atomic_write_text, json_text, prepare_folder
from ..validate import check_finite_array
from .mesh import MeshSequence

FORMATS = ("obj", "ply")


def _axes(vertices: np.ndarray, up_axis: str) -> np.ndarray:
    if up_axis == "z":
        return vertices
    if up_axis == "y":
        return vertices[:, [1, 2, 0]]
    raise ValueError(f"up_axis={up_axis!r} is not supported; use 'z' (world, default) or 'y' (glTF-style)")


def obj_bytes(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None = None) -> bytes:
    """Wavefront OBJ text for ``vertices [V, 3]``, ``faces [F, 3]`` (0-based) and ``colors [V, 3]`` uint8."""
    check_finite_array(vertices, "OBJ vertices")
    buf = io.StringIO()
    buf.write("# ComfyUI-SV4D mesh frame\n")
    if colors is None:
        np.savetxt(buf, vertices, fmt="v %.6f %.6f %.6f")
    else:
        np.savetxt(buf, np.hstack([vertices, colors / 255.0]), fmt="v %.6f %.6f %.6f %.4f %.4f %.4f")
    np.savetxt(buf, faces.astype(np.int64) + 1, fmt="f %d %d %d")
    return buf.getvalue().encode("ascii")


def ply_bytes(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None = None) -> bytes:
    """Binary little-endian PLY for ``vertices [V, 3]``, ``faces [F, 3]`` and ``colors [V, 3]`` uint8."""
    check_finite_array(vertices, "PLY vertices")
    vfields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colors is not None:
        vfields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vert = np.empty(len(vertices), dtype=vfields)
    vert["x"], vert["y"], vert["z"] = vertices[:, 0], vertices[:, 1], vertices[:, 2]
    if colors is not None:
        vert["red"], vert["green"], vert["blue"] = colors[:, 0], colors[:, 1], colors[:, 2]
    face = np.empty(len(faces), dtype=[("n", "u1"), ("idx", "<i4", (3,))])
    face["n"], face["idx"] = 3, faces
    props = "".join(f"property {'float' if t == '<f4' else 'uchar'} {n}\n" for n, t in vfields)
    header = (f"ply\nformat binary_little_endian 1.0\ncomment ComfyUI-SV4D mesh frame\n"
              f"element vertex {len(vertices)}\n{props}element face {len(faces)}\n"
              "property list uchar int vertex_indices\nend_header\n")
    return header.encode("ascii") + vert.tobytes() + face.tobytes()


def frame_names(n_frames: int, fmt: str) -> list[str]:
    return [f"frame_{i:04d}.{fmt}" for i in range(n_frames)]


def write_mesh_sequence(seq: MeshSequence, folder: str | os.PathLike, fmt: str = "ply", up_axis: str = "z",
                        fps: float = 10.0, overwrite: bool = False) -> list[Path]:
    """Write one ``fmt`` file per frame plus ``sequence.json`` into ``folder``; returns the frame paths.

    Raises FileExistsError (before writing anything) if any output exists and ``overwrite`` is False; with
    ``overwrite=True`` stale ``frame_*.{fmt}`` files beyond the new frame count are removed.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt={fmt!r} is not supported; use one of {FORMATS}")
    names = frame_names(seq.n_frames, fmt)
    folder = prepare_folder(folder, names + ["sequence.json"], overwrite)
    writer = obj_bytes if fmt == "obj" else ply_bytes
    paths = []
    for i, name in enumerate(names):
        colors = None if seq.colors is None else seq.colors[i]
        data = writer(_axes(seq.vertices[i], up_axis), seq.faces[i], colors)
        paths.append(atomic_write_bytes(folder / name, data, overwrite))
    for stale in sorted(folder.glob(f"frame_*.{fmt}")):
        if stale.name not in names:
            stale.unlink()
    meta = {"format": fmt, "frame_count": seq.n_frames, "fps": float(fps), "times": seq.times.tolist(),
            "files": names, "up_axis": up_axis,
            "axes": "world z-up" if up_axis == "z" else "y-up: (x, y, z)_world -> (y, z, x)"}
    atomic_write_text(folder / "sequence.json", json_text(meta, folder / "sequence.json", indent=1), overwrite)
    return paths
