"""The pack's workflows: their definition (one spec -> UI file + API twin), UI -> API conversion and a validator
that needs no ComfyUI (it reads ``tests/data/comfyui_object_info.json``, a ``/object_info`` snapshot of every node
type the workflows use, kept equal to a live ComfyUI by ``test_comfyui_server.py``).

    python tests/comfyui_workflows.py       # rewrite workflows/*.json and example_workflows/*.json from the specs
"""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAPSHOT = REPO / "tests" / "data" / "comfyui_object_info.json"
WORKFLOWS, EXAMPLES = REPO / "workflows", REPO / "example_workflows"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
FILE_COMBOS = {("LoadVideo", "file"), ("ImageOnlyCheckpointLoader", "ckpt_name"), ("SV4D_CheckpointLoader", "ckpt_name"),
               ("SV4DTest_TinySV3DLoader", "ckpt_name")}  # options depend on the files of an install
EXTRA_WIDGETS = {"LoadVideo": ["image"], "Preview3D": [""]}  # frontend-only widgets after the schema's ones
API_EXTRAS = {"Preview3D": {"image": ""}}  # frontend-only widgets the frontend also puts into the API prompt
OFFICIAL_FILES = {"sv4d.safetensors", "sv4d2.safetensors", "sv4d2_8views.safetensors", "sv3d_u.safetensors",
                  "sv3d_p.safetensors"}
INPUT_VIDEO = "sv4d_input.mp4"


# ---- schemas ----------------------------------------------------------------------------------------
def load_schemas() -> dict:
    return json.loads(SNAPSHOT.read_text(encoding="utf-8"))


def normalize_info(info: dict, types) -> dict:
    """The snapshot form of ``/object_info``: only ``types``, install-dependent file lists emptied."""
    out = {}
    for name in sorted(types):
        entry = copy.deepcopy(info[name])
        for group in ("required", "optional"):
            for key, spec in entry.get("input", {}).get(group, {}).items():
                if (name, key) in FILE_COMBOS:
                    entry["input"][group][key] = ["COMBO", {"options": []}]
        out[name] = {k: entry[k] for k in ("display_name", "input", "input_order", "output", "output_is_list", "output_name",
                                           "output_node", "output_tooltips", "category", "description") if k in entry}
    return out


def input_spec(schema: dict, name: str):
    for group in ("required", "optional"):
        if name in schema["input"].get(group, {}):
            return schema["input"][group][name]
    return None


def input_type(spec) -> str:
    return "COMBO" if isinstance(spec[0], list) else spec[0]


def widgets(schema: dict) -> list[tuple[str, bool]]:
    """``(name, has control_after_generate)`` of every widget input, in the frontend's order."""
    order = schema.get("input_order", {})
    names = order.get("required", []) + order.get("optional", [])
    out = []
    for name in names:
        spec = input_spec(schema, name)
        if spec is not None and input_type(spec) in WIDGET_TYPES:
            opts = spec[1] if len(spec) > 1 else {}  # the frontend adds a control to any INT named seed / noise_seed
            control = opts.get("control_after_generate", input_type(spec) == "INT" and name in ("seed", "noise_seed"))
            out.append((name, bool(control)))
    return out


def sockets(schema: dict) -> list[tuple[str, str, bool]]:
    """``(name, type, optional)`` of every socket (non-widget) input."""
    out = []
    for group in ("required", "optional"):
        for name in schema.get("input_order", {}).get(group, []):
            spec = input_spec(schema, name)
            if input_type(spec) not in WIDGET_TYPES:
                out.append((name, input_type(spec), group == "optional"))
    return out


def accepts(target: str, source: str) -> bool:
    """ComfyUI's link rule: '*' matches anything, comma-separated types are unions."""
    if "*" in (target, source):
        return True
    return bool(set(target.split(",")) & set(source.split(",")))


