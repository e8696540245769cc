"""The pack in a real ComfyUI server (``main.py --cpu`` on loopback), installed as users install it (a symlink in
``custom_nodes/``), with tiny checkpoints from the factory through ``--extra-model-paths-config``: clean import,
``/object_info`` schemas, every API workflow over ``POST /prompt`` with outputs on disk, ``POST /interrupt`` and
resume, cache on an identical re-queue, a wrong-kind checkpoint reported in ComfyUI's error report.

One server per session. Sizes are tiny (32 px, 9 frames, 2 steps); core ImageOnlyCheckpointLoader, which cannot
detect the tiny SV3D widths, is swapped for ``comfyui_tiny_sv3d``'s loader that builds the same core classes."""
from __future__ import annotations

import copy
import json
import os
import time

import pytest
import torch

from comfyui_env import comfyui_path
from comfyui_server import REPO, ComfyServer, messages
from comfyui_workflows import SNAPSHOT, WORKFLOWS, normalize_info
from sv4d_models.export.video import write_mp4
from sv4d_models.sampling import make_plan
from sv4d_models.tiny_checkpoint import write_tiny_checkpoint

pytestmark = pytest.mark.comfyui
TINY = {"sv4d.safetensors": "sv4d_tiny.safetensors", "sv4d2.safetensors": "sv4d2_tiny.safetensors"}
WORKFLOW_NAMES = ("sv4d_full", "sv4d_novel_views", "sv4d2_novel_views")


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    root = comfyui_path()
    work = tmp_path_factory.mktemp("comfyui_server")
    models, custom = work / "models", work / "custom_nodes"
    for i, kind in enumerate(("sv4d", "sv4d2", "sv3d_u")):
        write_tiny_checkpoint(models / "checkpoints" / f"{kind}_tiny.safetensors", kind, seed=i)
    write_tiny_checkpoint(models / "checkpoints" / "sv4d_wrong_kind.safetensors", "sv3d_u", seed=7)
    custom.mkdir()
    (custom / "comfyui_tiny_sv3d.py").symlink_to(REPO / "tests" / "comfyui_tiny_sv3d.py")
    srv = ComfyServer(root, work / "run", models, custom).start()
    write_mp4(input_video(), srv.input / "sv4d_input.mp4", fps=10)
    yield srv
    srv.stop()


