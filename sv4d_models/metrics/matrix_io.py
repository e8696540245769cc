"""Reading image matrices ``[F, V, H, W, 3]`` (float in [0, 1]) for evaluation, from what ``sv4d run`` writes or what a
dataset provides:

    RUN/videos/v000.mp4 ...         a ``sv4d run`` folder: one video per view (v000 = the input view)
    DIR/<view>.mp4 | .gif | .webm   a folder of per-view videos (views in name order)
    DIR/f000_v00.png ...            one image per cell (``images/`` of a 4D export uses these names)
    DIR/<object>/...                a dataset: one such matrix per sub-folder; pred and gt matched by folder name

RGBA frames are composited over white (SV4D's background).
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

VIDEO_SUFFIXES = (".mp4", ".gif", ".webm", ".mov", ".mkv", ".avi")
CELL = re.compile(r"^f(\d+)_v(\d+)\.(png|jpg|jpeg)$", re.IGNORECASE)


def _over_white(frames: torch.Tensor) -> torch.Tensor:
    if frames.shape[-1] == 4:
        a = frames[..., 3:]
        return frames[..., :3] * a + (1 - a)
    return frames[..., :3]


def view_videos(folder: Path) -> list[Path]:
    """The per-view videos of a run folder (``videos/``) or a folder of videos, in name order."""
    folder = folder / "videos" if (folder / "videos").is_dir() else folder
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def cell_images(folder: Path) -> dict[tuple[int, int], Path]:
    folder = folder / "images" if (folder / "images").is_dir() else folder
    return {(int(m[1]), int(m[2])): p for p in folder.iterdir() if (m := CELL.match(p.name))}


def is_matrix(folder: Path) -> bool:
    return folder.is_dir() and bool(view_videos(folder) or cell_images(folder))


def _from_videos(paths: list[Path]) -> torch.Tensor:
    from ..frames_io import load_frames

    views = [_over_white(load_frames(str(p))) for p in paths]
    shapes = {p.name: tuple(v.shape) for p, v in zip(paths, views)}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"the per-view videos of {paths[0].parent} differ in frames or size: {shapes}; every view "
                         "needs the same frame count and resolution")
    return torch.stack(views, dim=1)  # [F, V, H, W, 3]


def _from_cells(cells: dict[tuple[int, int], Path], folder: Path) -> torch.Tensor:
    from ..frames_io import load_frames

    n_f, n_v = max(f for f, _ in cells) + 1, max(v for _, v in cells) + 1
    missing = [f"f{f:03d}_v{v:02d}" for f in range(n_f) for v in range(n_v) if (f, v) not in cells]
    if missing:
        raise ValueError(f"{folder} lacks {len(missing)} of its {n_f} x {n_v} cells ({', '.join(missing[:4])}...); "
                         "every frame needs every view")
    images = [_over_white(load_frames(str(cells[(f, v)]))) for f in range(n_f) for v in range(n_v)]
    if len({tuple(i.shape) for i in images}) != 1:
        raise ValueError(f"the images of {folder} differ in size; every cell needs the same resolution")
    return torch.cat(images).reshape(n_f, n_v, *images[0].shape[1:3], 3)


def read_matrix(folder: str | Path) -> tuple[torch.Tensor, list[str]]:
    """(matrix ``[F, V, H, W, 3]`` in [0, 1], view names) of one matrix folder; ValueError naming what is wrong."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder (expected a sv4d run folder, a folder of per-view "
                                 "videos or of f000_v00.png images)")
    videos = view_videos(folder)
    if videos:
        return _from_videos(videos), [p.stem for p in videos]
    cells = cell_images(folder)
    if cells:
        m = _from_cells(cells, folder)
        return m, [f"v{v:02d}" for v in range(m.shape[1])]
    raise ValueError(f"{folder} holds no image matrix: no videos/ folder, no per-view videos "
                     f"({', '.join(VIDEO_SUFFIXES)}) and no f000_v00.png images")


def find_pairs(pred: str | Path, gt: str | Path) -> list[tuple[str, Path, Path]]:
    """``[(object name, pred folder, gt folder)]``: one pair when both are matrices, else one per gt sub-folder."""
    pred, gt = Path(pred), Path(gt)
    for label, p in (("--pred", pred), ("--gt", gt)):
        if not p.is_dir():
            raise NotADirectoryError(f"{label} {p} is not a folder")
    if is_matrix(gt) or is_matrix(pred):
        return [(gt.name, pred, gt)]
    objects = sorted(p.name for p in gt.iterdir() if is_matrix(p))
    if not objects:
        raise ValueError(f"--gt {gt} holds no image matrix and no sub-folders with one (see sv4d eval --help for "
                         "the layouts)")
    absent = [o for o in objects if not is_matrix(pred / o)]
    if absent:
        raise ValueError(f"--pred {pred} lacks the objects {absent[:5]} that --gt has ({len(absent)} of "
                         f"{len(objects)}); every ground-truth object needs a generated matrix of the same name")
    return [(o, pred / o, gt / o) for o in objects]


def check_pair(name: str, pred: torch.Tensor, gt: torch.Tensor, pred_views: list[str], gt_views: list[str]) -> None:
    """Same frames, views and size; ValueError naming both shapes (and the missing views) otherwise."""
    if pred.shape[1] != gt.shape[1]:
        short, long_ = (pred_views, gt_views) if pred.shape[1] < gt.shape[1] else (gt_views, pred_views)
        side = "pred" if pred.shape[1] < gt.shape[1] else "gt"
        raise ValueError(f"{name}: {side} lacks views {[v for v in long_ if v not in short][:8] or long_[len(short):]}"
                         f" ({pred.shape[1]} generated views vs {gt.shape[1]} ground-truth views); both need the "
                         "same views in the same order")
    if pred.shape != gt.shape:
        raise ValueError(f"{name}: generated matrix [F, V, H, W, 3] = {list(pred.shape)} but ground truth "
                         f"{list(gt.shape)}; render the ground truth with the same frame count and resolution")


__all__ = ["read_matrix", "find_pairs", "check_pair", "is_matrix", "view_videos", "cell_images", "VIDEO_SUFFIXES"]
