"""Fréchet distance between two Gaussians fitted to feature sets (FID / FVD, Heusel et al. 2017; Unterthiner et al.
2018), in float64 with a matrix square root that needs no ``scipy.linalg.sqrtm``.

    d² = |mu1 - mu2|² + tr(S1) + tr(S2) - 2 tr((S1 S2)^½)

``tr((S1 S2)^½)`` is computed as ``tr((A S2 A)^½)`` with ``A = S1^½``: ``S1 S2`` is similar to ``A S2 A``
(``A⁻¹ (A S2 A) A = S1 S2`` when S1 is invertible, and by continuity otherwise), and ``A S2 A`` is symmetric positive
semi-definite, so its square root's trace is the sum of the square roots of its eigenvalues. Both steps use
``numpy.linalg.eigh`` on symmetric matrices (tiny negative eigenvalues from round-off clipped to 0): no complex
parts, no ``disp`` argument (removed from SciPy's ``sqrtm``), no failure on the rank-deficient covariances that
FVD's few videos per object give (scipy's ``sqrtm(S1 @ S2)`` warns and may return complex values there).
"""
from __future__ import annotations

import numpy as np


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """``features [N, D]`` -> (mean ``[D]``, unbiased covariance ``[D, D]``) in float64; N >= 2."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be [N, D], got shape {x.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"a covariance needs at least 2 feature vectors, got {x.shape[0]}; score more videos")
    if not np.isfinite(x).all():
        raise ValueError("features hold NaN or infinite values (a broken feature network or input)")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def _sym_sqrt(m: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (eigenvalues below 0 from round-off -> 0)."""
    w, v = np.linalg.eigh((m + m.T) / 2.0)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(s1: np.ndarray, s2: np.ndarray) -> float:
    """``tr((S1 S2)^½)`` for symmetric PSD ``S1, S2`` (float64)."""
    a = _sym_sqrt(np.asarray(s1, dtype=np.float64))
    inner = a @ np.asarray(s2, dtype=np.float64) @ a
    w = np.linalg.eigvalsh((inner + inner.T) / 2.0)
    return float(np.sqrt(np.clip(w, 0.0, None)).sum())


def frechet_distance(mu1, s1, mu2, s2) -> float:
    """Fréchet distance of N(mu1, S1) and N(mu2, S2) (float64; >= 0 up to round-off, clamped at 0)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(s1, np.float64), np.asarray(s2, np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != mu1.shape * 2:
        raise ValueError(f"shapes differ: mu {mu1.shape} vs {mu2.shape}, sigma {s1.shape} vs {s2.shape}")
    d = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt_product(s1, s2))
    return max(d, 0.0)


def frechet_distance_of_features(f1, f2) -> float:
    """Fréchet distance of the Gaussians fitted to two feature sets ``[N1, D]`` and ``[N2, D]``."""
    return frechet_distance(*gaussian_stats(f1), *gaussian_stats(f2))


__all__ = ["gaussian_stats", "trace_sqrt_product", "frechet_distance", "frechet_distance_of_features"]
