"""The pack's contact surface with ComfyUI at run time: the stage functions' ``SamplingModels`` over ComfyUI's
MODEL / CLIP_VISION / VAE objects, progress with latent previews, Cancel, and identities for work-dir keys.

``ComfySamplingModels`` implements ``sv4d_models.pipeline.stages.SamplingModels``:

* ``unet``: the MODEL's ``diffusion_model`` (the library UNet for SV4D, ComfyUI's ``UNetModel`` for a core SV3D
  model), loaded by ``comfy.model_management.load_models_gpu`` (offload / --lowvram are ComfyUI's), inputs cast to
  the model's compute dtype as ``BaseModel._apply_model`` does;
* ``clip_embed``: the official preprocessing (``sv4d_models.encoders.clip_pixels``) then the CLIP_VISION object's
  tower; ComfyUI's ``encode_image`` is not used because its ``clip_preprocess`` rounds pixels to 1/255 steps;
* ``encode`` / ``decode``: ``comfy.sd.VAE.encode`` / ``decode`` (ComfyUI's batching and OOM tiling), the role
  copies of an SV4D VAE for ``view`` / ``motion``; latents leave / enter through the model's latent format.
"""
from __future__ import annotations

import contextlib
import math

import torch

import comfy.model_base
import comfy.model_management as mm
import comfy.utils
import latent_preview

from sv4d_models import events
from sv4d_models.encoders import clip_pixels
from sv4d_models.pipeline import ENCODE_CHUNK
from sv4d_models.files import fingerprint
from sv4d_models.kinds import KINDS, VECTOR_DIMS

from .comfy_models import ROLE_VAE, SV4DModel
from .values import tile_latents

def model_kind(model) -> tuple[str, tuple[int, ...]]:
    """``(kind, vector_dims)`` of a MODEL: an SV4D model from the pack's loader or a core SV3D model."""
    inner = getattr(model, "model", None)
    if isinstance(inner, SV4DModel):
        return inner.sv4d_kind, inner.sv4d_vector_dims
    dims = getattr(inner, "sv4d_vector_dims", None)
    if isinstance(inner, comfy.model_base.SV3D_p):
        return "sv3d_p", tuple(dims or VECTOR_DIMS)
    if isinstance(inner, comfy.model_base.SV3D_u):
        return "sv3d_u", tuple(dims or VECTOR_DIMS[:1])
    raise ValueError(f"the MODEL is a {type(inner).__name__}, not an SV4D / SV3D model; load sv4d*.safetensors with "
                     "SV4D Checkpoint Loader, or sv3d_u / sv3d_p.safetensors with core Image Only Checkpoint Loader")


def should_stop() -> bool:
    """Stop check for the library's loops: raises ComfyUI's interrupt exception after Cancel."""
    mm.throw_exception_if_processing_interrupted()
    return False


class ComfyUNet:
    """The MODEL's network with the official UNet signature, loaded on first use after any VAE / CLIP call."""

    def __init__(self, patcher):
        self.patcher, self.ready = patcher, False

    def __call__(self, x: torch.Tensor, timesteps: torch.Tensor, **kwargs) -> torch.Tensor:
        model = self.patcher.model
        if not self.ready:
            mm.load_models_gpu([self.patcher], memory_required=model.memory_required(list(x.shape)))
            self.ready = True
        device, dtype = self.patcher.load_device, model.manual_cast_dtype or model.get_dtype()

        def cast(v):
            return v.to(device=device, dtype=dtype) if torch.is_tensor(v) and v.is_floating_point() else v

        extra = {k: cast(v) for k, v in kwargs.items() if v is not None}
        out = model.diffusion_model(cast(x), timesteps.to(device=device, dtype=torch.float32),
                                    transformer_options={}, **extra)
        return out.float()


