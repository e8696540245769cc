"""Run one planned pass: noise -> guided Euler sampling (alternating directions for SV4D dense passes)."""
from __future__ import annotations

from typing import Callable, Mapping

import torch

from .denoiser import CFGDenoiser, Denoiser
from .plan import PlannedPass
from .samplers import SamplingCallback, initial_latent, sample_dense_alternating, sample_euler_edm


def pass_denoisers(unet: Callable, planned: PlannedPass, conds: Mapping[str, tuple[dict, dict]],
                   guider: Callable | None) -> dict[str, CFGDenoiser]:
    """One guided denoiser per direction of ``planned`` from ``conds[name] = (c, uc)``."""
    n_latents = len(planned.frames) * len(planned.views)
    models = {}
    for d in planned.directions:
        if d.name not in conds:
            raise ValueError(f"pass {planned.index} ({planned.kind}) needs conditioning for direction {d.name!r}")
        c, uc = conds[d.name]
        indicator = 0.0 if d.reference_frame is None else 1.0  # official cond_mv / image_only_indicator
        models[d.name] = CFGDenoiser(Denoiser(unet, n_latents, indicator), c, uc, guider)
    return models


@torch.no_grad()
def run_pass(unet: Callable, planned: PlannedPass, conds: Mapping[str, tuple[dict, dict]], sigmas: torch.Tensor,
             guider: Callable | None, latent_shape: tuple[int, int, int], generator: torch.Generator | None = None,
             callback: SamplingCallback | None = None, device=None, dtype: torch.dtype = torch.float32,
             x_init: torch.Tensor | None = None) -> torch.Tensor:
    """Sample one pass of a ``Plan``.

    Args:
        unet: callable with the official UNet signature.
        planned: the plan entry.
        conds: ``{direction name: (c, uc)}`` with rows in that direction's model order (``build_sv4d_cond``).
        sigmas: ``[num_steps + 1]`` schedule; must match ``len(planned.step_directions)``.
        guider: e.g. ``default_guider(model_kind)``; its scale follows each direction's model order.
        latent_shape: ``(C, h, w)``; ``x_init``: optional already-scaled start ``[T, V, C, h, w]``.
    Returns:
        ``[T, V, C, h, w]`` latents, rows in the pass's forward order (``planned.frames``).
    """
    if len(sigmas) - 1 != len(planned.step_directions):
        raise ValueError(f"{len(sigmas) - 1} sampler steps but the plan was made for "
                         f"{len(planned.step_directions)}; call make_plan(..., num_steps={len(sigmas) - 1})")
    shape = (len(planned.frames), len(planned.views)) + tuple(latent_shape)
    if x_init is not None and tuple(x_init.shape) != shape:
        raise ValueError(f"x_init has shape {tuple(x_init.shape)}; this pass needs {shape} (T, V, C, h, w)")
    x = initial_latent(shape, sigmas, generator, device, dtype) if x_init is None else x_init
    models = pass_denoisers(unet, planned, conds, guider)
    if planned.kind == "dense":
        return sample_dense_alternating(models, x, sigmas, planned.step_directions, planned.orders(), callback,
                                        generator)
    out = sample_euler_edm(models["forward"], x.flatten(0, 1), sigmas, callback=callback, generator=generator)
    return out.view(shape)
