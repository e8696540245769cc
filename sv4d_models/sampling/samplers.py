"""Euler EDM sampling (Karras et al. 2022, Algorithm 2 with churn 0) and SV4D's alternating dense stepping.

Every sampler takes the model as a callable ``model(x, sigma, **extra_args) -> denoised`` (e.g. a
``CFGDenoiser``), a ``torch.Generator`` and a ``callback(dict)``; the callback gets
``{'x', 'i', 'sigma', 'sigma_next', 'denoised'}`` (plus ``'direction'`` for dense passes) before each update
and may raise to interrupt sampling (the exception propagates unchanged).
"""
from __future__ import annotations

import math
from typing import Callable, Mapping, Protocol, Sequence

import torch

from .denoiser import append_dims


class SamplingCallback(Protocol):
    """Called once per step with ``{'x', 'i', 'sigma', 'sigma_next', 'denoised'[, 'direction']}``.

    Use it for progress (``i`` of ``len(sigmas) - 1``), previews (``denoised``) and interruption (raise).
    """

    def __call__(self, info: dict) -> None: ...


def to_d(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """Karras ODE derivative ``(x - D) / sigma``."""
    return (x - denoised) / append_dims(sigma, x.ndim)


def initial_latent(shape, sigmas: torch.Tensor, generator: torch.Generator | None = None,
                   device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Starting latent ``randn(shape) * sqrt(1 + sigma_0^2)`` (sgm ``prepare_sampling_loop``)."""
    noise = torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)
    return noise * torch.sqrt(1.0 + sigmas[0].to(noise) ** 2.0)


def euler_edm_step(model: Callable, x: torch.Tensor, sigma, sigma_next, extra_args: Mapping | None = None,
                   gamma: float = 0.0, s_noise: float = 1.0, generator: torch.Generator | None = None):
    """One ``EulerEDMSampler.sampler_step``: returns ``(x_next, denoised)``; x ``[N, ...]``, sigma scalar."""
    s_in = x.new_ones([x.shape[0]])
    sigma = s_in * torch.as_tensor(sigma).to(x)
    sigma_next = s_in * torch.as_tensor(sigma_next).to(x)
    sigma_hat = sigma * (gamma + 1.0)
    if gamma > 0:
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) * s_noise
        x = x + eps * append_dims(sigma_hat**2 - sigma**2, x.ndim) ** 0.5
    denoised = model(x, sigma_hat, **(extra_args or {}))
    d = to_d(x, sigma_hat, denoised)
    return x + append_dims(sigma_next - sigma_hat, x.ndim) * d, denoised


def _gamma(sigmas: torch.Tensor, i: int, s_churn: float, s_tmin: float, s_tmax: float) -> float:
    num_sigmas = len(sigmas)
    return min(s_churn / (num_sigmas - 1), 2**0.5 - 1) if s_tmin <= float(sigmas[i]) <= s_tmax else 0.0


@torch.no_grad()
def sample_euler_edm(model: Callable, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Mapping | None = None,
                     callback: SamplingCallback | None = None, generator: torch.Generator | None = None,
                     s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = math.inf,
                     s_noise: float = 1.0) -> torch.Tensor:
    """Euler EDM sampler (sgm ``EulerEDMSampler``); ``x`` is the already-scaled start (``initial_latent``).

    Args:
        model: ``model(x [N, ...], sigma [N], **extra_args) -> denoised [N, ...]``.
        sigmas: ``[n + 1]`` schedule ending in 0 (``get_sigmas_edm``).
        generator: used only for churn noise (``s_churn > 0``).
    Returns:
        the final latent ``[N, ...]`` (the last step to sigma = 0 returns the denoised estimate).
    """
    placed = sigmas.to(device=x.device, dtype=x.dtype)  # once, not a host-device copy per step
    for i in range(len(sigmas) - 1):
        gamma = _gamma(sigmas, i, s_churn, s_tmin, s_tmax)
        x_next, denoised = euler_edm_step(model, x, placed[i], placed[i + 1], extra_args, gamma, s_noise, generator)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_next": sigmas[i + 1], "denoised": denoised})
        x = x_next
    return x


def default_step_directions(num_steps: int) -> tuple[str, ...]:
    """Official SV4D dense alternation: even steps backward, odd steps forward."""
    return tuple("backward" if i % 2 == 0 else "forward" for i in range(num_steps))


def _check_orders(orders: Mapping[str, Sequence[int]], n_rows: int) -> dict[str, torch.Tensor]:
    out = {}
    for name, order in orders.items():
        idx = torch.as_tensor(list(order), dtype=torch.long)
        if sorted(idx.tolist()) != list(range(n_rows)):
            raise ValueError(f"order {name!r}={list(order)} must be a permutation of range({n_rows})")
        out[name] = idx
    return out


@torch.no_grad()
def sample_dense_alternating(models: Mapping[str, Callable], x: torch.Tensor, sigmas: torch.Tensor,
                             step_directions: Sequence[str] | None = None,
                             orders: Mapping[str, Sequence[int]] | None = None,
                             callback: SamplingCallback | None = None,
                             generator: torch.Generator | None = None) -> torch.Tensor:
    """SV4D dense pass: each Euler step uses one direction's conditioning and frame order.

    At step i with direction ``d = step_directions[i]`` the rows of ``x`` are gathered in ``orders[d]``
    (so the guider's per-latent scale follows that model order), one step is taken with ``models[d]``
    and the result is scattered back by (t, v).

    Args:
        models: ``{"forward": model, "backward": model}`` guided denoisers, one per cond set.
        x: ``[T, V, C, h, w]`` already-scaled start latents, rows in forward frame order.
        step_directions: per-step direction names; default even -> backward, odd -> forward.
        orders: row permutation per direction; default forward = ``0..T-1``, backward = reversed.
        generator: accepted for a uniform sampler signature (churn-free stepping draws no noise).
    Returns:
        ``[T, V, C, h, w]`` final latents in forward frame order.
    """
    n_rows = x.shape[0]
    n_steps = len(sigmas) - 1
    step_directions = default_step_directions(n_steps) if step_directions is None else tuple(step_directions)
    if len(step_directions) != n_steps:
        raise ValueError(f"{len(step_directions)} step directions for {n_steps} sampler steps; give one per step")
    orders = {"forward": range(n_rows), "backward": range(n_rows - 1, -1, -1)} if orders is None else orders
    idx = {name: order.to(x.device) for name, order in _check_orders(orders, n_rows).items()}
    placed = sigmas.to(device=x.device, dtype=x.dtype)  # once, not a host-device copy per step
    for name in set(step_directions):
        if name not in models or name not in idx:
            raise ValueError(f"step direction {name!r} needs an entry in models and orders (got {sorted(models)})")
    for i, name in enumerate(step_directions):
        order = idx[name]
        x_dir = x[order].flatten(0, 1)
        x_next, denoised = euler_edm_step(models[name], x_dir, placed[i], placed[i + 1])
        if callback is not None:
            den = torch.empty_like(x)
            den[order] = denoised.view_as(x)
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_next": sigmas[i + 1], "denoised": den,
                      "direction": name})
        x = x.clone()
        x[order] = x_next.view_as(x)
    return x