# ---- UI -> API ---------------------------------------------------------------------------------------
def ui_to_api(ui: dict, schemas: dict) -> dict:
    """The API prompt the frontend would queue for a UI workflow (active nodes only)."""
    links = {link[0]: link for link in ui["links"]}
    api = {}
    for node in ui["nodes"]:
        if node.get("mode", 0) != 0:
            continue
        schema, values = schemas[node["type"]], list(node.get("widgets_values", []))
        inputs, linked = {}, {}
        for slot in node.get("inputs", []):
            if slot.get("link") is not None:
                _, src, src_slot, *_ = links[slot["link"]]
                linked[slot["name"]] = [str(src), src_slot]
        for name, control in widgets(schema):
            value = values.pop(0) if values else None
            if control and values:
                values.pop(0)
            inputs[name] = linked.pop(name, value)
        inputs.update(linked)
        inputs.update(API_EXTRAS.get(node["type"], {}))
        api[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return api


# ---- validation ----------------------------------------------------------------------------------------
def _check_widget(node_type: str, name: str, spec, value) -> str | None:
    kind, opts = input_type(spec), (spec[1] if len(spec) > 1 else {})
    if isinstance(value, list):
        return None  # linked
    if kind == "COMBO":
        options = spec[0] if isinstance(spec[0], list) else opts.get("options", [])
        if (node_type, name) in FILE_COMBOS:
            ok = value in OFFICIAL_FILES or value == INPUT_VIDEO
            return None if ok else f"{node_type}.{name}={value!r} is not an official file name"
        return None if value in options else f"{node_type}.{name}={value!r} not in {options}"
    if kind in ("INT", "FLOAT"):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or (kind == "INT" and value != int(value)):
            return f"{node_type}.{name}={value!r} is not an {kind}"
        lo, hi = opts.get("min"), opts.get("max")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            return f"{node_type}.{name}={value} outside [{lo}, {hi}]"
    if kind == "STRING" and not isinstance(value, str):
        return f"{node_type}.{name}={value!r} is not a string"
    if kind == "BOOLEAN" and not isinstance(value, bool):
        return f"{node_type}.{name}={value!r} is not a boolean"
    return None


def validate_api(api: dict, schemas: dict) -> list[str]:
    """Node types exist, links point at existing outputs of matching type, widgets in range, required inputs set."""
    errors = []
    for nid, node in api.items():
        schema = schemas.get(node["class_type"])
        if schema is None:
            errors.append(f"node {nid}: unknown type {node['class_type']}")
            continue
        for group in ("required", "optional"):
            for name, spec in schema["input"].get(group, {}).items():
                value = node["inputs"].get(name)
                if value is None:
                    if group == "required":
                        errors.append(f"node {nid} {node['class_type']}: required input {name!r} is missing")
                    continue
                if isinstance(value, list):
                    src = api.get(value[0])
                    if src is None or value[1] >= len(schemas[src["class_type"]]["output"]):
                        errors.append(f"node {nid}.{name}: link to missing output {value}")
                    elif not accepts(input_type(spec), schemas[src["class_type"]]["output"][value[1]]):
                        errors.append(f"node {nid}.{name}: {schemas[src['class_type']]['output'][value[1]]} into "
                                      f"{input_type(spec)}")
                elif input_type(spec) in WIDGET_TYPES:
                    errors.append(_check_widget(node["class_type"], name, spec, value))
        unknown = (set(node["inputs"]) - set(schema["input"].get("required", {})) - set(schema["input"].get("optional", {}))
                   - set(API_EXTRAS.get(node["class_type"], {})))
        errors += [f"node {nid} {node['class_type']}: unknown input {u!r}" for u in sorted(unknown)]
    return [e for e in errors if e]


def validate_ui(ui: dict, schemas: dict) -> list[str]:
    """Every link's recorded type equals its source output's and fits its target input; slots exist."""
    errors, nodes = [], {n["id"]: n for n in ui["nodes"]}
    for link_id, src, src_slot, dst, dst_slot, typ in ui["links"]:
        a, b = nodes.get(src), nodes.get(dst)
        if a is None or b is None:
            errors.append(f"link {link_id}: missing node")
            continue
        out_type = schemas[a["type"]]["output"][src_slot]
        target = b["inputs"][dst_slot]
        if target.get("link") != link_id or link_id not in (a["outputs"][src_slot].get("links") or []):
            errors.append(f"link {link_id}: not recorded on both ends")
        if out_type != typ or not accepts(input_type(input_spec(schemas[b["type"]], target["name"])), typ):
            errors.append(f"link {link_id}: {a['type']} output {out_type} -> {b['type']}.{target['name']} ({typ})")
    return errors


if __name__ == "__main__":
    from comfyui_workflow_specs import write_all  # noqa: E402  (the specs live beside this file)

    sys.exit(write_all())
