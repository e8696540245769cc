"""``MultiViewResult``: the (frame x view) image matrix of a run, read lazily from its pass store."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..camera import Cameras
from ..files import prepare_folder
from ..images import to_uint8
from ..sampling.plan import Plan
from .stages import assemble_matrix, to_unit_hwc
from .store import PassStore


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

    def __init__(self, store: PassStore, plan: Plan, cameras: Cameras, times: torch.Tensor, image_size: int):
        self.store, self.plan, self.sources = store, plan, plan.final_sources()
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
        if v == 0:
            return to_unit_hwc(self.store.frames[[t]][0])
        index = self.sources[(t, v)]
        rec = self.store.load_pass(index)
        pos = [tuple(c) for c in rec["writes"]].index((t, v))
        return to_unit_hwc(rec["cells"][pos])

    def view(self, v: int) -> torch.Tensor:
        """All frames of column ``v``: ``[F, S, S, 3]`` float32 in [0, 1]."""
        return torch.stack([self.cell(t, v) for t in range(self.n_frames)])

    def frame(self, t: int) -> torch.Tensor:
        """All views of frame ``t``: ``[V + 1, S, S, 3]`` float32 in [0, 1]."""
        return torch.stack([self.cell(t, v) for v in range(self.n_views)])

    @property
    def images(self) -> torch.Tensor:
        """The whole matrix ``[F, V + 1, S, S, 3]`` float32 in [0, 1] (allocates it: F (V+1) S^2 12 bytes)."""
        return assemble_matrix(self.plan, self.store.frames, self.store.outputs()).images

    def view_uint8(self, v: int) -> np.ndarray:
        """Column ``v`` as uint8 ``[F, S, S, 3]`` (for video writers), one frame at a time."""
        out = np.empty((self.n_frames, self.image_size, self.image_size, 3), dtype=np.uint8)
        for t in range(self.n_frames):
            out[t] = to_uint8(self.cell(t, v)).numpy()
        return out

    def write_videos(self, folder: str | os.PathLike, fps: float = 10.0, prefix: str = "",
                     overwrite: bool = False) -> list[Path]:
        """One mp4 per column: ``{prefix}v000.mp4`` (input) .. ``v00V.mp4`` (atomic, no clobber)."""
        from ..export.video import write_mp4

        names = [f"{prefix}v{v:03d}.mp4" for v in range(self.n_views)]
        folder = prepare_folder(folder, names, overwrite)
        return [write_mp4(self.view_uint8(v), folder / n, fps=fps, overwrite=overwrite) for v, n in enumerate(names)]


__all__ = ["MultiViewResult"]
