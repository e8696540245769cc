"""House rules for ``nodes/`` (style.md sections 2, 7-9), read from the source with ``ast`` (no ComfyUI needed):
sizes (module 400, function 60, node ``execute`` 25 lines), no cross-module private names, node ids
``SV4D_<Verb><Noun>``, categories ``SV4D/<stage>``, a tooltip on every input and output, every node module listed."""
from __future__ import annotations

import ast
import re

from test_architecture import REPO, oversized, private_uses, tree_sources

NODES = tree_sources("nodes")
EXECUTE_LINES = 25


def _calls(tree, attr: str):
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr == attr]


def _keyword(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def test_rules_see_the_node_modules():
    assert {"nodes", "nodes.loaders", "nodes.sampling", "nodes.comfy_bridge"} <= set(NODES)


def test_sizes_and_private_names():
    assert oversized(NODES) == []
    assert private_uses(NODES) == []
    long_execute = []
    for name, (src, _) in NODES.items():
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.FunctionDef) and node.name == "execute":
                if node.end_lineno - node.lineno + 1 > EXECUTE_LINES:
                    long_execute.append(f"{name}:{node.lineno}")
    assert long_execute == []


def test_node_ids_categories_and_tooltips():
    ids, missing_tooltips = [], []
    for name, (src, _) in NODES.items():
        tree = ast.parse(src)
        for call in _calls(tree, "Schema"):
            node_id, category = (_keyword(call, k) for k in ("node_id", "category"))
            ids.append(node_id.value)
            assert re.fullmatch(r"SV4D_[A-Z][a-z]+[A-Z0-9][A-Za-z0-9]*", node_id.value), node_id.value
            assert re.fullmatch(r"SV4D/[a-z]+", category.value), category.value
            assert _keyword(call, "description") is not None, node_id.value
        for call in _calls(tree, "Input") + _calls(tree, "Output"):
            if _keyword(call, "tooltip") is None:
                missing_tooltips.append(f"{name}:{call.lineno}")
    assert missing_tooltips == []
    assert len(ids) == len(set(ids)) >= 11


def test_every_node_module_is_registered():
    package = ast.parse((REPO / "nodes" / "__init__.py").read_text(encoding="utf-8"))
    listed = next(ast.literal_eval(n.value) for n in ast.walk(package) if isinstance(n, ast.AnnAssign)
                  and getattr(n.target, "id", "") == "NODE_MODULES")
    with_nodes = {name.split(".")[1] for name, (src, _) in NODES.items() if "\nNODES = [" in src}
    assert set(listed) == with_nodes
