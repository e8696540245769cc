"""Denoiser wrappers: v-prediction network + EDM noise conditioning, and CFG batching as sgm does it.

``D(x, sigma) = F(c_in x || concat, c_noise, cond) * c_out + x * c_skip`` with ``VScalingWithEDMcNoise``.
The network is any callable with the official UNet signature
``unet(x, timesteps, context, y, cond_view=None, cond_motion=None, num_video_frames=N, image_only_indicator=...)``.
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch

CFG_KEYS = ("vector", "crossattn", "concat", "cond_view", "cond_motion")  # keys stacked as cat(uc, c)


def append_dims(x: torch.Tensor, target_dims: int) -> torch.Tensor:
    """Append trailing singleton dims so ``x`` broadcasts against a ``target_dims``-d tensor."""
    dims_to_append = target_dims - x.ndim
    if dims_to_append < 0:
        raise ValueError(f"input has {x.ndim} dims but target_dims is {target_dims}, which is less")
    return x[(...,) + (None,) * dims_to_append]


class VScalingWithEDMcNoise:
    """v-prediction scalings with the EDM noise input (sgm ``VScalingWithEDMcNoise``)."""

    def __call__(self, sigma: torch.Tensor):
        c_skip = 1.0 / (sigma**2 + 1.0)
        c_out = -sigma / (sigma**2 + 1.0) ** 0.5
        c_in = 1.0 / (sigma**2 + 1.0) ** 0.5
        c_noise = 0.25 * sigma.log()
        return c_skip, c_out, c_in, c_noise


def stack_cfg_cond(cond: Mapping[str, torch.Tensor], uncond: Mapping[str, torch.Tensor]) -> dict:
    """The official CFG cond dict: ``cat(uc, c)`` along dim 0 for every key of ``CFG_KEYS``.

    A ``crossattn`` given as ``[T, D]`` is treated as ``[1, T, D]`` (one batch element).
    """
    out = {}
    for key, value in cond.items():
        if key not in uncond:
            raise ValueError(f"cond has key {key!r} but uncond does not; build both with the same builder")
        if key in CFG_KEYS:
            u, c = uncond[key], value
            if key == "crossattn" and c.ndim == 2:
                u, c = u[None], c[None]
            out[key] = torch.cat((u, c), 0)
        else:
            out[key] = value
    return out


class Denoiser:
    """``D(x, sigma, cond)`` for a (possibly CFG-stacked) batch.

    Args:
        unet: callable with the official UNet signature.
        num_video_frames: latents per sample (T*V for SV4D, F for SV3D), passed as ``num_video_frames``.
        image_only_indicator: value of the ``[B, num_video_frames]`` indicator (1.0 for SV4D passes with a
            reference, 0.0 for SV3D and SV4D2 first windows; the SV4D UNet ignores the values).
        scaling: the parameterisation (``VScalingWithEDMcNoise``).
    """

    def __init__(self, unet: Callable, num_video_frames: int, image_only_indicator: float = 0.0, scaling=None):
        self.unet = unet
        self.num_video_frames = int(num_video_frames)
        self.image_only_indicator = float(image_only_indicator)
        self.scaling = scaling if scaling is not None else VScalingWithEDMcNoise()

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """x ``[B, 4, h, w]``, sigma ``[B]`` (or scalar), cond with ``concat [B, 4, h, w]`` -> ``[B, 4, h, w]``.

        Scalings are computed in at least float32 (sigma^2 = 490000 overflows float16); the result is float32
        for float16/bfloat16 latents. The network's own dtype handling (autocast, casts) is the UNet's business.
        """
        x = x.to(torch.promote_types(x.dtype, torch.float32))
        sigma = torch.as_tensor(sigma).to(device=x.device, dtype=x.dtype)
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        c_skip, c_out, c_in, c_noise = self.scaling(append_dims(sigma, x.ndim))
        net_in = x * c_in
        if "concat" in cond:
            net_in = torch.cat((net_in, cond["concat"].to(net_in)), dim=1)
        if x.shape[0] % self.num_video_frames:
            raise ValueError(f"batch {x.shape[0]} is not a multiple of num_video_frames={self.num_video_frames}")
        indicator = x.new_zeros(x.shape[0] // self.num_video_frames, self.num_video_frames)
        kwargs = dict(context=cond.get("crossattn"), y=cond.get("vector"),
                      num_video_frames=self.num_video_frames, image_only_indicator=indicator + self.image_only_indicator)
        if "cond_view" in cond:
            kwargs.update(cond_view=cond["cond_view"], cond_motion=cond.get("cond_motion"))
        out = self.unet(net_in, timesteps=c_noise.reshape(sigma.shape), **kwargs)
        return out * c_out + x * c_skip


class CFGDenoiser:
    """Guided denoiser ``model(x, sigma) -> denoised`` for the samplers (uc first, then c; sgm order).

    Args:
        denoiser: a ``Denoiser``.
        cond, uncond: conditioning dicts of one pass direction.
        guider: callable ``guider(denoised_pair [2N,...], sigma) -> [N,...]``; ``None`` runs without CFG
            (cond only, one network batch).
    """

    def __init__(self, denoiser: Denoiser, cond: Mapping, uncond: Mapping | None, guider: Callable | None):
        self.denoiser, self.guider = denoiser, guider
        if guider is None:
            self.cond = dict(cond)
        else:
            if uncond is None:
                raise ValueError("a guider needs uncond; pass uncond or guider=None")
            self.cond = stack_cfg_cond(cond, uncond)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.promote_types(x.dtype, torch.float32))
        sigma = torch.as_tensor(sigma).to(device=x.device, dtype=x.dtype)
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        if self.guider is None:
            return self.denoiser(x, sigma, self.cond)
        pair = self.denoiser(torch.cat([x] * 2), torch.cat([sigma] * 2), self.cond)
        return self.guider(pair, sigma)
