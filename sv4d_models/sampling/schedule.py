"""Noise-level schedules: plain 1-D tensors ending in 0 (k-diffusion convention)."""
from __future__ import annotations

import torch

EDM_SIGMA_MIN = 0.002  # official SV3D / SV4D / SV4D 2.0 sampler options
EDM_SIGMA_MAX = 700.0  # the 4D scripts override the yaml's 500 with 700
EDM_RHO = 7.0


def append_zero(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, x.new_zeros([1])])


def get_sigmas_edm(
    n: int,
    sigma_min: float = EDM_SIGMA_MIN,
    sigma_max: float = EDM_SIGMA_MAX,
    rho: float = EDM_RHO,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """EDM schedule (Karras et al. 2022, eq. 5) as sgm's ``EDMDiscretization``: ``[n + 1]`` float32, last = 0.

    ``sigma_i = (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho``, i = 0..n-1.
    """
    if n < 1:
        raise ValueError(f"n={n} steps must be >= 1")
    if not 0 < sigma_min <= sigma_max:
        raise ValueError(f"need 0 < sigma_min <= sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
    ramp = torch.linspace(0, 1, n, device=device)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return append_zero(sigmas)
