"""One code path per stage, kept so: the pass-record format, the fit presets and the kind facts each live in one
module, and code outside ``sv4d_models/pipeline/`` uses the pipeline package's public names only. Each rule runs on
the real tree and on a planted violation (so a rule that cannot fail shows up)."""
from __future__ import annotations

import ast

from test_architecture import imports_of, tree_sources

OWNERS = {"pass record": "sv4d_models.pipeline.store", "fit preset": "sv4d_models.presets",
          "kind fact": "sv4d_models.kinds"}
KIND_LITERALS = (576, 21, 0.917)  # image size, official video length / SV3D orbit views, SV4D framing ratio
PRESET_NAMES = {"tiny", "cpu", "gpu"}
PIPELINE = "sv4d_models.pipeline"
# train/blender/ runs inside Blender's own Python, which cannot import the library: its defaults stay literal.
EXEMPT = ("train.blender",)


def tree(*folders: str) -> dict[str, tuple[str, bool]]:
    out = {}
    for folder in folders:
        out.update({k: v for k, v in tree_sources(folder).items() if not k.startswith(EXEMPT)})
    return out


def _nodes(sources):
    for name, (src, _) in sources.items():
        for node in ast.walk(ast.parse(src)):
            yield name, node


def pass_record_dicts(sources) -> list[str]:
    """Dict literals with the pass-record keys ``cells`` and ``writes`` outside the pass store."""
    bad = []
    for name, node in _nodes(sources):
        if isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
            if {"cells", "writes"} <= keys and name != OWNERS["pass record"]:
                bad.append(f"{name}:{node.lineno}")
    return bad


def preset_tables(sources) -> list[str]:
    """Tables keyed by two or more preset names, or a ``PRESETS`` binding, outside ``sv4d_models.presets``."""
    bad = []
    for name, node in _nodes(sources):
        if name == OWNERS["fit preset"]:
            continue
        if isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
            if len(keys & PRESET_NAMES) >= 2:
                bad.append(f"{name}:{node.lineno}")
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "PRESETS" for t in targets):
                bad.append(f"{name}:{node.lineno}")
    return sorted(bad)


def kind_literals(sources) -> list[str]:
    """The numbers ``KIND_LITERALS`` written anywhere but ``kinds.py`` (read them from ``KINDS`` / its constants)."""
    return [f"{name}:{node.lineno}: {node.value}" for name, node in _nodes(sources)
            if isinstance(node, ast.Constant) and type(node.value) in (int, float) and node.value in KIND_LITERALS
            and name != OWNERS["kind fact"]]


def pipeline_internals(sources) -> list[str]:
    """Imports of ``sv4d_models.pipeline.<module>`` from outside the package (use ``sv4d_models.pipeline``)."""
    known = set(sources) | {f"{PIPELINE}.{m}" for m in ("stages", "store", "loop", "models", "config", "inputs",
                                                        "result", "pipeline")}
    bad = []
    for name, (src, pkg) in sources.items():
        if name == PIPELINE or name.startswith(PIPELINE + "."):
            continue
        for imp in imports_of(name, src, pkg, known):
            if imp.startswith(PIPELINE + ".") and imp in known:
                bad.append(f"{name} -> {imp}")
    return sorted(bad)


REAL = tree("sv4d_models", "nodes", "train")
WITH_TOOLS = {**REAL, **tree("benchmarks", "scripts")}


def test_one_pass_record_format():
    assert pass_record_dicts(REAL) == []


def test_one_preset_table():
    assert preset_tables(REAL) == []


def test_kind_facts_only_in_kinds():
    assert kind_literals(REAL) == []


def test_pipeline_internals_stay_inside_the_package():
    assert pipeline_internals(WITH_TOOLS) == []


def _plant(**modules: str) -> dict[str, tuple[str, bool]]:
    return {k.replace("__", "."): (v, False) for k, v in modules.items()}


def test_planted_violations_are_found():
    planted = _plant(nodes__bad=(
        "from sv4d_models.pipeline.stages import sample_pass\n"
        "record = {'cells': 1, 'writes': [], 'seed': 3}\n"
        "SIZES = {'tiny': 1, 'gpu': 2}\n"
        "PRESETS = {}\n"
        "def f(size=576):\n    return 0.917 * size\n"))
    assert pass_record_dicts(planted) == ["nodes.bad:2"]
    assert preset_tables(planted) == ["nodes.bad:3", "nodes.bad:4"]
    assert kind_literals(planted) == ["nodes.bad:5: 576", "nodes.bad:6: 0.917"]
    assert pipeline_internals(planted) == ["nodes.bad -> sv4d_models.pipeline.stages"]
    owners = _plant(sv4d_models__kinds="X = 576\n", sv4d_models__pipeline__store="r = {'cells': 1, 'writes': 2}\n")
    assert kind_literals(owners) == [] and pass_record_dicts(owners) == []
