"""The shipped workflows, validated without ComfyUI against the ``/object_info`` snapshot
(``tests/data/comfyui_object_info.json``; ``test_comfyui_server.py`` keeps it equal to a live ComfyUI)."""
from __future__ import annotations

import json

import pytest

from comfyui_workflow_specs import SPECS, build
from comfyui_workflows import EXAMPLES, OFFICIAL_FILES, WORKFLOWS, load_schemas, ui_to_api, validate_api, validate_ui

SCHEMAS = load_schemas()


def _load(name: str) -> tuple[dict, dict]:
    return (json.loads((WORKFLOWS / f"{name}.json").read_text(encoding="utf-8")),
            json.loads((WORKFLOWS / f"{name}_api.json").read_text(encoding="utf-8")))


def test_the_shipped_files_are_exactly_the_workflows():
    assert sorted(p.name for p in WORKFLOWS.glob("*.json")) == sorted(
        [f"{n}.json" for n in SPECS] + [f"{n}_api.json" for n in SPECS])
    assert sorted(p.name for p in EXAMPLES.glob("*.json")) == sorted(f"{n}.json" for n in SPECS)
    for name in SPECS:  # template browser copies are byte-identical; files match their specs
        assert (EXAMPLES / f"{name}.json").read_bytes() == (WORKFLOWS / f"{name}.json").read_bytes()
        ui, api = build(name, SCHEMAS)
        assert _load(name) == (ui, api), f"{name}: run python tests/comfyui_workflows.py to regenerate"


@pytest.mark.parametrize("name", list(SPECS))
def test_workflow_is_valid_and_twins_agree(name):
    ui, api = _load(name)
    assert validate_ui(ui, SCHEMAS) == []
    assert validate_api(api, SCHEMAS) == []
    stripped = {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()}
    assert ui_to_api(ui, SCHEMAS) == stripped
    checkpoints = [n["inputs"]["ckpt_name"] for n in api.values() if "ckpt_name" in n["inputs"]]
    assert checkpoints and set(checkpoints) <= OFFICIAL_FILES


def test_full_workflow_covers_every_stage():
    _, api = _load("sv4d_full")
    types = [n["class_type"] for n in api.values()]
    for t in ("LoadVideo", "SV4D_PrepareVideo", "ImageOnlyCheckpointLoader", "SV4D_SampleReferenceOrbit",
              "SV4D_CheckpointLoader", "SV4D_SampleAnchors", "SV4D_SampleDense", "SV4D_AssembleGrid", "SaveVideo",
              "SV4D_FitNeRF", "SV4D_RenderTurntable", "SV4D_ExportAsset", "Preview3D"):
        assert t in types, t
    preview = next(n for n in api.values() if n["class_type"] == "Preview3D")
    assert api[preview["inputs"]["model_file"][0]]["class_type"] == "SV4D_ExportAsset"


def test_validator_catches_planted_errors():
    ui, api = _load("sv4d_full")
    bad = json.loads(json.dumps(api))
    anchors = next(k for k, n in bad.items() if n["class_type"] == "SV4D_SampleAnchors")
    bad[anchors]["inputs"]["steps"] = 5000  # out of range
    bad[anchors]["inputs"]["orbit"] = [next(k for k, n in bad.items() if n["class_type"] == "SV4D_CheckpointLoader"), 0]
    bad[anchors]["inputs"]["mode"] = "fast"
    bad["99"] = {"class_type": "NoSuchNode", "inputs": {}}
    errors = "\n".join(validate_api(bad, SCHEMAS))
    assert "outside [0, 500]" in errors and "MODEL into IMAGE" in errors and "'fast' not in" in errors
    assert "unknown type NoSuchNode" in errors
    ui["links"][0][5] = "LATENT"
    assert validate_ui(ui, SCHEMAS)
