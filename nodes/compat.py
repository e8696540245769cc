"""Every difference between the ComfyUI versions the pack runs on, in one place, and the list of every ComfyUI
name the pack uses (``COMFY_SYMBOLS``; ``tests/test_comfy_compat.py`` checks that each one resolves).

Versions: 0.3.64 (``../shared/comfyui``, CI), 0.33.0 (full upstream tree, run here on the CPU), 0.38.x (files read
from Comfy-Org/ComfyUI; not run). Each function below says which versions do what.
"""
from __future__ import annotations

import importlib
import os

# ---- the node API ---------------------------------------------------------------------------------------
# ``comfy_api.latest`` changes between releases; ``comfy_api.v0_0_2`` is a pinned, backward-compatible surface
# (0.3.64: ComfyExtension, io, ui, Input, InputImpl, Types; 0.33+: the same plus IO / UI; 0.38: unchanged, and a
# newer pinned ``v0_0_3``). A name missing from v0_0_2 is taken from ``latest`` (none is, on the versions above).
_api = importlib.import_module("comfy_api.v0_0_2")
_latest = None


def _api_name(name: str):
    global _latest
    if hasattr(_api, name):
        return getattr(_api, name)
    _latest = _latest or importlib.import_module("comfy_api.latest")
    return getattr(_latest, name)


ComfyExtension, io, ui, InputImpl, Types = (_api_name(n) for n in ("ComfyExtension", "io", "ui", "InputImpl", "Types"))

import comfy.model_management as mm  # noqa: E402  (after the API: the order ComfyUI itself imports them in)
import comfy.model_patcher  # noqa: E402


# ---- memory modes ---------------------------------------------------------------------------------------
def core_patcher_class():
    """The ModelPatcher class ComfyUI wants for models it manages, looked up at call time.

    0.3.64: only ``ModelPatcher``. Later versions (0.8+): ``comfy.model_patcher.CoreModelPatcher``, which is
    ``ModelPatcher`` until ``main.py`` rebinds it to ``ModelPatcherDynamic`` when DynamicVRAM is on (NVIDIA by
    default since 0.33; off with --cpu / --highvram / --gpu-only / --novram / --disable-dynamic-vram).
    ``ModelPatcherDynamic(load_device=cpu)`` returns a plain ``ModelPatcher``.
    """
    return getattr(comfy.model_patcher, "CoreModelPatcher", comfy.model_patcher.ModelPatcher)


def make_patcher(model, load_device, offload_device):
    return core_patcher_class()(model, load_device=load_device, offload_device=offload_device)


def is_dynamic(patcher) -> bool:
    """Whether ``patcher`` streams weights under DynamicVRAM (0.3.64 has no ``is_dynamic``: never). Core loads a
    dynamic model with ``load_state_dict(assign=True)`` (weights stay where the state dict put them), others with
    copies into the allocated parameters."""
    check = getattr(patcher, "is_dynamic", None)
    return bool(check()) if check is not None else False


def dynamic_vram_enabled() -> bool:
    """``comfy.memory_management.aimdo_enabled`` (0.33+, set by main.py); 0.3.64 has no such module: False.

    While it is True, ``comfy.ops`` Linear / Embedding layers are built without weights (``weight = None``, or a meta
    Embedding weight) and get them only from ``load_state_dict``: nothing may read a layer's weight before loading.
    """
    try:
        memory_management = importlib.import_module("comfy.memory_management")
    except ImportError:
        return False
    return bool(getattr(memory_management, "aimdo_enabled", False))


def archive_model_dtypes(module) -> None:
    """Record each parameter's dtype for the dynamic patcher (0.33+: ``mm.archive_model_dtypes``, which
    ``BaseModel.__init__`` calls on the network it builds; 0.3.64: nothing to do)."""
    archive = getattr(mm, "archive_model_dtypes", None)
    if archive is not None:
        archive(module)


def clip_vision_config(name: str) -> str:
    """Path of one of ComfyUI's CLIP-vision configs (``clip_vision_config_h.json`` ...: the same files, in
    ``comfy/``, in 0.3.64 to 0.38; 0.33+ also accepts a dict, 0.3.64 only a path)."""
    import comfy.clip_vision

    return os.path.join(os.path.dirname(os.path.realpath(comfy.clip_vision.__file__)), name)


