"""ComfyUI entry point for ComfyUI-SV4D. The library itself lives in ``sv4d_models`` (no ComfyUI needed)."""
from .nodes import comfy_entrypoint

__all__ = ["comfy_entrypoint"]
