"""SV4D checkpoints as ComfyUI objects: MODEL (a ``comfy.model_base.BaseModel`` in ComfyUI's model patcher), CLIP_VISION
(``comfy.clip_vision.ClipVisionModel``) and VAE (``comfy.sd.VAE``), built with ComfyUI's own classes and dtype /
device choices, loaded the way ComfyUI loads its own models, so that ComfyUI decides where and when weights live
(DynamicVRAM, --lowvram / --novram, fp8 storage, offload), in every version ``compat.py`` covers.

* MODEL: ``SV4DModel`` builds the library UNet inside ``BaseModel.__init__`` (as core models build theirs) with
  ComfyUI's casting ``comfy.ops`` in ComfyUI's weight dtype (``unet_dtype`` / ``unet_manual_cast`` or the loader's
  widget) on core's initial load device, then ComfyUI's model patcher class (``CoreModelPatcher``: the dynamic one
  under DynamicVRAM) and one ``load_state_dict(strict=False, assign=...)`` with every weight, as
  ``BaseModel.load_model_weights`` does. The weights are read from the file one tensor at a time straight into their
  final dtype and, where the network sits in CPU memory or the patcher is dynamic, assigned (``assign_loading``):
  they are never held twice. The strict check compares the file with the key list the kind needs
  (``sv4d_models.checkpoint.plan_unet``) before anything is built, and the network with the same list after loading
  (``check_loaded``): under DynamicVRAM the layers hold no weights until loaded, so nothing is read from them before.
  Attention runs through ComfyUI's ``optimized_attention`` (the user's --use-*-attention choice); EDM v-prediction
  sampling settings (sigma 0.002..700); SD latent format (previews).
* CLIP_VISION: ComfyUI's ``ClipVisionModel`` (ComfyUI's ViT-H config for the released files, a config written from
  the shapes for tiny test files), its weights renamed by ComfyUI's own OpenCLIP -> transformers conversion and
  loaded in one call (assigned, as the UNet's), then checked both ways (a missing or a dropped key raises).
* VAE: ``comfy.sd.VAE`` holding the conditioner's AutoencoderKL encoder (embedder 1, the concat copy) and the
  checkpoint's own image decoder ``first_stage_model.decoder`` with an identity ``post_quant_conv``, i.e. exactly the
  official ``Decoder(z / 0.18215)``; core VAEEncode / VAEDecode / previews work on it. When the conditioner's
  view / motion copies (embedders 4 / 5) differ from the concat copy, each gets its own ``comfy.sd.VAE``
  (``role_vaes``), used by the SV4D sampling nodes.
"""
from __future__ import annotations

import json
import os
import tempfile

import torch

import comfy.clip_vision
import comfy.latent_formats
import comfy.model_base
import comfy.model_management as mm
import comfy.ops
import comfy.sd
import comfy.supported_models_base
from comfy.ldm.modules import attention as comfy_attention

from sv4d_models.attention import set_attention_backend
from sv4d_models.checkpoint import CheckpointSource, UNetPlan, check_loaded, unet_tensors
from sv4d_models.encoders import CLIP_PREFIX
from sv4d_models.kinds import KINDS
from sv4d_models.sampling.schedule import EDM_SIGMA_MAX, EDM_SIGMA_MIN
from sv4d_models.unet import build_unet

from . import compat

