"""Where ``SV4DPipeline`` keeps finished passes: CPU RAM or a work dir (one file per pass), and the result view.

Work dir layout (every file written atomically: temp file in the same folder + ``os.replace``)::

    manifest.json     config, plan, input fingerprint, finished passes, per-pass seed overrides
    inputs.pt         preprocessed input frames [F, 3, S, S] float32 in [-1, 1]
    clip.pt           CLIP embedding of every input frame [F, D]
    pass_sv3d.pt      reference row of frame 0 (SV3D stage or user views): cells [V, 3, S, S] (+ latents)
    pass_007.pt       pass 7: latents [T, V, 4, h, w], decoded cells [n_writes, 3, S, S] in [-1, 1],
                      writes, seed, generator state after the pass

Files are read back memory-mapped (``torch.load(mmap=True)``), so only the frames / cells a pass needs are
paged in: peak RAM does not grow with the video length. The memory store (``offload="cpu"`` without a
work dir) keeps every pass in CPU RAM instead: faster, but RAM grows with the number of passes.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from .camera import Cameras
from .sampling.plan import Plan

REFERENCE = -1  # pass index of the given reference row (SV3D stage / user views)
_OWN_FILES = ("manifest.json", "inputs.pt", "clip.pt")


def _pass_name(index: int) -> str:
    return "pass_sv3d.pt" if index == REFERENCE else f"pass_{index:03d}.pt"


def atomic_torch_save(obj, path: Path) -> None:
    """``torch.save`` to a temp file beside ``path``, then ``os.replace`` (readers never see partial files)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_json(obj, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class PassStore:
    """Per-pass records in RAM (``folder=None``) or in a folder, read back lazily.

    Args:
        folder: work dir (created if missing) or None for CPU RAM.
        temp: keep this ``TemporaryDirectory`` alive as long as the store (deleted with it).
    """

    def __init__(self, folder: str | os.PathLike | None, temp: tempfile.TemporaryDirectory | None = None):
        self.folder = None if folder is None else Path(folder)
        self._temp = temp
        self._mem: dict[str, object] = {}
        self._cache: dict[str, dict] = {}
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)

    @classmethod
    def open(cls, work_dir: str | os.PathLike | None, offload: str) -> "PassStore":
        if work_dir is not None:
            return cls(work_dir)
        if offload == "workdir":
            temp = tempfile.TemporaryDirectory(prefix="sv4d_pipeline_")
            return cls(temp.name, temp)
        return cls(None)

    @property
    def persistent(self) -> bool:
        """True for a caller-owned work dir (resumable)."""
        return self.folder is not None and self._temp is None

    # ---- generic records -------------------------------------------------------------------------
    def _put(self, name: str, obj) -> None:
        self._cache.pop(name, None)
        if self.folder is None:
            self._mem[name] = obj
        else:
            atomic_torch_save(obj, self.folder / name)

    def _get(self, name: str):
        if self.folder is None:
            if name not in self._mem:
                raise RuntimeError(f"{name} has not been computed yet")
            return self._mem[name]
        if name not in self._cache:
            path = self.folder / name
            if not path.is_file():
                raise RuntimeError(f"{path} is missing; the work dir is incomplete (rerun with overwrite=True)")
            if len(self._cache) >= 4:  # a few memory-mapped files stay open
                self._cache.pop(next(iter(self._cache)))
            self._cache[name] = torch.load(path, mmap=True, weights_only=True, map_location="cpu")
        return self._cache[name]

    def _has(self, name: str) -> bool:
        return name in self._mem if self.folder is None else (self.folder / name).is_file()

    # ---- inputs ----------------------------------------------------------------------------------
    def save_inputs(self, frames: torch.Tensor, masks: torch.Tensor | None = None) -> None:
        """Keep the model input ``[F, 3, S, S]`` (a private copy in RAM; the caller may reuse its tensor) and the
        preprocessing masks ``[F, S, S]`` (None for tensor input)."""
        frames = frames.detach().clone() if self.folder is None else frames.contiguous()
        self._put("inputs.pt", {"frames": frames, "masks": masks})

    def input_masks(self) -> torch.Tensor | None:
        masks = self._get("inputs.pt")["masks"]
        return None if masks is None else masks.clone()

    def has_inputs(self) -> bool:
        return self._has("inputs.pt")

    def input_frames(self, indices: Iterable[int]) -> torch.Tensor:
        """``[k, 3, S, S]`` float32 copies of the requested input frames."""
        frames = self._get("inputs.pt")["frames"]
        return torch.stack([frames[i].clone() for i in indices])

    def n_inputs(self) -> int:
        return int(self._get("inputs.pt")["frames"].shape[0])

    def save_clip(self, embeds: torch.Tensor) -> None:
        self._put("clip.pt", {"embeds": embeds.contiguous()})

    def has_clip(self) -> bool:
        return self._has("clip.pt")

    def clip(self, indices: Iterable[int]) -> torch.Tensor:
        embeds = self._get("clip.pt")["embeds"]
        return torch.stack([embeds[i].clone() for i in indices])

    # ---- passes ----------------------------------------------------------------------------------
    def save_pass(self, index: int, record: dict) -> None:
        record = dict(record, writes=[list(c) for c in record["writes"]])
        self._put(_pass_name(index), record)

    def has_pass(self, index: int) -> bool:
        return self._has(_pass_name(index))

    def load_pass(self, index: int) -> dict:
        return self._get(_pass_name(index))

    def cell(self, index: int, cell: tuple[int, int]) -> torch.Tensor:
        """Decoded image ``[3, S, S]`` in [-1, 1] that pass ``index`` wrote for ``(t, v)``."""
        rec = self._get(_pass_name(index))
        pos = [tuple(c) for c in rec["writes"]].index(tuple(cell))
        return rec["cells"][pos].clone()

    def delete_pass(self, index: int) -> None:
        name = _pass_name(index)
        self._cache.pop(name, None)
        if self.folder is None:
            self._mem.pop(name, None)
        elif (self.folder / name).exists():
            (self.folder / name).unlink()

    # ---- manifest --------------------------------------------------------------------------------
    def read_manifest(self) -> dict | None:
        if self.folder is None or not (self.folder / "manifest.json").is_file():
            return None
        return json.loads((self.folder / "manifest.json").read_text(encoding="utf-8"))

    def write_manifest(self, manifest: dict) -> None:
        if self.folder is not None:
            atomic_write_json(manifest, self.folder / "manifest.json")

    def foreign_files(self) -> list[str]:
        """Our file names already present in a folder that has no manifest (left by something else)."""
        if self.folder is None:
            return []
        return sorted(p.name for p in self.folder.iterdir() if p.name in _OWN_FILES or p.name.startswith("pass_"))

    def clear(self) -> None:
        """Delete every file this store owns (``overwrite=True``)."""
        self._cache.clear()
        self._mem.clear()
        if self.folder is not None:
            for name in self.foreign_files():
                (self.folder / name).unlink()


