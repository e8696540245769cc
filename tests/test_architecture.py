"""The house rules (DEVELOPERS.md, style.md sections 7-9), checked on the code's own imports and definitions.

Each rule is a function over ``{module name: source text}`` so that it can be run on the real tree and on a
planted violation (every rule has a case proving it fails). Function-level imports count like top-level ones.
"""
from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMFY_MODULES = {"comfy", "comfy_api", "comfy_extras", "folder_paths", "server", "execution", "nodes"}
NETWORK_MODULES = ("sv4d_models.unet", "sv4d_models.attention", "sv4d_models.layers", "sv4d_models.encoders",
                   "sv4d_models.checkpoint", "sv4d_models.nerf")
DIFFUSION_MODULES = ("sv4d_models.sampling", "sv4d_models.pipeline", "sv4d_models.unet", "sv4d_models.attention",
                     "sv4d_models.layers", "sv4d_models.encoders", "sv4d_models.checkpoint")
MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 60


# ---- reading the tree --------------------------------------------------------------------------------
def tree_sources(folder: str) -> dict[str, tuple[str, bool]]:
    """``{dotted module name: (source, is_package)}`` of every .py file under ``REPO / folder``."""
    out = {}
    for path in sorted((REPO / folder).rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        is_pkg = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_pkg else parts)
        out[name] = (path.read_text(encoding="utf-8"), is_pkg)
    return out


def imports_of(name: str, source: str, is_pkg: bool, known: set[str]) -> set[str]:
    """Absolute names of everything ``source`` imports (any depth of the AST), resolved against ``known`` modules."""
    package = name if is_pkg else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in known)
    return found


