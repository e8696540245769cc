"""Evaluation as SV4D (Xie et al. 2024, section 4) measures it: per-image PSNR / SSIM / LPIPS / CLIP-S against ground
truth, and FVD read along the four paths of the image matrix (Fig. 7: FVD-F, FVD-V, FVD-Diag, FV4D).

Names are imported lazily (torch / lpips / open_clip load only when a metric is used).
"""
from __future__ import annotations

from ..lazy import lazy_getattr

_EXPORTS: dict[str, str] = {
    "psnr": ".image", "ssim": ".image", "psnr_per_image": ".image",
    "build_lpips": ".lpips", "load_lpips": ".lpips", "LPIPSDistance": ".lpips",
    "clip_score": ".clip_score", "load_clip_embedder": ".clip_score",
    "InceptionI3d": ".i3d", "load_i3d": ".i3d", "i3d_input": ".i3d",
    "frechet_distance": ".frechet", "frechet_distance_of_features": ".frechet", "gaussian_stats": ".frechet",
    "path_cells": ".paths", "path_videos": ".paths", "PATHS": ".paths",
    "fvd_features": ".fvd", "fvd_scores": ".fvd",
    "EvalSettings": ".evaluate", "evaluate_pairs": ".evaluate", "run_evaluation": ".evaluate",
    "read_matrix": ".matrix_io", "find_pairs": ".matrix_io",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
