"""ComfyUI V3 nodes of ComfyUI-SV4D (thin wrappers over ``sv4d_models``).

Importing this package never imports ComfyUI: ``comfy_api`` is imported inside ``comfy_entrypoint`` so that
``pytest`` (which imports the pack's root ``__init__.py``) works without ComfyUI. Node modules are optional:
one that fails to import is logged and skipped, the rest of the pack still loads.
"""
from __future__ import annotations

import importlib
import logging

log = logging.getLogger("sv4d")

# Node modules, each exporting NODES: list[type[io.ComfyNode]]. The ComfyUI integration issue fills this in.
NODE_MODULES: tuple[str, ...] = ()


def load_node_classes() -> list[type]:
    """Import every node module; a failing optional module is logged, not fatal."""
    classes: list[type] = []
    for name in NODE_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ImportError:
            log.warning("ComfyUI-SV4D: node module %s could not be imported; its nodes are unavailable", name, exc_info=True)
            continue
        classes.extend(module.NODES)
    return classes


async def comfy_entrypoint():
    """ComfyUI's V3 extension hook."""
    from comfy_api.latest import ComfyExtension

    class SV4DExtension(ComfyExtension):
        async def get_node_list(self) -> list[type]:
            return load_node_classes()

    return SV4DExtension()