def import_graph(sources: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
    known = set(sources)
    return {name: {m for m in imports_of(name, src, pkg, known) if m in known and m != name}
            for name, (src, pkg) in sources.items()}


# ---- the rules ---------------------------------------------------------------------------------------
def import_cycles(sources) -> list[list[str]]:
    """Every cycle of the module import graph (one representative per strongly connected component)."""
    graph, index, low, stack, on, out = import_graph(sources), {}, {}, [], set(), []

    def visit(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def forbidden_imports(sources, banned) -> list[str]:
    """``module -> import`` pairs where a module imports anything under one of the ``banned`` prefixes."""
    known = set(sources)
    bad = []
    for name, (src, pkg) in sources.items():
        for imp in imports_of(name, src, pkg, known):
            if any(imp == b or imp.startswith(b + ".") for b in banned):
                bad.append(f"{name} -> {imp}")
    return sorted(bad)


def private_uses(sources) -> list[str]:
    """Uses of another project module's ``_private`` names: ``from m import _x`` and ``alias._x`` on an imported
    project module (dunders excepted)."""
    known, bad = set(sources), []
    for name, (src, pkg) in sources.items():
        tree = ast.parse(src)
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                targets = imports_of(name, ast.unparse(node), pkg, known)
                for a in node.names:
                    full = next((t for t in targets if t.endswith("." + a.name)), None)
                    if full in known:
                        aliases[a.asname or a.name] = full
                    elif a.name.startswith("_") and not a.name.startswith("__") and targets & known:
                        bad.append(f"{name}: from {sorted(targets & known)[0]} import {a.name}")
            elif isinstance(node, ast.Import):
                aliases.update({(a.asname or a.name): a.name for a in node.names if a.name in known})
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
                if node.attr.startswith("_") and not node.attr.startswith("__"):
                    bad.append(f"{name}: {aliases[node.value.id]}.{node.attr}")
    return sorted(bad)


def oversized(sources) -> list[str]:
    """Modules over MAX_FILE_LINES lines and functions over MAX_FUNCTION_LINES lines."""
    bad = []
    for name, (src, _) in sources.items():
        if src.count("\n") > MAX_FILE_LINES:
            bad.append(f"{name}: {src.count(chr(10))} lines")
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    bad.append(f"{name}.{node.name}: {length} lines")
    return bad


# ---- the real tree -----------------------------------------------------------------------------------
LIBRARY = tree_sources("sv4d_models")


def test_no_import_cycles_in_the_library():
    assert import_cycles(LIBRARY) == []


def test_only_nodes_and_the_root_entry_point_import_comfyui():
    for folder in ("sv4d_models", "train", "benchmarks", "scripts"):
        if (REPO / folder).is_dir():
            assert forbidden_imports(tree_sources(folder), COMFY_MODULES) == [], folder


def test_trainer_never_imports_nodes():
    if (REPO / "train").is_dir():
        sources = {**tree_sources("train"), **tree_sources("nodes")}
        assert [b for b in forbidden_imports(sources, {"nodes"}) if b.startswith("train")] == []


def test_sampling_imports_no_network_code():
    assert [b for b in forbidden_imports(LIBRARY, NETWORK_MODULES) if b.startswith("sv4d_models.sampling")] == []


def test_nerf_imports_no_diffusion_code():
    assert [b for b in forbidden_imports(LIBRARY, DIFFUSION_MODULES) if b.startswith("sv4d_models.nerf")] == []


def test_no_module_uses_another_modules_private_names():
    assert private_uses(LIBRARY) == []


def test_module_and_function_sizes():
    assert oversized(LIBRARY) == []


# ---- planted violations: each rule can fail ----------------------------------------------------------
def _plant(**modules: str) -> dict[str, tuple[str, bool]]:
    return {name.replace("__", "."): (src, False) for name, src in modules.items()}


def test_planted_cycle_is_found():
    found = import_cycles(_plant(pkg__a="def f():\n    from . import b\n", pkg__b="from .a import f\n"))
    assert found == [["pkg.a", "pkg.b"]]  # a function-level import closes the cycle


def test_planted_comfy_import_is_found():
    assert forbidden_imports(_plant(pkg__a="def f():\n    import comfy.model_management\n"), COMFY_MODULES) == \
        ["pkg.a -> comfy.model_management"]


def test_planted_nodes_import_in_train_is_found():
    assert forbidden_imports(_plant(train__train="from nodes.loaders import X\n"), {"nodes"}) == \
        ["train.train -> nodes.loaders"]


def test_planted_network_import_in_sampling_is_found():
    planted = {**LIBRARY, **_plant(sv4d_models__sampling__bad="from ..unet import build_unet\n")}
    assert [b for b in forbidden_imports(planted, NETWORK_MODULES) if b.startswith("sv4d_models.sampling")] == \
        ["sv4d_models.sampling.bad -> sv4d_models.unet"]


def test_planted_diffusion_import_in_nerf_is_found():
    planted = {**LIBRARY, **_plant(sv4d_models__nerf__bad="def f():\n    from ..sampling import get_sigmas_edm\n")}
    assert [b for b in forbidden_imports(planted, DIFFUSION_MODULES) if b.startswith("sv4d_models.nerf")] == \
        ["sv4d_models.nerf.bad -> sv4d_models.sampling"]


def test_planted_private_use_is_found():
    planted = _plant(pkg__a="def _helper():\n    pass\n", pkg__b="from .a import _helper\n",
                     pkg__c="from . import a\nx = a._helper\n")
    assert private_uses(planted) == ["pkg.b: from pkg.a import _helper", "pkg.c: pkg.a._helper"]


def test_planted_oversize_is_found():
    long_fn = "def f():\n" + "    x = 1\n" * 61
    assert oversized(_plant(pkg__a=long_fn)) == ["pkg.a.f: 62 lines"]


# ---- import behaviour ---------------------------------------------------------------------------------
def test_public_names_are_not_shadowed_by_submodules():
    """``from sv4d_models import X`` gives the object, even after every submodule was imported (a lazy export
    named like a submodule would be replaced by the module)."""
    import sv4d_models

    for info in pkgutil.walk_packages(sv4d_models.__path__, "sv4d_models."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    shadowed = [n for n in sv4d_models.__all__ if type(getattr(sv4d_models, n)).__name__ == "module"]
    assert shadowed == []


def test_import_is_light_and_comfy_free():
    code = ("import sys, sv4d_models, sv4d_models.sampling, sv4d_models.camera, sv4d_models.kinds\n"
            "heavy = sorted(m for m in ('open_clip', 'trimesh', 'mcubes', 'imageio', 'av', 'comfy', 'comfy_api', "
            "'folder_paths') if m in sys.modules)\n"
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


def test_rules_see_the_whole_library():
    """Guard against a silently empty scan (a wrong folder would make every rule pass)."""
    assert len(LIBRARY) > 40 and "sv4d_models.pipeline.stages" in LIBRARY
    assert import_graph(LIBRARY)["sv4d_models.pipeline.stages"] >= {"sv4d_models.sampling", "sv4d_models.camera"}


def test_reference_data_is_in_the_repository_and_shared_is_required_under_ci(monkeypatch, tmp_path):
    """A fresh clone runs the parity tests from tests/data; a test that needs ../shared fails (not skips) in CI."""
    import pytest

    from conftest import PARITY, REFERENCE, require_shared

    assert (PARITY / "fixture_a" / "expected_output.safetensors").is_file()
    assert (REFERENCE / "sv4d_unet_keys.json").is_file() and (REFERENCE / "PROVENANCE.md").is_file()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_shared(tmp_path / "missing")
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception):
        require_shared(tmp_path / "missing")