class MultiViewResult:
    """The (frame x view) image matrix of a run, assembled lazily from the pass store.

    Attributes:
        n_frames, n_views (V + 1 columns, column 0 = the preprocessed input), image_size, model_kind.
        cameras: ``Cameras`` of the V + 1 columns (azimuth relative to the input view, elevation).
        times: ``[F]`` float64 ``f / (F - 1)``.
        plan: the ``Plan`` that was run; ``sources[(t, v)]``: pass index that produced each generated cell
            (``-1`` = the SV3D / user reference row).
        work_dir: the work dir (None for RAM; a temporary folder lives as long as this object).
    """

    def __init__(self, store: PassStore, plan: Plan, sources: dict[tuple[int, int], int], cameras: Cameras,
                 times: torch.Tensor, image_size: int):
        self.store, self.plan, self.sources = store, plan, dict(sources)
        self.cameras, self.times, self.image_size = cameras, times, int(image_size)
        self.model_kind = plan.model_kind
        self.n_frames, self.n_views = plan.n_frames, plan.n_views + 1
        self.work_dir = store.folder

    @property
    def plan_json(self) -> dict:
        return self.plan.to_json()

    def input_masks(self) -> torch.Tensor | None:
        """Foreground masks ``[F, S, S]`` in [0, 1] of the preprocessed input (file inputs only, else None)."""
        return self.store.input_masks()

    def source(self, t: int, v: int) -> int | None:
        """Pass index that produced cell (t, v); None for column 0 (the input)."""
        return None if v == 0 else self.sources[(t, v)]

    def cell(self, t: int, v: int) -> torch.Tensor:
        """``[S, S, 3]`` float32 in [0, 1]."""
        if not (0 <= t < self.n_frames and 0 <= v < self.n_views):
            raise ValueError(f"cell ({t}, {v}) is outside the {self.n_frames} x {self.n_views} matrix")
        img = self.store.input_frames([t])[0] if v == 0 else self.store.cell(self.sources[(t, v)], (t, v))
        return ((img + 1.0) / 2.0).clamp(0.0, 1.0).permute(1, 2, 0).contiguous()

    def view(self, v: int) -> torch.Tensor:
        """All frames of column ``v``: ``[F, S, S, 3]`` float32 in [0, 1]."""
        return torch.stack([self.cell(t, v) for t in range(self.n_frames)])

    def frame(self, t: int) -> torch.Tensor:
        """All views of frame ``t``: ``[V + 1, S, S, 3]`` float32 in [0, 1]."""
        return torch.stack([self.cell(t, v) for v in range(self.n_views)])

    @property
    def images(self) -> torch.Tensor:
        """The whole matrix ``[F, V + 1, S, S, 3]`` float32 in [0, 1] (allocates it: F (V+1) S^2 12 bytes)."""
        out = torch.empty(self.n_frames, self.n_views, self.image_size, self.image_size, 3)
        for t in range(self.n_frames):
            for v in range(self.n_views):
                out[t, v] = self.cell(t, v)
        return out

    def view_uint8(self, v: int) -> np.ndarray:
        """Column ``v`` as uint8 ``[F, S, S, 3]`` (for video writers), one frame at a time."""
        out = np.empty((self.n_frames, self.image_size, self.image_size, 3), dtype=np.uint8)
        for t in range(self.n_frames):
            out[t] = (self.cell(t, v) * 255.0 + 0.5).clamp(0, 255).to(torch.uint8).numpy()
        return out

    def write_videos(self, folder: str | os.PathLike, fps: float = 10.0, prefix: str = "",
                     overwrite: bool = False) -> list[Path]:
        """One mp4 per column: ``{prefix}v000.mp4`` (input) .. ``v00V.mp4`` (atomic, no clobber)."""
        from .export._io import prepare_folder
        from .export.video import write_mp4

        names = [f"{prefix}v{v:03d}.mp4" for v in range(self.n_views)]
        folder = prepare_folder(folder, names, overwrite)
        return [write_mp4(self.view_uint8(v), folder / n, fps=fps, overwrite=overwrite) for v, n in enumerate(names)]
