"""SV4D checkpoints as ComfyUI objects: MODEL (a ``comfy.model_base.BaseModel`` in a ``ModelPatcher``), CLIP_VISION
(``comfy.clip_vision.ClipVisionModel``) and VAE (``comfy.sd.VAE``), built with ComfyUI's own classes and dtype /
device choices from the checkpoint's keys, read tensor by tensor through ``sv4d_models.checkpoint``.

* MODEL: the library UNet (``sv4d_models.checkpoint.load_unet``, strict) built with ComfyUI's casting ``comfy.ops``
  in ComfyUI's weight dtype (``unet_dtype`` / ``unet_manual_cast`` or the loader's widget), attention through
  ComfyUI's ``optimized_attention`` (the user's --use-*-attention choice), EDM v-prediction sampling settings
  (sigma 0.002..700), SD latent format (previews). Offload and --lowvram are the ModelPatcher's.
* CLIP_VISION: ``load_clipvision_from_sd`` (ViT-H config) on the conditioner's OpenCLIP tower; checkpoints with
  non-standard widths (tiny test files) get a ``ClipVisionModel`` from a config written from their shapes.
* VAE: ``comfy.sd.VAE`` holding the conditioner's AutoencoderKL encoder (embedder 1, the concat copy) and the
  checkpoint's own image decoder ``first_stage_model.decoder`` with an identity ``post_quant_conv``, i.e. exactly the
  official ``Decoder(z / 0.18215)``; core VAEEncode / VAEDecode / previews work on it. When the conditioner's
  view / motion copies (embedders 4 / 5) differ from the concat copy, each gets its own ``comfy.sd.VAE``
  (``role_vaes``), used by the SV4D sampling nodes.
"""
from __future__ import annotations

import json
import logging
import math
import os
import tempfile

import torch

import comfy.clip_vision
import comfy.latent_formats
import comfy.model_base
import comfy.model_management as mm
import comfy.model_patcher
import comfy.ops
import comfy.sd
import comfy.supported_models_base
from comfy.ldm.modules import attention as comfy_attention

from sv4d_models.attention import set_attention_backend
from sv4d_models.checkpoint import UNET_PREFIX, CheckpointSource, load_unet
from sv4d_models.encoders import CLIP_PREFIX
from sv4d_models.kinds import KINDS
from sv4d_models.sampling.schedule import EDM_SIGMA_MAX, EDM_SIGMA_MIN

log = logging.getLogger("sv4d")

