"""The three workflows as data: one spec each -> the UI file (what ComfyUI's editor saves) and its API twin.

Widget values are the official settings (SV4D: 20 steps, cfg 2.0 -> 1.0, 21 frames at 576 px; SV4D 2.0: 50 steps);
checkpoint names are the official file names.
"""
from __future__ import annotations

import json
import uuid

from comfyui_workflows import (API_EXTRAS, EXAMPLES, EXTRA_WIDGETS, INPUT_VIDEO, WORKFLOWS, load_schemas, sockets,
                              widgets)

GROUPS = {  # stage -> (title, colour)
    "input": ("1 · input video", "#3f789e"), "reference": ("2 · reference orbit (SV3D)", "#8A8"),
    "sampling": ("3 · SV4D sampling", "#a1309b"), "grid": ("4 · image matrix and videos", "#b58b2a"),
    "recon": ("5 · 4D reconstruction", "#88A"), "export": ("6 · export and 3D preview", "#3f789e"),
}
COLUMN_X = {"input": 0, "reference": 360, "sampling": 720, "grid": 1080, "recon": 1440, "export": 1800}
SIZES = {"Preview3D": [320, 420]}  # the 3D viewer needs room
ORBIT = {"seed": 23, "steps": 20, "elevation_deg": 10.0, "elevations_deg": "", "azimuths_deg": ""}
SV4D_SAMPLING = {"seed": 23, "steps": 20, "cfg": 2.0, "min_cfg": 1.0}
SV4D2_SAMPLING = {"seed": 23, "steps": 50, "cfg": 2.0, "min_cfg": 1.0}
PREPARE = {"size": 576, "max_frames": 21, "image_frame_ratio": 0.917}
GRID = {"fps": 10.0, "grid_cell_size": 128}


def _front(stage_prepare: dict) -> list:
    """Nodes 1-2: the input video and its preparation."""
    return [(1, "LoadVideo", "input", {"file": INPUT_VIDEO}, {}),
            (2, "SV4D_PrepareVideo", "input", stage_prepare, {"video": (1, 0)})]


def _sv3d() -> list:
    """Nodes 3-5: core SV3D loader, the reference orbit, its preview."""
    return [(3, "ImageOnlyCheckpointLoader", "reference", {"ckpt_name": "sv3d_u.safetensors"}, {}),
            (4, "SV4D_SampleReferenceOrbit", "reference", ORBIT,
             {"video": (2, 0), "model": (3, 0), "clip_vision": (3, 1), "vae": (3, 2)}),
            (5, "PreviewImage", "reference", {}, {"images": (4, 0)})]


def _loader(ckpt: str) -> tuple:
    return (6, "SV4D_CheckpointLoader", "sampling", {"ckpt_name": ckpt, "model_kind": "auto",
                                                     "weight_dtype": "default"}, {})


def _models(node: int = 6) -> dict:
    return {"model": (node, 0), "clip_vision": (node, 1), "vae": (node, 2)}


def _grid(passes_from: int, prefix: str) -> list:
    """Nodes 9-11: the matrix, one saved video per view, the grid image."""
    return [(9, "SV4D_AssembleGrid", "grid", GRID, {"passes": (passes_from, 0)}),
            (10, "SaveVideo", "grid", {"filename_prefix": f"{prefix}/view", "format": "auto", "codec": "auto"},
             {"video": (9, 2)}),
            (11, "SaveImage", "grid", {"filename_prefix": f"{prefix}/grid"}, {"images": (9, 1)})]


def full() -> list:
    """Video -> orbit -> anchors -> dense -> grid -> videos -> NeRF -> turntable + export -> Preview3D."""
    return [*_front(PREPARE), *_sv3d(), _loader("sv4d.safetensors"),
            (7, "SV4D_SampleAnchors", "sampling", {**SV4D_SAMPLING, "mode": "auto"},
             {**_models(), "video": (2, 0), "orbit": (4, 0), "cameras": (4, 1)}),
            (8, "SV4D_SampleDense", "sampling", SV4D_SAMPLING, {**_models(), "passes": (7, 0)}),
            *_grid(8, "sv4d"),
            (12, "SV4D_FitNeRF", "recon", {"preset": "cpu", "nerf_seed": 0, "mask_threshold": 0.97}, {"matrix": (9, 4)}),
            (13, "SV4D_RenderTurntable", "recon", {"frames": 0, "size": 0, "fps": 10.0}, {"nerf": (12, 0)}),
            (14, "SaveVideo", "recon", {"filename_prefix": "sv4d/turntable", "format": "auto", "codec": "auto"},
             {"video": (13, 1)}),
            (15, "SV4D_ExportAsset", "export", {"filename_prefix": "sv4d/asset", "mesh_resolution": 0,
                                               "mesh_threshold": 0.0, "fps": 10.0, "mesh_format": "ply"},
             {"nerf": (12, 0)}),
            (16, "Preview3D", "export", {"model_file": ""}, {"model_file": (15, 0)})]


def novel_views() -> list:
    """Video -> orbit -> the one-box SV4D Sampler -> grid -> per-view videos (no reconstruction)."""
    return [*_front(PREPARE), *_sv3d(), _loader("sv4d.safetensors"),
            (7, "SV4D_SampleVideo", "sampling", {**SV4D_SAMPLING, "mode": "auto"},
             {**_models(), "video": (2, 0), "orbit": (4, 0), "cameras": (4, 1)}),
            *_grid(7, "sv4d")]


