"""ComfyUI-SV4D core library: pure PyTorch, importable without ComfyUI.

Public names are imported lazily so that ``import sv4d_models`` stays cheap (no open_clip, no trimesh).
"""
from __future__ import annotations

import importlib

_EXPORTS: dict[str, str] = {  # public name -> module that defines it
    "build_unet": ".unet",
    "SV4DUNet": ".unet",
    "UNetConfig": ".config",
    "official_config": ".config",
    "load_unet": ".checkpoint",
    "infer_model_kind": ".checkpoint",
    "set_attention_backend": ".attention",
    "Cameras": ".camera",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(_EXPORTS[name], __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'sv4d_models' has no attribute {name!r}")