WEIGHT_DTYPES = {"default": None, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16,
                 "fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}
DECODER_PREFIX = "first_stage_model.decoder."
SD_DDCONFIG = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
               "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
ROLE_VAE = "sv4d_role_vaes"  # attribute of the VAE object: {role: comfy.sd.VAE} when the copies differ


class SV4DModelConfig(comfy.supported_models_base.BASE):
    """ComfyUI model config of SV4D / SV4D 2.0 (never matched by core detection: the pack loads its files)."""

    unet_config: dict = {}
    unet_extra_config: dict = {}
    latent_format = comfy.latent_formats.SD15
    sampling_settings = {"sigma_max": EDM_SIGMA_MAX, "sigma_min": EDM_SIGMA_MIN}
    memory_usage_factor = 2.0
    supported_inference_dtypes = [torch.float16, torch.bfloat16, torch.float32]


class SV4DModel(comfy.model_base.BaseModel):
    """SV4D as a ComfyUI model: v-prediction EDM sampling settings around the library's SV4D UNet."""

    def __init__(self, config: SV4DModelConfig, unet: torch.nn.Module, kind: str, vector_dims, source: str,
                 device=None):
        super().__init__(config, comfy.model_base.ModelType.V_PREDICTION_EDM, device=device)
        self.diffusion_model = unet
        self.sv4d_kind, self.sv4d_vector_dims, self.sv4d_source = kind, tuple(vector_dims), source
        self.weight_dtype = config.unet_config["dtype"]

    def get_dtype(self) -> torch.dtype:
        return self.weight_dtype

    def extra_conds(self, **kwargs):
        raise ValueError("the SV4D MODEL samples only through the SV4D sampling nodes (SV4D Sample Anchors / "
                         "Dense, SV4D Sampler): core KSampler / SamplerCustom cannot build its view and motion "
                         "conditioning")


def comfy_attention_backend(q, k, v, heads):
    """ComfyUI's ``optimized_attention`` (looked up per call: the user's --use-*-attention choice), fp32 softmax
    precision as core SVD / SV3D use."""
    return comfy_attention.optimized_attention(q, k, v, heads, attn_precision=torch.float32)


def _pick_ops(weight_dtype: torch.dtype, manual_cast: torch.dtype | None, load_device, fast_fp8: bool):
    ops = comfy.ops.pick_operations(weight_dtype, manual_cast, load_device=load_device, fp8_optimizations=fast_fp8)
    # The UNet evaluates GroupNorm in float32 on half-precision activations; only casting layers can feed it
    # their weights in float32, so the plain (non-casting) ops are replaced by their casting twins.
    return comfy.ops.manual_cast if ops is comfy.ops.disable_weight_init else ops


def load_sv4d_model(src: CheckpointSource, kind: str, vector_dims, source: str,
                    weight_dtype: torch.dtype | None = None) -> comfy.model_patcher.ModelPatcher:
    """The MODEL of an SV4D-family checkpoint (see the module docstring)."""
    load_device, offload_device = mm.get_torch_device(), mm.unet_offload_device()
    n_params = sum(math.prod(src.shape(k)) for k in src.keys() if k.startswith(UNET_PREFIX))
    supported = SV4DModelConfig.supported_inference_dtypes
    dtype = weight_dtype or mm.unet_dtype(model_params=n_params, supported_dtypes=supported)
    manual_cast = mm.unet_manual_cast(dtype, load_device, supported)
    config = SV4DModelConfig({"disable_unet_model_creation": True})
    config.set_inference_dtype(dtype, manual_cast)
    ops = _pick_ops(dtype, manual_cast, load_device, fast_fp8=False)
    unet = load_unet(src, model_kind=kind, device=offload_device, dtype=dtype, operations=ops)
    compute = manual_cast or dtype
    for module in unet.modules():  # parameters outside casting layers (merge factors) stay in the compute dtype
        if not hasattr(module, "comfy_cast_weights"):
            for name, p in module.named_parameters(recurse=False):
                if p.dtype != compute:
                    setattr(module, name, torch.nn.Parameter(p.to(compute), requires_grad=False))
    set_attention_backend(unet, comfy_attention_backend)
    config.unet_config["adm_in_channels"] = unet.config.adm_in_channels
    model = SV4DModel(config, unet.eval().requires_grad_(False), kind, vector_dims, source, device=offload_device)
    return comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=offload_device)


