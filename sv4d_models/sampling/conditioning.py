"""Conditioning dicts for SV4D / SV4D 2.0 / SV3D (``sgm.modules.GeneralConditioner`` equivalent).

Encoders are not run here: callers pass CLIP embeddings and VAE latents, this module arranges them into the
official ``c`` / ``uc`` dicts (spec ``sv4d_reference.md`` section 4). Latent layout is ``(t, v)`` with the
view index fastest; under CFG the official batch is ``cat(uc, c)``.

Keys (SV4D family, one pass of T frames x V views):
    crossattn   [1, T, D]        CLIP image embedding of each input frame (uc: zeros)
    concat      [T*V, 4, h, w]   VAE latent of input frame t, once per view (uc: zeros)
    vector      [T*V, 1280]      [emb256(1e-5) | emb512(polar_v) | emb512(azimuth_v)] (uc: first part zero)
    cond_view   [V, 4, h, w]     reference-view latents (uc: zeros; both zero when there is no reference)
    cond_motion [T, 4, h, w]     VAE latents of the input frames (uc: zeros; unused by the network)
SV3D (F orbit frames): crossattn [F, 1, D], concat [F, 4, h, w], vector [F, 1280] (sv3d_p) / [F, 256]
(sv3d_u); uc zeroes crossattn and concat only (the cond_aug embedding stays).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from ..kinds import FOUR_D_KINDS, ORBIT_KINDS, SV3D_N_VIEWS, VECTOR_DIMS, get_kind

SIGMA_COND = 1e-5  # ZeroSampler sigma: the value embedded in the first 256 dims of the SV4D vector


def timestep_embedding(values, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``[cos(s f_k), sin(s f_k)]``, ``f_k = exp(-ln(max_period) k / (dim/2))``.

    ``ConcatTimestepEmbedderND`` / ``timestep_embedding`` of sgm, computed in float32 (inputs are cast to
    float32 before the product, as the official code does with float64 numpy angles).

    Args:
        values: ``[N]`` scalars (tensor, numpy array or sequence).
    Returns:
        ``[N, dim]`` float32.
    """
    if dim < 2:
        raise ValueError(f"dim={dim} must be >= 2")
    s = torch.as_tensor(np.asarray(values) if not torch.is_tensor(values) else values).reshape(-1)
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(0, half, dtype=torch.float32) / half).to(s.device)
    args = s.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def camera_vectors(
    model_kind: str,
    polars_rad=None,
    azimuths_rad=None,
    n_latents: int | None = None,
    cond_aug: float = SIGMA_COND,
    dims: Sequence[int] = VECTOR_DIMS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``vector`` conditioning ``(c, uc)``, each ``[N, sum(dims)]`` float32.

    Args:
        model_kind: ``sv4d`` / ``sv4d2`` / ``sv4d2_8views`` (uc zeroes the sigma part), ``sv3d_p`` (uc = c),
            ``sv3d_u`` (256-d cond_aug embedding only; uc = c).
        polars_rad, azimuths_rad: ``[N]`` per-latent angles in model order (already tiled over frames).
        n_latents: number of rows for sv3d_u (no angles); defaults to ``len(polars_rad)``.
        cond_aug: value embedded in the first part (1e-5: SV4D's ZeroSampler sigma / SV3D's cond_aug).
        dims: widths of the three parts (the parity fixtures use (32, 48, 48)).
    """
    if not get_kind(model_kind).camera_conditioned:  # sv3d_u
        if n_latents is None:
            raise ValueError("sv3d_u has no camera angles: pass n_latents (the number of orbit frames)")
        vec = timestep_embedding(torch.full((n_latents,), cond_aug, dtype=torch.float64), dims[0])
        return vec, vec.clone()
    if polars_rad is None or azimuths_rad is None:
        raise ValueError(f"model_kind={model_kind!r} needs polars_rad and azimuths_rad ([N] radians, model order)")
    p = torch.as_tensor(np.asarray(polars_rad) if not torch.is_tensor(polars_rad) else polars_rad).reshape(-1)
    a = torch.as_tensor(np.asarray(azimuths_rad) if not torch.is_tensor(azimuths_rad) else azimuths_rad).reshape(-1)
    if p.shape != a.shape:
        raise ValueError(f"polars_rad has {p.numel()} values but azimuths_rad has {a.numel()}; give one per latent")
    n = p.numel()
    first = timestep_embedding(torch.full((n,), cond_aug, dtype=torch.float64), dims[0])
    cam = torch.cat([timestep_embedding(p, dims[1]), timestep_embedding(a, dims[2])], dim=1)
    c = torch.cat([first, cam], dim=1)
    if get_kind(model_kind).is_4d:
        return c, torch.cat([torch.zeros_like(first), cam], dim=1)
    return c, c.clone()  # sv3d_p


def repeat_per_view(frame_latents: torch.Tensor, n_views: int) -> torch.Tensor:
    """``[T, ...]`` -> ``[T*V, ...]`` with each frame repeated for its V views (t-major, v fastest)."""
    return frame_latents.repeat_interleave(n_views, dim=0)


def _per_latent(angles, n_frames: int, n_views: int) -> np.ndarray:
    """Per-view ``[V]`` angles tiled over the frames, or ``[T*V]`` as given (float64 numpy)."""
    x = np.asarray(angles.cpu() if torch.is_tensor(angles) else angles).reshape(-1)
    if x.size == n_views:
        return np.tile(x, n_frames)
    if x.size != n_frames * n_views:
        raise ValueError(f"got {x.size} angles; expected V={n_views} per-view values or T*V={n_frames * n_views}")
    return x


def build_sv4d_cond(
    model_kind: str,
    clip_embeds: torch.Tensor,
    concat_latents: torch.Tensor,
    cond_motion: torch.Tensor,
    ref_latents: torch.Tensor | None,
    polars_rad,
    azimuths_rad,
    dims: Sequence[int] = VECTOR_DIMS,
    n_views: int | None = None,
) -> tuple[dict, dict]:
    """Build the SV4D-family ``(c, uc)`` dicts for one pass direction (rows already in model order).

    Args:
        model_kind: ``sv4d`` / ``sv4d2`` / ``sv4d2_8views``.
        clip_embeds: ``[T, D]`` or ``[1, T, D]`` CLIP embeddings of the T input frames (model order).
        concat_latents: ``[T, 4, h, w]`` (repeated per view here) or ``[T*V, 4, h, w]`` (one encode per
            latent, as the official conditioner does) VAE latent means of the input frames.
        cond_motion: ``[T, 4, h, w]`` VAE latents of the input frames.
        ref_latents: ``[V, 4, h, w]`` reference-view latents, or ``None`` for no reference (SV4D2 first
            window: ``cond_view`` is zero in both c and uc).
        polars_rad, azimuths_rad: ``[V]`` per-view angles (tiled over the T frames here) or ``[T*V]``.
        n_views: V; default ``ref_latents.shape[0]`` or the model's layout (8 / 4 / 8).
    Returns:
        ``(c, uc)`` with keys crossattn ``[1,T,D]``, concat ``[T*V,4,h,w]``, vector ``[T*V,sum(dims)]``,
        cond_view ``[V,4,h,w]``, cond_motion ``[T,4,h,w]``.
    """
    spec = get_kind(model_kind, FOUR_D_KINDS)
    crossattn = clip_embeds if clip_embeds.ndim == 3 else clip_embeds[None]
    n_frames = crossattn.shape[1]
    if n_views is None:
        n_views = ref_latents.shape[0] if ref_latents is not None else spec.views_per_pass
    if ref_latents is not None and ref_latents.shape[0] != n_views:
        raise ValueError(f"ref_latents has {ref_latents.shape[0]} views but the pass has {n_views}")
    if concat_latents.shape[0] == n_frames:
        concat = repeat_per_view(concat_latents, n_views)
    elif concat_latents.shape[0] == n_frames * n_views:
        concat = concat_latents
    else:
        raise ValueError(
            f"concat_latents has {concat_latents.shape[0]} rows; expected T={n_frames} or T*V={n_frames * n_views}"
        )
    if cond_motion.shape[0] != n_frames:
        raise ValueError(f"cond_motion has {cond_motion.shape[0]} rows; expected T={n_frames}")
    p, a = _per_latent(polars_rad, n_frames, n_views), _per_latent(azimuths_rad, n_frames, n_views)
    vec_c, vec_uc = camera_vectors(model_kind, p, a, dims=dims)
    vec_c, vec_uc = vec_c.to(concat.device), vec_uc.to(concat.device)
    if ref_latents is None:
        ref_latents = torch.zeros((n_views,) + tuple(cond_motion.shape[1:]), dtype=cond_motion.dtype,
                                  device=cond_motion.device)
    c = {"crossattn": crossattn, "concat": concat, "vector": vec_c, "cond_view": ref_latents,
         "cond_motion": cond_motion}
    uc = {"crossattn": torch.zeros_like(crossattn), "concat": torch.zeros_like(concat), "vector": vec_uc,
          "cond_view": torch.zeros_like(ref_latents), "cond_motion": torch.zeros_like(cond_motion)}
    return c, uc


def build_sv3d_cond(
    model_kind: str,
    clip_embed: torch.Tensor,
    image_latent: torch.Tensor,
    n_frames: int = SV3D_N_VIEWS,
    polars_rad=None,
    azimuths_rad=None,
    cond_aug: float = SIGMA_COND,
    dims: Sequence[int] = VECTOR_DIMS,
) -> tuple[dict, dict]:
    """SV3D ``(c, uc)``: crossattn ``[F,1,D]``, concat ``[F,4,h,w]``, vector ``[F,1280|256]``.

    Args:
        model_kind: ``sv3d_u`` or ``sv3d_p``.
        clip_embed: ``[D]`` / ``[1, D]`` / ``[1, 1, D]`` CLIP embedding of the input image.
        image_latent: ``[4, h, w]`` / ``[1, 4, h, w]`` VAE latent of ``image + cond_aug * noise``.
        polars_rad, azimuths_rad: ``[F]`` raw-orbit angles (sv3d_p only), e.g. ``sv3d_conditioning_angles``.
    """
    spec = get_kind(model_kind, ORBIT_KINDS)
    emb = clip_embed.reshape(1, 1, -1).expand(n_frames, 1, -1).clone()
    lat = image_latent.reshape((1,) + tuple(image_latent.shape[-3:])).expand(n_frames, -1, -1, -1).clone()
    if spec.camera_conditioned:  # sv3d_p
        if polars_rad is None or len(polars_rad) != n_frames:
            raise ValueError(f"sv3d_p needs {n_frames} polars_rad/azimuths_rad (raw orbit order)")
        vec, _ = camera_vectors(model_kind, polars_rad, azimuths_rad, cond_aug=cond_aug, dims=dims)
    else:
        vec, _ = camera_vectors(model_kind, n_latents=n_frames, cond_aug=cond_aug, dims=dims)
    vec = vec.to(lat.device)
    c = {"crossattn": emb, "concat": lat, "vector": vec}
    uc = {"crossattn": torch.zeros_like(emb), "concat": torch.zeros_like(lat), "vector": vec.clone()}
    return c, uc