class ComfySamplingModels:
    """``SamplingModels`` (see the module docstring) over ComfyUI objects."""

    def __init__(self, model, clip_vision, vae):
        self.kind, self.vector_dims = model_kind(model)
        for what, obj in (("CLIP_VISION", clip_vision), ("VAE", vae)):
            if obj is None:
                raise ValueError(f"no {what} connected: connect the {what} output of the loader that gave the MODEL")
        self.patcher, self.clip_vision, self.vae = model, clip_vision, vae
        self.unet = ComfyUNet(model)
        self.device = model.load_device
        self.latent_format = model.model.latent_format

    @property
    def spec(self):
        return KINDS[self.kind]

    @property
    def levels(self) -> int:
        """Resolution levels of the UNet (the image side must be a multiple of 8 * 2^(levels - 1))."""
        net = self.patcher.model.diffusion_model
        config = getattr(net, "config", None)  # the library UNet; ComfyUI's UNetModel keeps channel_mult itself
        return len(config.channel_mult if config is not None else net.channel_mult)

    def autocast(self):
        return contextlib.nullcontext()  # ComfyUI casts per layer (comfy.ops); no autocast region needed

    @torch.no_grad()
    def clip_embed(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, S, S]`` in [-1, 1] -> ``[B, D]`` float32 on the CPU."""
        cv = self.clip_vision
        mm.load_model_gpu(cv.patcher)
        self.unet.ready = False
        out = []
        for part in images.split(ENCODE_CHUNK):
            pixels = clip_pixels(part.to(cv.load_device), cv.image_size, cv.image_mean, cv.image_std)
            out.append(cv.model(pixel_values=pixels, intermediate_output=-2)[2].float().cpu())
        return torch.cat(out)

    @torch.no_grad()
    def encode(self, role: str, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, S, S]`` in [-1, 1] -> posterior means ``[B, 4, S/8, S/8]`` float32 on the device."""
        vae = getattr(self.vae, ROLE_VAE, {}).get(role, self.vae)
        self.unet.ready = False
        return vae.encode(((images.float() + 1.0) / 2.0).movedim(1, -1)).float().to(self.device)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Model-space latents ``[B, 4, h, w]`` -> images ``[B, 3, 8h, 8w]`` in [-1, 1] float32 on the CPU."""
        self.unet.ready = False
        pixels = self.vae.decode(self.latent_format.process_out(latents.float()))  # [B, H, W, 3] in [0, 1]
        return pixels.movedim(-1, 1).float().cpu() * 2.0 - 1.0

    def identity(self) -> list:
        """What fixes these models' numbers (work-dir keys): files / weights, dtypes, device type."""
        return [object_identity(self.patcher), object_identity(self.clip_vision), object_identity(self.vae)]


def object_identity(obj) -> list:
    """A short identity of a MODEL / CLIP_VISION / VAE: source file or a weight fingerprint, dtype, device type."""
    if obj is None:
        return [None]
    inner = getattr(obj, "model", None)
    if isinstance(inner, SV4DModel):
        return ["sv4d", inner.sv4d_source, str(inner.get_dtype()), obj.load_device.type]
    if isinstance(inner, comfy.model_base.BaseModel):
        first = next(inner.diffusion_model.parameters())
        return ["model", fingerprint(first.detach().float().cpu()), str(first.dtype), obj.load_device.type]
    if hasattr(obj, "first_stage_model"):
        roles = getattr(obj, ROLE_VAE, {})
        weights = [obj.first_stage_model.encoder.conv_in.weight, obj.first_stage_model.decoder.conv_out.weight]
        weights += [v.first_stage_model.encoder.conv_in.weight for v in roles.values()]
        return ["vae", fingerprint(*(w.detach().float().cpu() for w in weights)), str(obj.vae_dtype)]
    weight = next(obj.model.parameters())
    return ["clip_vision", fingerprint(weight.detach().float().cpu()), str(weight.dtype)]


class StepProgress:
    """One ComfyUI progress bar over a sampling run, fed the library's events (``sv4d_models.events``):
    ``sample_step`` moves it with a latent preview of the step, ``pass_resumed`` counts a resumed pass as done."""

    def __init__(self, models: ComfySamplingModels, columns: int | None = None):
        self.previewer = latent_preview.get_previewer(models.device, models.latent_format)
        self.columns, self.bar = columns, None

    def __call__(self, event: dict) -> None:
        if event["type"] not in (events.SAMPLE_STEP, events.PASS_RESUMED):
            return
        total = max(1, int(event["global_total"]))
        if self.bar is None:
            self.bar = comfy.utils.ProgressBar(total)
        if event["type"] == events.PASS_RESUMED:
            self.bar.update_absolute(int(event["global_step"]), total)
            return
        preview = None
        if self.previewer is not None:
            x0 = event["denoised"]  # [T, V, 4, h, w] (a pass: V columns) or [N, 4, h, w] (the SV3D orbit)
            columns = x0.shape[1] if x0.dim() == 5 else (self.columns or orbit_columns(x0.shape[0]))
            latents = x0.reshape(-1, *x0.shape[-3:]).float()
            preview = self.previewer.decode_latent_to_preview_image("JPEG", tile_latents(latents, columns))
        self.bar.update_absolute(int(event["global_step"]) + 1, total, preview)


class EventProgress:
    """One ComfyUI progress bar fed the library's ``progress`` events (the SV4D Evaluate node's scoring)."""

    def __init__(self):
        self.bar = None

    def __call__(self, event: dict) -> None:
        if event["type"] != events.PROGRESS:
            return
        total = max(1, int(event["total"]))
        if self.bar is None:
            self.bar = comfy.utils.ProgressBar(total)
        self.bar.update_absolute(int(event["done"]), total)


def orbit_columns(n: int) -> int:
    """Columns of a near-square mosaic of ``n`` latents (21 -> 7)."""
    return max(1, math.ceil(math.sqrt(n * 2)))