# ---- CLIP vision -------------------------------------------------------------------------------------
def _clip_json(sd: dict[str, torch.Tensor]) -> dict:
    """ComfyUI CLIP-vision config from the converted (transformers-named) tower's shapes (non-ViT-H widths)."""
    width = sd["vision_model.embeddings.patch_embedding.weight"].shape[0]
    patch = sd["vision_model.embeddings.patch_embedding.weight"].shape[-1]
    n_pos = sd["vision_model.embeddings.position_embedding.weight"].shape[0]
    layers = 1 + max(int(k.split(".")[3]) for k in sd if k.startswith("vision_model.encoder.layers."))
    return {"hidden_act": "gelu", "hidden_size": width, "image_size": int(round((n_pos - 1) ** 0.5)) * patch,
            "intermediate_size": sd["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
            "model_type": "clip_vision_model", "num_attention_heads": max(1, width // 80), "num_channels": 3,
            "num_hidden_layers": layers, "patch_size": patch, "projection_dim": sd["visual_projection.weight"].shape[0],
            "layer_norm_eps": 1e-5, "torch_dtype": "float32"}


def load_clip_vision(src: CheckpointSource) -> comfy.clip_vision.ClipVisionModel:
    """The conditioner's OpenCLIP image tower as ComfyUI's ``ClipVisionModel`` (strict: missing keys raise)."""
    prefix = CLIP_PREFIX + "visual."
    sd = comfy.clip_vision.convert_to_transformers({k: src.tensor(k) for k in src.keys() if k.startswith(prefix)},
                                                   prefix)
    clip = comfy.clip_vision.load_clipvision_from_sd(dict(sd))  # ViT-H (the released files): ComfyUI's own config
    if clip is None:  # non-standard width (tiny test checkpoints): the same class, config from the shapes
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "clip_vision_config.json")
            with open(path, "w", encoding="utf-8") as f:
                json.dump(_clip_json(sd), f)
            clip = comfy.clip_vision.ClipVisionModel(path)
        clip.load_sd(sd)
    missing = sorted(k for k in set(clip.model.state_dict()) - set(sd) if not k.endswith("position_ids"))
    if missing:
        raise ValueError(f"{src.name()}: the CLIP image tower misses {len(missing)} weights (e.g. {missing[0]}); "
                         "the file is damaged or not an SV4D checkpoint: download it again")
    return clip


# ---- VAE ---------------------------------------------------------------------------------------------
def _vae_config(src: CheckpointSource, prefix: str) -> dict:
    """``comfy.sd.VAE`` config (AutoencoderKL params) from the encoder copy's shapes."""
    rel = [k[len(prefix):].split(".") for k in src.keys() if k.startswith(prefix + "encoder.down.")]
    ch = src.shape(prefix + "encoder.conv_in.weight")[0]
    mult = [src.shape(f"{prefix}encoder.down.{i}.block.0.conv1.weight")[0] // ch for i in sorted({int(r[2]) for r in rel})]
    blocks = len({r[4] for r in rel if r[2] == "0" and r[3] == "block"})
    ddconfig = dict(SD_DDCONFIG, ch=ch, ch_mult=mult, num_res_blocks=blocks,
                    z_channels=src.shape(prefix + "encoder.conv_out.weight")[0] // 2)
    return {"params": {"embed_dim": src.shape(prefix + "quant_conv.weight")[0] // 2, "ddconfig": ddconfig}}


def _vae_state_dict(src: CheckpointSource, prefix: str) -> dict[str, torch.Tensor]:
    """Encoder + quant_conv of one conditioner copy, the image decoder, identity post_quant_conv."""
    sd = {k[len(prefix):]: src.tensor(k) for k in src.keys() if k.startswith((prefix + "encoder.", prefix + "quant_conv."))}
    sd.update({"decoder." + k[len(DECODER_PREFIX):]: src.tensor(k) for k in src.keys() if k.startswith(DECODER_PREFIX)})
    z = sd["decoder.conv_in.weight"].shape[1]
    sd["post_quant_conv.weight"] = torch.eye(z, dtype=torch.float32).view(z, z, 1, 1)
    sd["post_quant_conv.bias"] = torch.zeros(z)
    return sd


def _one_vae(src: CheckpointSource, prefix: str) -> comfy.sd.VAE:
    sd = _vae_state_dict(src, prefix)
    vae = comfy.sd.VAE(sd=dict(sd), config=_vae_config(src, prefix))
    missing = sorted(set(vae.first_stage_model.state_dict()) - set(sd))
    if missing:
        raise ValueError(f"{src.name()}: the VAE misses {len(missing)} weights (e.g. {missing[0]}); the file is "
                         "damaged or not an SV4D checkpoint: download it again")
    return vae


def _same_copy(src: CheckpointSource, a: str, b: str) -> bool:
    keys = [k[len(a):] for k in src.keys() if k.startswith((a + "encoder.", a + "quant_conv."))]
    return all(src.shapes.get(b + k) == src.shape(a + k) and torch.equal(src.tensor(a + k), src.tensor(b + k))
               for k in keys)


def load_vae(src: CheckpointSource, kind: str) -> comfy.sd.VAE:
    """The VAE (concat copy + image decoder); differing view / motion copies ride along in ``ROLE_VAE``."""
    copies = {role: f"conditioner.embedders.{i}.encoder." for role, i in KINDS[kind].vae_copies.items()}
    vae = _one_vae(src, copies["concat"])
    roles = {role: vae if _same_copy(src, copies["concat"], prefix) else _one_vae(src, prefix)
             for role, prefix in copies.items() if role != "concat"}
    setattr(vae, ROLE_VAE, roles)
    return vae


__all__ = ["SV4DModel", "SV4DModelConfig", "WEIGHT_DTYPES", "ROLE_VAE", "load_sv4d_model", "load_clip_vision",
           "load_vae", "comfy_attention_backend"]