def sv4d2_novel_views() -> list:
    """SV4D 2.0: video -> autoregressive windows (no SV3D stage) -> grid -> per-view videos."""
    return [*_front({**PREPARE, "image_frame_ratio": 0.9}), _loader("sv4d2.safetensors"),
            (7, "SV4D_SampleAnchors", "sampling", {**SV4D2_SAMPLING, "mode": "auto"}, {**_models(), "video": (2, 0)}),
            *_grid(7, "sv4d2")]


SPECS = {"sv4d_full": full, "sv4d_novel_views": novel_views, "sv4d2_novel_views": sv4d2_novel_views}


# ---- building -------------------------------------------------------------------------------------
def to_api(spec: list, schemas: dict) -> dict:
    api = {}
    for nid, typ, _, values, links in spec:
        inputs = {name: values[name] for name, _ in widgets(schemas[typ]) if name in values}
        inputs.update({name: [str(src), slot] for name, (src, slot) in links.items()})
        inputs.update(API_EXTRAS.get(typ, {}))
        api[str(nid)] = {"class_type": typ, "inputs": inputs,
                         "_meta": {"title": schemas[typ].get("display_name", typ)}}
    return api


def _ui_node(nid: int, typ: str, schema: dict, values: dict, in_links: dict, out_links: dict, pos, order: int) -> dict:
    widget_names = {w for w, _ in widgets(schema)}
    inputs = [{"name": n, "type": t, "link": in_links.get(n), **({"shape": 7} if opt else {})}
              for n, t, opt in sockets(schema)]
    inputs += [{"name": n, "type": "STRING", "widget": {"name": n}, "link": in_links[n]}
               for n in in_links if n in widget_names]
    outputs = [{"name": name, "type": t, "links": out_links.get(i, []), "slot_index": i,
                **({"shape": 6} if schema["output_is_list"][i] else {})}
               for i, (name, t) in enumerate(zip(schema["output_name"], schema["output"]))]
    wv = []
    for name, control in widgets(schema):
        wv.append(values.get(name, ""))
        if control:
            wv.append("fixed")
    size = SIZES.get(typ, [320, 30 + 20 * max(len(inputs), len(outputs)) + 24 * len(wv)])
    return {"id": nid, "type": typ, "pos": pos, "size": size, "flags": {}, "order": order,
            "mode": 0, "inputs": inputs, "outputs": outputs, "properties": {"Node name for S&R": typ},
            "widgets_values": wv + EXTRA_WIDGETS.get(typ, [])}


def to_ui(spec: list, schemas: dict, name: str) -> dict:
    links, in_links, out_links = [], {}, {}
    for nid, _, _, _, node_links in spec:
        for inp, (src, slot) in node_links.items():
            link_id = len(links) + 1
            typ = schemas[next(t for i, t, *_ in spec if i == src)]["output"][slot]
            links.append([link_id, src, slot, nid, None, typ])
            in_links.setdefault(nid, {})[inp] = link_id
            out_links.setdefault(src, {}).setdefault(slot, []).append(link_id)
    rows, nodes = {}, []
    for order, (nid, typ, stage, values, _) in enumerate(spec):
        y = rows.get(stage, 60)
        node = _ui_node(nid, typ, schemas[typ], values, in_links.get(nid, {}), out_links.get(nid, {}),
                        [COLUMN_X[stage], y], order)
        rows[stage] = y + node["size"][1] + 50
        nodes.append(node)
    by_id = {n["id"]: n for n in nodes}
    for link in links:  # target slot index = position among the target node's inputs
        link[4] = next(i for i, s in enumerate(by_id[link[3]]["inputs"]) if s["link"] == link[0])
    groups = [{"title": GROUPS[s][0], "bounding": [COLUMN_X[s] - 15, 0, 350, rows[s] - 20], "color": GROUPS[s][1],
               "font_size": 22, "flags": {}} for s in COLUMN_X if s in rows]
    return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"comfyui-sv4d/{name}")), "revision": 0, "last_node_id": max(by_id), "last_link_id": len(links),
            "nodes": nodes, "links": links, "groups": groups, "config": {},
            "extra": {"ds": {"scale": 0.86, "offset": [15, 25]}, "frontendVersion": "1.27.10"}, "version": 0.4}


def build(name: str, schemas: dict | None = None) -> tuple[dict, dict]:
    schemas = schemas or load_schemas()
    spec = SPECS[name]()
    return to_ui(spec, schemas, name), to_api(spec, schemas)


def write_all() -> int:
    schemas = load_schemas()
    for folder in (WORKFLOWS, EXAMPLES):
        folder.mkdir(exist_ok=True)
    for name in SPECS:
        ui, api = build(name, schemas)
        text = json.dumps(ui, indent=1) + "\n"
        (WORKFLOWS / f"{name}.json").write_text(text, encoding="utf-8")
        (EXAMPLES / f"{name}.json").write_text(text, encoding="utf-8")
        (WORKFLOWS / f"{name}_api.json").write_text(json.dumps(api, indent=1) + "\n", encoding="utf-8")
        print(f"wrote workflows/{name}.json, workflows/{name}_api.json, example_workflows/{name}.json")
    return 0
