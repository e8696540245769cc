"""The wrong-input catalogue, settings part: every trainer override (NaN, infinities, huge, a bool for a number, a
list for text) and every number widget of every ComfyUI node (NaN and infinities pass ComfyUI's own min / max check,
so the node refuses them before it runs). Each error names the setting."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bad_inputs_world import INF, NAN, snapshot, train_cfg


# ---- the trainer's overrides: every setting with NaN, inf, huge, a bool for a number, a list for text ----------------
def _train_override_cases() -> list:
    from train.config import TrainConfig

    cases = []
    for group in dataclasses.fields(TrainConfig):
        for f in dataclasses.fields(group.default_factory):
            key, kind = f"{group.name}.{f.name}", str(f.type)
            if kind in ("int", "float"):
                values = [".nan", ".inf", "-.inf", "1e30", "true", "[1, 2]"] + (["2.5"] if kind == "int" else [])
            elif kind == "bool":
                values = ["2", "[1]", "maybe"]
            elif kind == "str":
                values = ["[1, 2]", "{a: 1}"]
            else:  # tuples of numbers (betas, val_sigmas)
                values = ["[.nan, 0.9]", "[1, .inf]", "fast"]
            cases += [(f"{key}={value}", key, value) for value in values]
    return cases


TRAIN_CASES = _train_override_cases()


@pytest.mark.parametrize("name,key,value", TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES])
def test_trainer_override_is_refused_naming_the_key(name, key, value):
    with pytest.raises((ValueError, TypeError)) as info:
        train_cfg(f"{key}={value}")
    text = str(info.value)
    assert key in text and "Traceback" not in text, text


# ---- every number widget of every node: NaN / inf pass ComfyUI's own min/max check, so the node refuses them -----------
NODE_WIDGETS = {  # node id: {widget: (min, max, is_int)}; test_node_widget_table_is_complete keeps it equal to the schemas
    "SV4D_PrepareVideo": {"size": (16, 2048, True), "max_frames": (0, 4096, True), "image_frame_ratio": (0.05, 1.0, False)},
    "SV4D_SampleReferenceOrbit": {"seed": (0, 2**63 - 1, True), "steps": (1, 500, True), "elevation_deg": (-90.0, 90.0, False)},
    **{node: {"seed": (0, 2**63 - 1, True), "steps": (0, 500, True), "cfg": (0.0, 30.0, False), "min_cfg": (0.0, 30.0, False)}
       for node in ("SV4D_SampleAnchors", "SV4D_SampleDense", "SV4D_SampleVideo")},
    "SV4D_AssembleGrid": {"fps": (0.1, 120.0, False), "grid_cell_size": (0, 2048, True)},
    "SV4D_FitNeRF": {"nerf_seed": (0, 2**31 - 1, True), "mask_threshold": (0.5, 1.0, False)},
    "SV4D_RenderTurntable": {"frames": (0, 1000, True), "size": (0, 2048, True), "fps": (0.1, 120.0, False)},
    "SV4D_ExportAsset": {"mesh_resolution": (0, 512, True), "mesh_threshold": (0.0, 1000.0, False), "fps": (0.1, 120.0, False)},
    "SV4D_EvaluateMatrix": {"batch": (1, 64, True)},
}


def _node_widget_cases() -> list:
    cases = []
    for node, widgets in NODE_WIDGETS.items():
        for widget, (lo, hi, integer) in widgets.items():
            below, above = (lo - 1, hi + 1) if integer else (lo - 0.5, hi * 2 + 1)
            values = [NAN, INF, -INF, below, above, True] + ([2.5, "3"] if integer else ["0.5"])
            cases += [(f"{node}.{widget}={v!r}", node, widget, v) for v in values]
    return cases


NODE_CASES = _node_widget_cases()


@pytest.fixture(scope="module")
def node_classes():
    from comfyui_env import comfy_in_process, pack_module

    comfy_in_process()
    return {cls.define_schema().node_id: cls for cls in pack_module("nodes").load_node_classes()}


def test_node_widget_table_is_complete(node_classes):
    from comfyui_env import pack_module

    io = pack_module("nodes.compat").io
    found = {}
    for node_id, cls in node_classes.items():
        widgets = {i.id: (i.min, i.max, isinstance(i, io.Int.Input)) for i in cls.define_schema().inputs
                   if isinstance(i, (io.Int.Input, io.Float.Input))}
        if widgets:
            found[node_id] = widgets
    assert found == NODE_WIDGETS


@pytest.mark.parametrize("name,node,widget,value", NODE_CASES, ids=[c[0] for c in NODE_CASES])
def test_node_widget_is_refused_before_the_node_runs(node_classes, name, node, widget, value):
    import folder_paths

    outputs = [Path(folder_paths.get_output_directory()), Path(folder_paths.get_temp_directory())]
    before = [snapshot(p) if p.is_dir() else None for p in outputs]
    with pytest.raises((ValueError, TypeError)) as info:
        node_classes[node].execute(**{widget: value})
    text = str(info.value)
    assert f": {widget}={value!r} must be" in text and node_classes[node].define_schema().display_name in text, text
    assert [snapshot(p) if p.is_dir() else None for p in outputs] == before

