"""Dependency direction (DEVELOPERS.md): only nodes/ and the root __init__ touch ComfyUI; the library stays light."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMFY_MODULES = {"comfy", "comfy_api", "comfy_extras", "folder_paths", "server", "execution", "nodes"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_library_and_trainer_never_import_comfyui():
    offenders = []
    for folder in ("sv4d_models", "train", "benchmarks"):
        for path in (REPO / folder).rglob("*.py"):
            bad = _imports(path) & COMFY_MODULES
            if bad:
                offenders.append(f"{path.relative_to(REPO)}: {sorted(bad)}")
    assert not offenders, offenders


def test_trainer_never_imports_nodes():
    for path in (REPO / "train").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "nodes":
                raise AssertionError(f"{path} imports nodes/")


def test_import_is_light_and_comfy_free():
    code = ("import sys, sv4d_models, sv4d_models.sampling, sv4d_models.camera\n"
            "heavy = sorted(m for m in ('open_clip', 'trimesh', 'mcubes', 'imageio', 'av', 'comfy', 'comfy_api', 'folder_paths') if m in sys.modules)\n"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing sv4d_models pulled in: {out.stdout.strip()}"


def test_root_entry_point_imports_without_comfyui():
    """The pack's __init__ must import as ComfyUI does (as a package) even when ComfyUI is absent."""
    code = ("import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('ComfyUI-SV4D', r'{REPO / '__init__.py'}', "
            f"submodule_search_locations=[r'{REPO}'])\n"
            "mod = importlib.util.module_from_spec(spec); sys.modules[spec.name] = mod; spec.loader.exec_module(mod)\n"
            "import inspect; print(inspect.iscoroutinefunction(mod.comfy_entrypoint))")
    out = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"
