"""The pack's contact surface with ComfyUI: every ComfyUI name it uses resolves (``nodes/compat.py`` lists them),
the node API comes from the pinned ``comfy_api.v0_0_2``, and the loader node resolves the model kind with the
library's resolver and says in its text output when it only guessed."""
from __future__ import annotations

import ast
import importlib

import pytest

from comfyui_env import REPO, comfy_in_process, pack_module
from conftest import official_layout
from sv4d_models.tiny_checkpoint import write_tiny_checkpoint

pytestmark = pytest.mark.comfyui


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    mm = comfy_in_process()
    import folder_paths

    d = tmp_path_factory.mktemp("compat")
    tiny = write_tiny_checkpoint(d / "tiny.safetensors", "sv4d2_8views", seed=4)
    official_layout(tiny, d / "checkpoints" / "sv4d2_8views.safetensors")
    official_layout(tiny, d / "checkpoints" / "sv4d2_compat_renamed.safetensors")
    folder_paths.add_model_folder_path("checkpoints", str(d / "checkpoints"))
    return mm


def resolve(dotted: str):
    """``a.b.C`` -> the object: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


def test_every_comfyui_name_the_pack_uses_resolves(comfy):
    symbols = pack_module("nodes.compat").COMFY_SYMBOLS
    missing = [f"{owner}.{name}" for owner, names in symbols.items() for name in names
               if not hasattr(resolve(owner), name)]
    assert not missing, f"ComfyUI names the pack uses are gone: {missing}"


COMFY_TOP = ("comfy", "comfy_api", "comfy_extras", "comfy_execution", "folder_paths", "latent_preview", "server",
             "execution", "node_helpers")


def test_the_list_covers_every_comfyui_module_the_pack_imports():
    """No ComfyUI module is imported outside the list (so a new use cannot skip it), and node modules take the node
    API only through compat (``comfy_api.v0_0_2``), never from ``comfy_api.latest``."""
    listed = set(ast.literal_eval(_symbols_source()))
    for path in sorted([*(REPO / "nodes").glob("*.py"), REPO / "__init__.py"]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in (n for n in names if n.split(".")[0] in COMFY_TOP):
                assert name != "comfy_api.latest", f"{path.name} imports comfy_api.latest; use nodes/compat.py"
                assert any(k == name or k.startswith(name + ".") for k in listed), \
                    f"{path.name} imports {name}, which nodes/compat.py COMFY_SYMBOLS does not list"


def _symbols_source() -> str:
    tree = ast.parse((REPO / "nodes" / "compat.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "COMFY_SYMBOLS":
            return ast.unparse(node.value)
    raise AssertionError("nodes/compat.py has no COMFY_SYMBOLS")


def test_node_api_is_the_pinned_version(comfy):
    compat = pack_module("nodes.compat")
    import comfy_api.v0_0_2 as pinned

    assert compat.io is pinned.io and compat.ui is pinned.ui and compat.ComfyExtension is pinned.ComfyExtension


def test_loader_node_runs_the_official_8_view_name_as_8_views_and_warns_when_renamed(comfy):
    loaders = pack_module("nodes.loaders")
    model, _, _, info = loaders.load_checkpoint("sv4d2_8views.safetensors")
    assert model.model.sv4d_kind == "sv4d2_8views" and not model.model.diffusion_model.config.use_3d_attention
    assert "official file name" in info and "WARNING" not in info
    out = loaders.CheckpointLoader.execute("sv4d2_compat_renamed.safetensors", "auto", "default")
    assert out.result[0].model.sv4d_kind == "sv4d2"
    text = out.result[3]
    assert text.startswith("WARNING: sv4d2_compat_renamed.safetensors") and "model_kind" in text
    assert out.ui is not None  # shown on the node
    chosen = loaders.load_checkpoint("sv4d2_compat_renamed.safetensors", "sv4d2_8views")
    assert chosen[0].model.sv4d_kind == "sv4d2_8views" and "requested" in chosen[3]
