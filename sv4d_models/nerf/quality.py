"""How good a 4D fit is: PSNR against the images it was (or was not) fitted to, and foreground coverage against the
masks (a field that renders (nearly) empty frames is a failed fit, not a result)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..camera import Cameras
from ..images import psnr


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """``[N, H, W, C]`` -> ``[N, size, size, C]`` (area average; identity at the same size)."""
    if x.shape[1] == size:
        return x.float()
    return F.interpolate(x.float().permute(0, 3, 1, 2), size=(size, size), mode="area").permute(0, 2, 3, 1)


@dataclass
class FrameQuality:
    """Quality of one frame (all its views): PSNR, foreground coverage of the renders and of the masks."""

    frame: int
    psnr: float
    coverage: float  # fraction of pixels with rendered opacity > 0.5
    mask_coverage: float  # fraction of pixels with mask > 0.5

    @property
    def coverage_ratio(self) -> float:
        return self.coverage / self.mask_coverage if self.mask_coverage > 0 else float("inf")


@torch.no_grad()
def evaluate(fit, images: torch.Tensor, masks: torch.Tensor, cameras: Cameras, times, size: int = 128,
             callback=None) -> list[FrameQuality]:
    """Render every (frame, view) of ``images [F, V, H, W, 3]`` at ``min(H, size)`` px and compare per frame."""
    n_f, n_v, h = images.shape[:3]
    size = min(size, h)
    out = []
    for f in range(n_f):
        r = fit.render(cameras, float(times[f]), size, size, normals=None)
        gt = _resize(images[f], size)
        m = _resize(masks[f][..., None], size)[..., 0]
        out.append(FrameQuality(f, psnr(r["rgb"].clamp(0, 1).cpu(), gt), float((r["opacity"] > 0.5).float().mean()),
                                float((m > 0.5).float().mean())))
        if callback is not None:
            callback(f + 1, n_f)
    return out


def summarise(frames: list[FrameQuality]) -> dict:
    """Mean PSNR and the worst coverage ratio over frames, plus the per-frame rows."""
    if not frames:
        return {}
    return {"psnr": sum(q.psnr for q in frames) / len(frames),
            "min_coverage_ratio": min(q.coverage_ratio for q in frames),
            "frames": [{"frame": q.frame, "psnr": q.psnr, "coverage": q.coverage, "mask_coverage": q.mask_coverage}
                       for q in frames]}


__all__ = ["FrameQuality", "evaluate", "summarise"]