def input_video() -> torch.Tensor:
    """12 frames, 64 px: a red disc moving on white."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    frames = torch.ones(12, 64, 64, 3)
    for f in range(12):
        frames[f][(xx - 0.3 * torch.cos(torch.tensor(f / 3.0))) ** 2 + yy ** 2 < 0.25] = torch.tensor([0.8, 0.2, 0.1])
    return frames


def tiny(api: dict, steps: int = 2, frames: int = 9) -> dict:
    """An API workflow with tiny checkpoints and sizes."""
    api = copy.deepcopy(api)
    for node in api.values():
        t, i = node["class_type"], node["inputs"]
        if t == "ImageOnlyCheckpointLoader":
            node["class_type"], i["ckpt_name"] = "SV4DTest_TinySV3DLoader", "sv3d_u_tiny.safetensors"
        changes = {"SV4D_CheckpointLoader": {"ckpt_name": TINY.get(i.get("ckpt_name"))},
                   "SV4D_PrepareVideo": {"size": 32, "max_frames": frames}, "SV4D_FitNeRF": {"preset": "tiny"},
                   "SV4D_RenderTurntable": {"frames": 4, "size": 24}, "SV4D_ExportAsset": {"mesh_resolution": 16},
                   "SV4D_AssembleGrid": {"grid_cell_size": 16}}.get(t, {})
        i.update(changes)
        if t.startswith("SV4D_Sample"):
            i["steps"] = steps
    return api


def load_api(name: str) -> dict:
    return json.loads((WORKFLOWS / f"{name}_api.json").read_text(encoding="utf-8"))


def test_pack_imports_cleanly(server):
    log = server.log_text()
    assert "ComfyUI-SV4D" in log.split("Import times for custom nodes")[1].split("\n\n")[0]
    ours = [line for line in log.splitlines() if "ComfyUI-SV4D" in line and ("IMPORT FAILED" in line or
                                                                             "could not be imported" in line)]
    assert ours == [] and "sv4d_models was already imported" not in log
    templates = server.get("/workflow_templates")["ComfyUI-SV4D"]
    assert {"sv4d_full", "sv4d_novel_views", "sv4d2_novel_views"} <= set(templates)


def test_object_info_lists_every_node_with_its_schema(server):
    info = server.get("/object_info")
    ours = sorted(k for k in info if k.startswith("SV4D_"))
    assert len(ours) == 12
    for name in ours:
        node = info[name]
        assert node["category"].startswith("SV4D/") and node["description"]
        specs = {**node["input"].get("required", {}), **node["input"].get("optional", {})}
        assert all(len(s) > 1 and s[1].get("tooltip") for s in specs.values()), name
        assert len(node["output_tooltips"]) == len(node["output"]) and all(node["output_tooltips"]), name
    snapshot = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    live = normalize_info(info, snapshot)
    if os.environ.get("SV4D_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(json.dumps(live, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        snapshot = live
    assert live == snapshot, "the workflow validator's schema snapshot is stale: rerun with SV4D_UPDATE_SNAPSHOT=1"


@pytest.mark.parametrize("name", WORKFLOW_NAMES)
def test_api_workflow_runs_to_success_with_outputs_on_disk(server, name):
    entry = server.wait(server.queue(tiny(load_api(name))))
    assert entry["status"]["status_str"] == "success", messages(entry, "execution_error")
    videos = list((server.output / name.split("_")[0]).glob("view_*.mp4"))
    assert len(videos) >= (9 if name.startswith("sv4d_") else 5) and all(v.stat().st_size > 0 for v in videos)
    assert list((server.output / name.split("_")[0]).glob("grid_*.png"))
    if name == "sv4d_full":
        preview = next(v for k, v in entry["outputs"].items() if "result" in v)["result"][0]
        glb = server.output / preview
        assert preview.endswith("/animated.glb") and glb.is_file() and glb.read_bytes()[:4] == b"glTF"
        meshes = sorted((glb.parent / "meshes").glob("frame_*.ply"))
        vertices = [int(m.read_bytes().split(b"element vertex ")[1].split(b"\n")[0]) for m in meshes]
        assert len(meshes) == 9 and min(vertices) > 0, vertices
        texts = [t for v in entry["outputs"].values() for t in v.get("text", []) if "surface density" in str(t)]
        assert texts and "surface density 11.9" in str(texts[0])  # mesh_threshold 0: ln 2 / tiny preset's spacing
        assert (glb.parent / "cameras" / "transforms.json").is_file()
        assert list(server.output.glob("sv4d/turntable_*.mp4"))
        assert not list(server.output.rglob(".*partial*"))


def test_identical_requeue_is_served_from_cache(server):
    api = tiny(load_api("sv4d_novel_views"))
    first = server.wait(server.queue(api))
    start = time.time()
    second = server.wait(server.queue(api))
    assert first["status"]["status_str"] == second["status"]["status_str"] == "success"
    cached = set(messages(second, "execution_cached")[0]["nodes"])
    assert {k for k, n in api.items() if n["class_type"].startswith("SV4D_")} <= cached
    assert time.time() - start < 10


def test_interrupt_ends_the_prompt_and_a_requeue_resumes(server):
    api = tiny(load_api("sv4d_novel_views"), steps=6, frames=12)  # 4 passes (anchors, 3 dense) of 6 steps
    api["7"]["inputs"]["seed"] = 99  # nothing cached from other tests
    before = set(server.temp_dir.glob("sv4d/*/pass_*.pt"))
    prompt = server.queue(api)
    deadline = time.time() + 300
    while not (set(server.temp_dir.glob("sv4d/*/pass_000.pt")) - before) and time.time() < deadline:
        time.sleep(0.05)
    done = sorted(set(server.temp_dir.glob("sv4d/*/pass_*.pt")) - before)
    assert done, "no pass finished in time"
    mtimes = {p: p.stat().st_mtime_ns for p in done}
    server.interrupt()
    stopped = time.time()
    entry = server.wait(prompt)
    assert entry["status"]["status_str"] == "error" and messages(entry, "execution_interrupted")
    assert time.time() - stopped < 15  # within a step (a tiny step is well under a second)
    again = server.wait(server.queue(api))
    assert again["status"]["status_str"] == "success", messages(again, "execution_error")
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items())  # finished passes were not sampled again
    assert len(list(done[0].parent.glob("pass_*.pt"))) == len(make_plan("sv4d", 12, "auto", 6).passes) == 4


def test_wrong_kind_checkpoint_is_reported_in_comfyuis_error_report(server):
    api = tiny(load_api("sv4d2_novel_views"))
    loader = next(n for n in api.values() if n["class_type"] == "SV4D_CheckpointLoader")
    loader["inputs"]["ckpt_name"] = "sv4d_wrong_kind.safetensors"
    entry = server.wait(server.queue(api))
    errors = messages(entry, "execution_error")
    assert entry["status"]["status_str"] == "error" and errors[0]["node_type"] == "SV4D_CheckpointLoader"
    assert "is an SV3D checkpoint" in errors[0]["exception_message"]
    assert "Image Only Checkpoint Loader" in errors[0]["exception_message"]
