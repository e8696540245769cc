"""The training objective: EDM noise levels, the v-scaled denoiser of the library, L2 loss with SVD/SV3D's weighting.

Formula (sgm ``StandardDiffusionLoss`` with ``EDMSampling`` and ``VWeighting``, the pieces SVD / SV3D training is
built from in Stability's ``generative-models``: ``sgm/modules/diffusionmodules/{loss,sigma_sampling,
loss_weighting}.py``; Karras et al. 2022, EDM, section 5):

    log sigma ~ N(p_mean, p_std^2)                 one noise level per sample (all T x V latents of a clip)
    x_noisy = x0 + sigma * n,  n ~ N(0, I)         x0 = 0.18215 * VAE posterior mean of the target views
    D(x_noisy, sigma, c) = c_skip x + c_out F(c_in x || concat, c_noise, c)      (library ``Denoiser``)
    loss = lambda(sigma) * mean (D - x0)^2,  lambda(sigma) = (sigma^2 + 1) / sigma^2    (EDMWeighting, sigma_data 1)

With v-scaling (c_out^2 = sigma^2 / (sigma^2 + 1)) this weighting makes the loss the plain MSE of the network's
v-prediction. Classifier-free guidance: with probability ``p_uncond`` a sample is trained on exactly the
unconditional inputs the sampler uses (``build_sv4d_cond``'s uc: zero CLIP, concat and reference latents, zero
sigma embedding); the official conditioner drops its embedders the same way (``ucg_rate``).
"""
from __future__ import annotations

import torch

from sv4d_models.encoders.vae import LATENT_SCALE
from sv4d_models.sampling import Denoiser, build_sv4d_cond

__all__ = ["sample_sigma", "loss_weight", "training_batch", "diffusion_loss", "fixed_sigma_batch"]


def sample_sigma(g: torch.Generator, p_mean: float, p_std: float) -> float:
    """One EDM noise level: ``exp(p_mean + p_std * N(0, 1))``."""
    return float(torch.exp(p_mean + p_std * torch.randn(1, generator=g, dtype=torch.float64)))


def loss_weight(sigma: torch.Tensor) -> torch.Tensor:
    """``(sigma^2 + 1) / sigma^2`` (EDM weighting with sigma_data = 1, sgm ``VWeighting``)."""
    return (sigma**2 + 1.0) / sigma**2


def _stack(conds: list[dict]) -> dict:
    return {k: torch.cat([c[k] for c in conds]) for k in conds[0]}


def training_batch(samples: list[dict], kind: str, vector_dims, p_uncond: float, p_mean: float, p_std: float,
                   sigmas: list[float] | None = None) -> dict:
    """Samples of ``data.SampleBuilder`` -> noisy latents, noise levels, targets and the stacked conditioning.

    Per sample (in this order, from the sample's own generator): the noise level (or ``sigmas[i]``), the noise,
    the dropout draw. Returns ``x0, x_noisy [B*T*V, 4, h, w]``, ``sigma [B*T*V]``, ``cond``, ``n_latents`` (T*V),
    ``uncond [B]`` (bool).
    """
    x0s, noisy, sig, conds, drops = [], [], [], [], []
    for i, s in enumerate(samples):
        g = s["generator"]
        n_t, n_v = s["target"].shape[:2]
        x0 = (s["target"] * LATENT_SCALE).flatten(0, 1)  # [T*V, 4, h, w]
        sigma = sample_sigma(g, p_mean, p_std) if sigmas is None else float(sigmas[i])
        noise = torch.randn(x0.shape, generator=g)
        drop = float(torch.rand(1, generator=g)) < p_uncond
        c, uc = build_sv4d_cond(kind, s["clip"], s["inputs"], s["inputs"], s["reference"], s["polars"], s["azimuths"],
                                dims=vector_dims, n_views=n_v)
        x0s.append(x0)
        noisy.append(x0 + sigma * noise)
        sig.append(torch.full((n_t * n_v,), sigma, dtype=torch.float32))
        conds.append(uc if drop else c)
        drops.append(drop)
    return {"x0": torch.cat(x0s), "x_noisy": torch.cat(noisy), "sigma": torch.cat(sig), "cond": _stack(conds),
            "n_latents": int(samples[0]["target"].shape[0] * samples[0]["target"].shape[1]),
            "uncond": torch.tensor(drops)}


def diffusion_loss(unet, batch: dict, device: torch.device | str = "cpu") -> torch.Tensor:
    """Per-sample weighted L2 loss ``[B]`` of ``unet`` on a ``training_batch``."""
    n = batch["n_latents"]
    cond = {k: v.to(device) for k, v in batch["cond"].items()}
    x0, x_noisy, sigma = (batch[k].to(device) for k in ("x0", "x_noisy", "sigma"))
    denoised = Denoiser(unet, n, image_only_indicator=1.0)(x_noisy, sigma, cond)
    w = loss_weight(sigma)[:, None, None, None]
    per_latent = (w * (denoised.float() - x0) ** 2).flatten(1).mean(1)  # [B*T*V]
    return per_latent.view(-1, n).mean(1)


def fixed_sigma_batch(samples: list[dict], kind: str, vector_dims, sigma: float) -> dict:
    """A validation batch at one fixed noise level, no dropout (same noise for the same samples every time)."""
    return training_batch(samples, kind, vector_dims, 0.0, 0.0, 1.0, sigmas=[sigma] * len(samples))