# ---- every ComfyUI name the pack touches (module -> attributes) -----------------------------------------------
# Signatures that differ between versions and how the pack calls them so both work:
#   comfy.ops.pick_operations(weight_dtype, compute_dtype, load_device=None, disable_fast_fp8=False,
#       fp8_optimizations=False, scaled_fp8=None)  [0.3.64]; the last became model_config=None [0.33+]:
#       called with weight_dtype, compute_dtype, load_device= and fp8_optimizations= only.
#   ModelPatcher(model, load_device, offload_device, size=0, weight_inplace_update=False) [+ fast_disk=False 0.38]:
#       called with model, load_device=, offload_device= only.
#   BaseModel.load_model_weights(sd, unet_prefix="") [+ assign=False 0.33+]: the pack makes the same
#       load_state_dict(strict=False, assign=...) call on the SV4D network itself (assign also for CPU-built
#       networks, see comfy_models.assign_loading) and checks every key both ways (load_model_weights only logs).
#   ClipVisionModel.load_sd(sd) = load_state_dict(strict=False) [0.3.64] / (..., assign=is_dynamic) [0.33+]:
#       used where the tower is not in CPU memory; there, load_state_dict(assign=True) directly. Its
#       CLIPVisionModelProjection drops the projection when a call lacks its key [0.33+]: one call with every key.
#   BASE.set_inference_dtype(dtype, manual_cast_dtype) [+ device=None 0.33+]: called with the first two.
#   ClipVisionModel(json_config) path [0.3.64] or path / dict [0.33+]: called with a path.
COMFY_SYMBOLS: dict[str, tuple[str, ...]] = {  # "module[.Class]": names used on it
    "comfy_api.v0_0_2": ("ComfyExtension", "io", "ui", "InputImpl", "Types"),
    "comfy_api.v0_0_2.io": ("ComfyNode", "Schema", "NodeOutput", "Custom", "MultiType", "Combo", "Int", "Float",
                            "String", "Image", "Video", "Mask", "Model", "ClipVision", "Vae", "Sigmas"),
    "comfy_api.v0_0_2.ui": ("PreviewText",),
    "comfy_api.v0_0_2.InputImpl": ("VideoFromComponents",),
    "comfy_api.v0_0_2.Types": ("VideoComponents",),
    "comfy.model_management": ("get_torch_device", "unet_offload_device", "unet_inital_load_device", "unet_dtype",
                               "unet_manual_cast", "load_models_gpu", "load_model_gpu", "free_memory",
                               "soft_empty_cache", "throw_exception_if_processing_interrupted"),
    "comfy.model_patcher": ("ModelPatcher",),
    "comfy.model_base": ("BaseModel", "ModelType", "SV3D_u", "SV3D_p"),
    "comfy.model_base.BaseModel": ("memory_required", "get_dtype"),
    "comfy.model_base.ModelType": ("V_PREDICTION_EDM",),
    "comfy.supported_models_base": ("BASE",),
    "comfy.supported_models_base.BASE": ("set_inference_dtype",),
    "comfy.latent_formats": ("SD15",),
    "comfy.ops": ("pick_operations", "manual_cast", "disable_weight_init"),
    "comfy.clip_vision": ("ClipVisionModel", "convert_to_transformers"),
    "comfy.clip_vision.ClipVisionModel": ("load_sd",),
    "comfy.utils": ("ProgressBar",),
    "comfy.utils.ProgressBar": ("update_absolute",),
    "comfy.sd": ("VAE",),
    "comfy.sd.VAE": ("encode", "decode"),
    "comfy.ldm.modules.attention": ("optimized_attention",),
    "latent_preview": ("get_previewer",),
    "folder_paths": ("add_model_folder_path", "get_filename_list", "get_folder_paths", "get_full_path", "models_dir",
                     "get_output_directory", "get_temp_directory"),
}

__all__ = ["ComfyExtension", "io", "ui", "InputImpl", "Types", "core_patcher_class", "make_patcher", "is_dynamic",
           "dynamic_vram_enabled", "archive_model_dtypes", "clip_vision_config", "COMFY_SYMBOLS"]
