"""ComfyUI V3 nodes of ComfyUI-SV4D (thin wrappers over ``sv4d_models``).

Importing this package never imports ComfyUI: ``compat`` (``comfy_api.v0_0_2``) is imported inside ``comfy_entrypoint`` so that
``pytest`` (which imports the pack's root ``__init__.py``) works without ComfyUI. Node modules are optional:
one that fails to import is logged and skipped, the rest of the pack still loads.

ComfyUI does not put a custom node's folder on ``sys.path``; ``use_bundled_library`` registers the
``sv4d_models`` shipped beside this folder as the ``sv4d_models`` package (without adding the folder itself to
``sys.path``, where ``nodes/`` would shadow ComfyUI's ``nodes`` module).
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from pathlib import Path

log = logging.getLogger("sv4d")
LIBRARY = Path(__file__).resolve().parents[1] / "sv4d_models"


def use_bundled_library() -> None:
    """``import sv4d_models`` -> the copy beside ``nodes/`` (a copy imported earlier from elsewhere is kept, with a
    warning naming both)."""
    loaded = sys.modules.get("sv4d_models")
    if loaded is not None:
        where = Path(getattr(loaded, "__file__", "") or ".").resolve().parent
        if where != LIBRARY:
            log.warning("ComfyUI-SV4D: sv4d_models was already imported from %s, not from the pack (%s)", where, LIBRARY)
        return
    spec = importlib.util.spec_from_file_location("sv4d_models", LIBRARY / "__init__.py",
                                                  submodule_search_locations=[str(LIBRARY)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["sv4d_models"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["sv4d_models"]
        raise


use_bundled_library()

# Node modules, each exporting NODES: list[type[io.ComfyNode]], in the order of the menu (stage by stage).
NODE_MODULES: tuple[str, ...] = ("loaders", "inputs", "reference", "sampling", "grid", "reconstruction", "evaluate")


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
    from .compat import ComfyExtension

    class SV4DExtension(ComfyExtension):
        async def on_load(self) -> None:
            from .loaders import register_folder

            register_folder()

        async def get_node_list(self) -> list[type]:
            return load_node_classes()

    return SV4DExtension()
