"""Animated GLB (binary glTF 2.0) writer for :class:`~sv4d_models.export.mesh.MeshSequence`; pure numpy + json + struct.

Why by hand: the format needs only a JSON chunk and one binary chunk, a hand-written writer has no dependency
(pygltflib and trimesh are used by the tests to read the result back) and gives full control of the
animation layout that three.js' ``AnimationMixer`` (ComfyUI Load3D / Preview3D) plays.

Two layouts (nerf4d.md section 5.2):

* ``mode="switch"`` (default): one node + mesh per frame, each with its own topology and colours. One animation
  channel per frame node drives its ``scale`` with ``STEP`` keys at ``k / fps``: 1 on its own frame, 0 elsewhere;
  frame 0 is repeated as key ``F`` so the clip loops cleanly. Initial scales show only frame 0 in static viewers.
* ``mode="morph"``: frame 0 is the base mesh, frame ``f >= 1`` is a morph target (POSITION deltas) and a
  ``weights`` channel with ``LINEAR`` keys blends between frames. Needs one topology for all frames (e.g. a
  user-supplied ``[F, V, 3]`` vertex array); colours stay those of frame 0.

Conventions: world z-up (x, y, z) maps to glTF y-up (X, Y, Z) = (y, z, x), a rotation (det +1), so the input view
(camera on +x) faces the default viewer camera on +Z (nerf4d.md section 1.4). COLOR_0 is normalised
UNSIGNED_BYTE VEC4 converted from sRGB to linear as glTF requires; NORMAL is the area-weighted vertex normal; the
material is double-sided and, by default, ``KHR_materials_unlit`` so the baked NeRF colours show as rendered.
The frame count, fps and frame times are recorded in ``asset.extras["sv4d"]``.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from ..files import atomic_write_bytes, json_text
from ..images import to_uint8
from ..validate import check_finite_array
from .mesh import MeshSequence

_FLOAT, _UBYTE, _UINT = 5126, 5121, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_NCOMP = {"SCALAR": 1, "VEC3": 3, "VEC4": 4}


def to_gltf_axes(xyz: np.ndarray) -> np.ndarray:
    """World z-up ``[N, 3]`` -> glTF y-up ``[N, 3]``: (x, y, z) -> (y, z, x)."""
    return np.ascontiguousarray(np.asarray(xyz)[:, [1, 2, 0]], dtype=np.float32)


def from_gltf_axes(xyz: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_gltf_axes`: glTF (X, Y, Z) -> world (Z, X, Y)."""
    return np.ascontiguousarray(np.asarray(xyz)[:, [2, 0, 1]], dtype=np.float32)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit area-weighted vertex normals ``[V, 3]`` float32 (+Y for isolated vertices)."""
    v = vertices.astype(np.float64)
    tri = v[faces]  # [F, 3, 3]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n = np.zeros_like(v)
    for k in range(3):
        np.add.at(n, faces[:, k], fn)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    n = np.where(length > 1e-20, n / np.maximum(length, 1e-20), np.array([0.0, 1.0, 0.0]))
    return n.astype(np.float32)


def srgb_to_linear_u8(colors: np.ndarray) -> np.ndarray:
    """sRGB uint8 ``[V, 3]`` -> linear RGBA uint8 ``[V, 4]`` (alpha 255) for COLOR_0."""
    c = colors.astype(np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    rgba = np.concatenate([lin, np.ones_like(lin[:, :1])], axis=1)
    return to_uint8(rgba)


class _Builder:
    """Collects glTF JSON objects and one binary buffer (every accessor gets its own 4-byte aligned view)."""

    def __init__(self, unlit: bool) -> None:
        self.bin = bytearray()
        self.gltf: dict = {"asset": {"version": "2.0", "generator": "ComfyUI-SV4D sv4d_models.export.glb"},
                           "scene": 0, "scenes": [{"nodes": []}], "nodes": [], "meshes": [], "accessors": [],
                           "bufferViews": [], "buffers": []}
        material = {"pbrMetallicRoughness": {"baseColorFactor": [1.0, 1.0, 1.0, 1.0], "metallicFactor": 0.0,
                                             "roughnessFactor": 1.0}, "doubleSided": True}
        if unlit:
            material["extensions"] = {"KHR_materials_unlit": {}}
            self.gltf["extensionsUsed"] = ["KHR_materials_unlit"]
        self.gltf["materials"] = [material]

    def accessor(self, array: np.ndarray, ctype: int, atype: str, target: int | None = None,
                 normalized: bool = False, minmax: bool = False) -> int:
        data = np.ascontiguousarray(array).tobytes()
        view = {"buffer": 0, "byteOffset": len(self.bin), "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        self.bin += data + b"\0" * (-len(data) % 4)
        self.gltf["bufferViews"].append(view)
        acc = {"bufferView": len(self.gltf["bufferViews"]) - 1, "componentType": ctype,
               "count": int(array.shape[0]), "type": atype}
        if normalized:
            acc["normalized"] = True
        if minmax:
            flat = array.reshape(array.shape[0], _NCOMP[atype])
            acc["min"], acc["max"] = flat.min(axis=0).tolist(), flat.max(axis=0).tolist()
        self.gltf["accessors"].append(acc)
        return len(self.gltf["accessors"]) - 1

    def mesh(self, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None, name: str) -> int | None:
        """Add a mesh from world-space ``vertices [V, 3]``, ``faces [F, 3]``, sRGB ``colors [V, 3]``."""
        if len(vertices) == 0 or len(faces) == 0:
            return None
        pos = to_gltf_axes(vertices)
        attrs = {"POSITION": self.accessor(pos, _FLOAT, "VEC3", _ARRAY_BUFFER, minmax=True),
                 "NORMAL": self.accessor(vertex_normals(pos, faces), _FLOAT, "VEC3", _ARRAY_BUFFER)}
        if colors is not None:
            attrs["COLOR_0"] = self.accessor(srgb_to_linear_u8(colors), _UBYTE, "VEC4", _ARRAY_BUFFER, True)
        idx = self.accessor(faces.astype(np.uint32).reshape(-1), _UINT, "SCALAR", _ELEMENT_ARRAY_BUFFER, minmax=True)
        self.gltf["meshes"].append({"name": name, "primitives": [
            {"attributes": attrs, "indices": idx, "material": 0, "mode": 4}]})
        return len(self.gltf["meshes"]) - 1

    def node(self, **props) -> int:
        self.gltf["nodes"].append(props)
        return len(self.gltf["nodes"]) - 1

    def to_bytes(self) -> bytes:
        self.gltf["buffers"] = [{"byteLength": len(self.bin)}]
        js = json_text(self.gltf, "the GLB's JSON chunk", separators=(",", ":")).encode("utf-8")
        js += b" " * (-len(js) % 4)
        total = 12 + 8 + len(js) + 8 + len(self.bin)
        return b"".join([struct.pack("<4sII", b"glTF", 2, total), struct.pack("<I4s", len(js), b"JSON"), js,
                         struct.pack("<I4s", len(self.bin), b"BIN\0"), bytes(self.bin)])


def _key_times(n_frames: int, fps: float) -> np.ndarray:
    return (np.arange(n_frames + 1, dtype=np.float64) / fps).astype(np.float32)  # frame 0 again at the end


def _extras(seq_times: np.ndarray, fps: float, mode: str) -> dict:
    return {"sv4d": {"frame_count": int(len(seq_times)), "fps": float(fps), "mode": mode,
                     "times": [float(t) for t in seq_times], "up_axis_mapping": "world(x,y,z)->gltf(y,z,x)"}}


def build_switch_glb(seq: MeshSequence, fps: float = 10.0, unlit: bool = True) -> bytes:
    """Frame-switching animated GLB bytes (see module docstring)."""
    _check_fps(fps)
    b = _Builder(unlit)
    frame_nodes = []
    for i in range(seq.n_frames):
        mesh = b.mesh(seq.vertices[i], seq.faces[i], None if seq.colors is None else seq.colors[i], f"frame_{i:04d}")
        props = {"name": f"frame_{i:04d}", "scale": [1.0, 1.0, 1.0] if i == 0 else [0.0, 0.0, 0.0]}
        if mesh is not None:
            props["mesh"] = mesh
        frame_nodes.append(b.node(**props))
    root = b.node(name="sv4d_animation", children=frame_nodes)
    b.gltf["scenes"][0]["nodes"] = [root]
    b.gltf["asset"]["extras"] = _extras(seq.times, fps, "switch")
    if seq.n_frames > 1:
        n = seq.n_frames
        t_acc = b.accessor(_key_times(n, fps), _FLOAT, "SCALAR", minmax=True)
        samplers, channels = [], []
        for i, node in enumerate(frame_nodes):
            on = np.zeros(n + 1, np.float32)
            on[i] = 1.0
            if i == 0:
                on[n] = 1.0
            scales = np.repeat(on[:, None], 3, axis=1)
            samplers.append({"input": t_acc, "output": b.accessor(scales, _FLOAT, "VEC3"), "interpolation": "STEP"})
            channels.append({"sampler": i, "target": {"node": node, "path": "scale"}})
        b.gltf["animations"] = [{"name": "sv4d_frames", "samplers": samplers, "channels": channels,
                                 "extras": {"frame_count": n}}]
    return b.to_bytes()


def build_morph_glb(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None = None,
                    fps: float = 10.0, times=None, unlit: bool = True) -> bytes:
    """Morph-target animated GLB from a fixed-topology sequence ``vertices [F, V, 3]`` (world z-up),
    ``faces [Fc, 3]`` and frame-0 sRGB ``colors [V, 3]`` uint8."""
    _check_fps(fps)
    vertices = np.asarray(vertices, dtype=np.float32)
    if vertices.ndim != 3 or vertices.shape[2] != 3 or vertices.shape[1] == 0:
        raise ValueError(f"vertices must be [F, V, 3] with V > 0 (one topology for all frames), got {vertices.shape}")
    faces = np.asarray(faces)
    n = vertices.shape[0]
    times = np.linspace(0.0, 1.0, n) if times is None else np.asarray(times, dtype=np.float64)
    check_finite_array(vertices, "morph GLB vertices")
    check_finite_array(times, "morph GLB times")
    b = _Builder(unlit)
    mesh = b.mesh(vertices[0], faces, colors, "morph_mesh")
    if mesh is None:
        raise ValueError("faces is empty; a morph-target GLB needs at least one triangle")
    base = to_gltf_axes(vertices[0])
    targets = [{"POSITION": b.accessor(to_gltf_axes(vertices[f]) - base, _FLOAT, "VEC3", _ARRAY_BUFFER, minmax=True)}
               for f in range(1, n)]
    node = b.node(name="sv4d_morph", mesh=mesh)
    b.gltf["scenes"][0]["nodes"] = [node]
    b.gltf["asset"]["extras"] = _extras(times, fps, "morph")
    if n > 1:
        b.gltf["meshes"][mesh]["primitives"][0]["targets"] = targets
        b.gltf["meshes"][mesh]["weights"] = [0.0] * (n - 1)
        b.gltf["meshes"][mesh]["extras"] = {"targetNames": [f"frame_{f:04d}" for f in range(1, n)]}
        weights = np.zeros((n + 1, n - 1), np.float32)  # key k: frame k (0 = base, also the loop key n)
        weights[np.arange(1, n), np.arange(n - 1)] = 1.0
        t_acc = b.accessor(_key_times(n, fps), _FLOAT, "SCALAR", minmax=True)
        w_acc = b.accessor(weights.reshape(-1), _FLOAT, "SCALAR")
        b.gltf["animations"] = [{"name": "sv4d_frames", "extras": {"frame_count": n},
                                 "samplers": [{"input": t_acc, "output": w_acc, "interpolation": "LINEAR"}],
                                 "channels": [{"sampler": 0, "target": {"node": node, "path": "weights"}}]}]
    return b.to_bytes()


def write_glb(seq: MeshSequence, path: str | os.PathLike, mode: str = "switch", fps: float = 10.0,
              unlit: bool = True, overwrite: bool = False) -> Path:
    """Write ``seq`` as one animated GLB (atomic; FileExistsError unless ``overwrite``). Returns the path."""
    if mode == "switch":
        data = build_switch_glb(seq, fps, unlit)
    elif mode == "morph":
        if not seq.same_topology():
            raise ValueError("mode='morph' needs the same faces in every frame; use mode='switch' for "
                             "per-frame marching-cubes meshes")
        data = build_morph_glb(np.stack(seq.vertices), seq.faces[0], None if seq.colors is None else seq.colors[0],
                               fps, seq.times, unlit)
    else:
        raise ValueError(f"mode={mode!r} is not supported; use 'switch' (default) or 'morph'")
    return atomic_write_bytes(path, data, overwrite)


def _check_fps(fps: float) -> None:
    if not fps > 0:
        raise ValueError(f"fps={fps} must be positive (frames per second of the animation clip)")
