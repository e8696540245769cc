"""ComfyUI entry point for ComfyUI-SV4D. The library itself lives in ``sv4d_models`` (no ComfyUI needed)."""
# pytest (>= 8) imports this file without a parent package when the checkout's folder name is not a valid
# Python identifier (e.g. "ComfyUI-SV4D"); ComfyUI always imports it as a package.
if __package__:
    from .nodes import comfy_entrypoint

    __all__ = ["comfy_entrypoint"]
