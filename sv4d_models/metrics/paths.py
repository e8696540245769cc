"""The four ways SV4D (Xie et al. 2024, section 4 and Fig. 7) reads an image matrix as videos for FVD.

The matrix is ``[F, V, H, W, 3]``: F frames (time) x V views (camera orbit). Each path is a list of videos, each
video a list of ``(frame, view)`` cells in playing order. With F = 3 and V = 4 (cell ``fv``):

    FVD-F     one video per view, over time:     (00 10 20) (01 11 21) (02 12 22) (03 13 23)      V videos of F
    FVD-V     one video per frame, over views:   (00 01 02 03) (10 11 12 13) (20 21 22 23)         F videos of V
    FVD-Diag  one video per diagonal offset k:   (00 11 22) (01 12 23) (02 13 20) (03 10 21)       V videos of F
              frame t shows view (t + k) mod V (the orbit is closed, so diagonals wrap around the views)
    FV4D      one video of every cell, a bidirectional raster scan (boustrophedon) over the matrix:
              (00 01 02 03 13 12 11 10 20 21 22 23)                                                1 video of F*V

Reading of the paper (not confirmed against code: none was released): FVD-F measures temporal consistency per
view, FVD-V multi-view consistency per frame, FVD-Diag the joint change of view and time along the matrix
diagonals, FV4D the whole 4D sequence in one scan that alternates the view direction each frame so that
consecutive images are always neighbours (no jump from the last view back to the first). Where a paper reading
differs (e.g. non-wrapping diagonals of length min(F, V)), only these index functions change.
"""
from __future__ import annotations

import torch

Cell = tuple[int, int]  # (frame, view)


def frame_path(n_frames: int, n_views: int) -> list[list[Cell]]:
    """FVD-F: for each view, the video over frames."""
    return [[(f, v) for f in range(n_frames)] for v in range(n_views)]


def view_path(n_frames: int, n_views: int) -> list[list[Cell]]:
    """FVD-V: for each frame, the video over views."""
    return [[(f, v) for v in range(n_views)] for f in range(n_frames)]


def diagonal_path(n_frames: int, n_views: int) -> list[list[Cell]]:
    """FVD-Diag: for each offset k, frame t at view (t + k) mod V."""
    return [[(f, (f + k) % n_views) for f in range(n_frames)] for k in range(n_views)]


def raster_4d_path(n_frames: int, n_views: int) -> list[list[Cell]]:
    """FV4D: every cell in one bidirectional raster scan (even frames views 0..V-1, odd frames V-1..0)."""
    cells: list[Cell] = []
    for f in range(n_frames):
        views = range(n_views) if f % 2 == 0 else range(n_views - 1, -1, -1)
        cells.extend((f, v) for v in views)
    return [cells]


PATHS = {"fvd_f": frame_path, "fvd_v": view_path, "fvd_diag": diagonal_path, "fv4d": raster_4d_path}
PATH_LABELS = {"fvd_f": "FVD-F", "fvd_v": "FVD-V", "fvd_diag": "FVD-Diag", "fv4d": "FV4D"}


def path_cells(name: str, n_frames: int, n_views: int) -> list[list[Cell]]:
    """The videos of path ``name`` (one of PATHS) as lists of (frame, view) cells."""
    if name not in PATHS:
        raise ValueError(f"unknown FVD path {name!r}; use one of {sorted(PATHS)}")
    if n_frames < 1 or n_views < 1:
        raise ValueError(f"an image matrix needs at least 1 frame and 1 view, got {n_frames} x {n_views}")
    return PATHS[name](n_frames, n_views)


def path_videos(matrix: torch.Tensor, name: str) -> torch.Tensor:
    """``matrix [F, V, H, W, C]`` -> the videos of path ``name``: ``[N, T, H, W, C]`` (all videos of a path have the
    same length T)."""
    if matrix.ndim != 5:
        raise ValueError(f"expected an image matrix [F, V, H, W, C], got shape {tuple(matrix.shape)}")
    cells = torch.tensor(path_cells(name, matrix.shape[0], matrix.shape[1]))  # [N, T, 2]
    return matrix[cells[..., 0], cells[..., 1]]


__all__ = ["frame_path", "view_path", "diagonal_path", "raster_4d_path", "PATHS", "PATH_LABELS", "path_cells",
           "path_videos"]
