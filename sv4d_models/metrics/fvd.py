"""FVD along the SV4D matrix paths: I3D features of every path video of every object, then one Fréchet distance per
path between the generated and the ground-truth feature sets (pooled over all objects, as a dataset-level FVD).

Videos per object: FVD-F V (one per view), FVD-V F (one per frame), FVD-Diag V, FV4D 1; a path needs at least 2
videos per side in total, so FV4D needs at least 2 objects (it is reported as null with the reason otherwise).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from .frechet import frechet_distance_of_features
from .i3d import INPUT_SIZE, i3d_input
from .paths import PATHS, path_cells, path_videos


@torch.no_grad()
def fvd_features(i3d: Callable, videos: torch.Tensor, batch: int = 4, size: int = INPUT_SIZE,
                 device: str | torch.device = "cpu") -> np.ndarray:
    """``videos [N, T, H, W, 3]`` in [0, 1] -> I3D features ``[N, D]`` float64, ``batch`` videos at a time."""
    out = [i3d(i3d_input(part, size).to(device)).double().cpu() for part in videos.split(batch)]
    return torch.cat(out).numpy()


def path_features(i3d: Callable, matrices: Sequence[torch.Tensor], name: str, tick: Callable[[], None] = lambda: None,
                  **kw) -> np.ndarray:
    """Features of path ``name``'s videos of every matrix ``[F, V, H, W, 3]``, stacked ``[sum N, D]``."""
    feats = []
    for m in matrices:
        feats.append(fvd_features(i3d, path_videos(m, name), **kw))
        tick()
    return np.concatenate(feats)


def fvd_scores(i3d: Callable, pred: Sequence[torch.Tensor], gt: Sequence[torch.Tensor],
               names: Sequence[str] = tuple(PATHS), tick: Callable[[], None] = lambda: None, **kw) -> dict:
    """``{path: {"value": FVD or None, "videos": n per side, "frames": video length, "note": why None}}``."""
    out = {}
    for name in names:
        a, b = path_features(i3d, pred, name, tick, **kw), path_features(i3d, gt, name, tick, **kw)
        length = len(path_cells(name, pred[0].shape[0], pred[0].shape[1])[0])
        entry = {"value": None, "videos": int(a.shape[0]), "frames": int(length)}
        if a.shape[0] < 2:
            entry["note"] = f"{a.shape[0]} video per side: a covariance needs at least 2 (score at least 2 objects)"
        else:
            entry["value"] = frechet_distance_of_features(a, b)
        out[name] = entry
    return out


__all__ = ["fvd_features", "path_features", "fvd_scores"]