WEIGHT_DTYPES = {"default": None, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16,
                 "fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}
DECODER_PREFIX = "first_stage_model.decoder."
SD_DDCONFIG = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
               "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
ROLE_VAE = "sv4d_role_vaes"  # attribute of the VAE object: {role: comfy.sd.VAE} when the copies differ
VIT_H = (1280, 32, "clip_vision_config_h.json")  # width, blocks of the released files' image tower; ComfyUI's config


class SV4DModelConfig(comfy.supported_models_base.BASE):
    """ComfyUI model config of SV4D / SV4D 2.0 (never matched by core detection: the pack loads its files)."""

    unet_config: dict = {}
    unet_extra_config: dict = {}
    latent_format = comfy.latent_formats.SD15
    sampling_settings = {"sigma_max": EDM_SIGMA_MAX, "sigma_min": EDM_SIGMA_MIN}
    memory_usage_factor = 2.0
    supported_inference_dtypes = [torch.float16, torch.bfloat16, torch.float32]


def sv4d_network(sv4d_plan: UNetPlan, dtype=None, device=None, operations=None, **_):
    """``BaseModel``'s ``unet_model``: the library UNet of the plan, built with ComfyUI's ops (no weights read)."""
    return build_unet(sv4d_plan.config, operations=operations, device=device, dtype=dtype)


class SV4DModel(comfy.model_base.BaseModel):
    """SV4D as a ComfyUI model: v-prediction EDM sampling settings around the library's SV4D UNet."""

    def __init__(self, config: SV4DModelConfig, plan: UNetPlan, device=None):
        super().__init__(config, comfy.model_base.ModelType.V_PREDICTION_EDM, device=device, unet_model=sv4d_network)
        self.sv4d_kind, self.sv4d_vector_dims = plan.kind, tuple(plan.info.vector_dims)
        self.sv4d_source, self.sv4d_kind_info = plan.info.source, plan.info

    def get_dtype(self) -> torch.dtype:
        return self.model_config.unet_config["dtype"]

    def extra_conds(self, **kwargs):
        raise ValueError("the SV4D MODEL samples only through the SV4D sampling nodes (SV4D Sample Anchors / "
                         "Dense, SV4D Sampler): core KSampler / SamplerCustom cannot build its view and motion "
                         "conditioning")


def comfy_attention_backend(q, k, v, heads):
    """ComfyUI's ``optimized_attention`` (looked up per call: the user's --use-*-attention choice), fp32 softmax
    precision as core SVD / SV3D use."""
    return comfy_attention.optimized_attention(q, k, v, heads, attn_precision=torch.float32)


def _pick_ops(weight_dtype: torch.dtype, manual_cast: torch.dtype | None, load_device):
    ops = comfy.ops.pick_operations(weight_dtype, manual_cast, load_device=load_device, fp8_optimizations=False)
    # The UNet evaluates GroupNorm in float32 on half-precision activations; only casting layers can feed it
    # their weights in float32, so the plain (non-casting) ops are replaced by their casting twins.
    return comfy.ops.manual_cast if ops is comfy.ops.disable_weight_init else ops


def _dtype_of_key(net: torch.nn.Module, storage: torch.dtype, compute: torch.dtype):
    """Weights of ComfyUI's casting layers in the storage dtype; the few parameters outside them (merge factors)
    in the compute dtype (no layer casts them). Those are set to the compute dtype before loading, so that a copy
    into them never rounds (an fp8 merge factor would)."""
    for module in net.modules():
        if not hasattr(module, "comfy_cast_weights"):
            for name, p in module.named_parameters(recurse=False):
                if p.dtype != compute:
                    setattr(module, name, torch.nn.Parameter(p.to(compute), requires_grad=False))

    def pick(key: str) -> torch.dtype:
        owner = net.get_submodule(key.rpartition(".")[0])
        return storage if hasattr(owner, "comfy_cast_weights") else compute
    return pick


def assign_loading(patcher, weights_device) -> bool:
    """Whether to load with ``load_state_dict(assign=True)``: the state dict's tensors become the weights.

    Core does it when the patcher is dynamic (DynamicVRAM keeps weights where the state dict put them). The pack also
    does it when the network was built on the CPU: its construction allocated weights that were never written (no
    memory used yet), so assigning the tensors read from the file costs nothing more, where copying into those
    weights would hold everything twice for a moment. Built on a GPU (core's initial device when it fits), the
    tensors are copied into the GPU weights, as core does.
    """
    return compat.is_dynamic(patcher) or torch.device(weights_device).type == "cpu"


def load_sv4d_model(src: CheckpointSource, plan: UNetPlan, weight_dtype: torch.dtype | None = None):
    """The MODEL of an SV4D-family checkpoint whose ``plan`` (``plan_unet``) was checked (see the module
    docstring)."""
    load_device, offload_device = mm.get_torch_device(), mm.unet_offload_device()
    supported = SV4DModelConfig.supported_inference_dtypes
    dtype = weight_dtype or mm.unet_dtype(model_params=plan.n_params, supported_dtypes=supported)
    manual_cast = mm.unet_manual_cast(dtype, load_device, supported)
    config = SV4DModelConfig({"sv4d_plan": plan, "adm_in_channels": plan.config.adm_in_channels})
    config.set_inference_dtype(dtype, manual_cast)
    config.custom_operations = _pick_ops(dtype, manual_cast, load_device)
    initial = mm.unet_inital_load_device(plan.n_params, dtype)
    model = SV4DModel(config, plan, device=initial)
    patcher = compat.make_patcher(model, load_device=load_device, offload_device=offload_device)
    net, assign = model.diffusion_model, assign_loading(patcher, initial)
    weights = unet_tensors(src, plan, _dtype_of_key(net, dtype, manual_cast or dtype), initial if assign else "cpu")
    net.load_state_dict(weights, strict=False, assign=assign)  # as BaseModel.load_model_weights, checked below
    del weights
    check_loaded(net, plan)  # every weight the kind needs, real, of the right shape, and nothing else
    compat.archive_model_dtypes(net)  # the dtypes the weights now have (DynamicVRAM casts to these on the GPU)
    set_attention_backend(net, comfy_attention_backend)
    if initial != torch.device("cpu"):  # as core's checkpoint loader: built on the GPU, so registered as loaded there
        mm.load_models_gpu([patcher], force_full_load=True)
    return patcher


# ---- CLIP vision -------------------------------------------------------------------------------------
def _clip_config(src: CheckpointSource, prefix: str) -> tuple[str | None, dict]:
    """(ComfyUI's config file, or None and a config written from the shapes) of the OpenCLIP tower under prefix."""
    width, _, patch, _ = src.shape(prefix + "conv1.weight")
    blocks = 1 + max(int(k[len(prefix):].split(".")[2]) for k in src.keys() if k.startswith(prefix + "transformer.resblocks."))
    if (width, blocks) == VIT_H[:2]:
        return compat.clip_vision_config(VIT_H[2]), {}
    n_pos = src.shape(prefix + "positional_embedding")[0]
    return None, {"hidden_act": "gelu", "hidden_size": width, "image_size": int(round((n_pos - 1) ** 0.5)) * patch,
                  "intermediate_size": src.shape(prefix + "transformer.resblocks.0.mlp.c_fc.weight")[0],
                  "model_type": "clip_vision_model", "num_attention_heads": max(1, width // 80), "num_channels": 3,
                  "num_hidden_layers": blocks, "patch_size": patch, "projection_dim": src.shape(prefix + "proj")[1],
                  "layer_norm_eps": 1e-5, "torch_dtype": "float32"}


def load_clip_vision(src: CheckpointSource) -> comfy.clip_vision.ClipVisionModel:
    """The conditioner's OpenCLIP image tower as ComfyUI's ``ClipVisionModel`` (strict: missing keys raise)."""
    prefix = CLIP_PREFIX + "visual."
    path, written = _clip_config(src, prefix)
    if path is None:  # non-standard width (tiny test checkpoints): the same class, config from the shapes
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "clip_vision_config.json")
            with open(path, "w", encoding="utf-8") as f:
                json.dump(written, f)
            clip = comfy.clip_vision.ClipVisionModel(path)
    else:
        clip = comfy.clip_vision.ClipVisionModel(path)
    sd = {k: src.get(k, None, clip.dtype) for k in src.keys() if k.startswith(prefix)}
    sd = comfy.clip_vision.convert_to_transformers(sd, prefix)  # ComfyUI's own OpenCLIP -> transformers names
    sd = {k: v.contiguous() for k, v in sd.items()}  # the projection comes transposed: weights are taken as they are
    loaded = set(sd)
    device = next((t.device for t in [*clip.model.parameters(), *clip.model.buffers()] if not t.is_meta), "cpu")
    if assign_loading(clip.patcher, device):  # one call with every key: the model's load hooks expect all of them
        clip.model.load_state_dict(sd, strict=False, assign=True)
    else:
        clip.load_sd(sd)
    del sd
    held = {k for k, v in clip.model.state_dict().items() if v is not None and not v.is_meta}
    missing = sorted(k for k in set(clip.model.state_dict()) - loaded if not k.endswith("position_ids"))
    dropped = sorted(loaded - held)
    if missing or dropped:
        raise ValueError(f"{src.name()}: the CLIP image tower {'misses' if missing else 'did not take'} "
                         f"{len(missing or dropped)} weights (e.g. {(missing or dropped)[0]}); the file is damaged or "
                         "not an SV4D checkpoint (download it again), or this ComfyUI version loads CLIP differently")
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
           "load_vae", "comfy_attention_backend", "sv4d_network"]
