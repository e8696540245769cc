"""Run one ComfyUI API workflow per video through a running ComfyUI server, and write the batch report of
``sv4d batch`` (``OUT/batch.json`` + ``OUT/batch.csv``, same rows, same resume rules).

    python scripts/comfyui_batch.py clips/ --out runs/comfy --workflow workflows/sv4d2_novel_views_api.json \
        [--server http://127.0.0.1:8188] [--retry-failed] [--timeout 7200]

Per video (INPUT as for ``sv4d batch``: video files, folders, globs, .txt / .csv lists): the file is uploaded to the
server's input folder (``/upload/image``, subfolder ``sv4d_batch``), the workflow's ``LoadVideo`` node is pointed at
it, every save node's ``filename_prefix`` gets the video's name as a sub-folder (``sv4d2/view`` ->
``sv4d_batch/NAME/sv4d2/view``), per-video CSV columns set the matching node inputs (``PER_VIDEO_INPUTS``), the
prompt is queued (``POST /prompt`` with this script's ``client_id``) and its end is awaited on the websocket
(``/ws?clientId=``: ``execution_success``, or ``executing`` with ``node`` None; ``execution_error``;
``execution_interrupted``). The saved files come from ``/history/{prompt_id}``. The videos run one after another
(one ComfyUI queue); start one server per GPU and one script per server with a share of the list to use several.
A rerun skips videos whose row says done, retries failed ones only with ``--retry-failed``. Needs aiohttp (every
ComfyUI installation has it).
"""
from __future__ import annotations

import argparse
import asyncio
import copy
import json
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sv4d_models.batch_inputs import read_inputs  # noqa: E402 - the repository root is on the path now
from sv4d_models.batch_report import merge_report, read_row, write_row  # noqa: E402

UPLOAD_FOLDER = "sv4d_batch"
VIDEO_NODES = ("LoadVideo",)  # the node whose "file" input takes the video
PER_VIDEO_INPUTS = {"seed": ("seed", "nerf_seed"), "steps": ("steps",), "elevation": ("elevation_deg",),
                    "frames": ("max_frames",), "mode": ("mode",), "preset": ("preset",),
                    "mask_threshold": ("mask_threshold",), "mesh_threshold": ("mesh_threshold",),
                    "mesh_resolution": ("mesh_resolution",), "turntable_frames": ("frames",),
                    "turntable_size": ("size",)}
_TURNTABLE = "SV4D_RenderTurntable"  # frames / size of a per-video list mean the turntable's


def prompt_for(workflow: dict, item, uploaded: str) -> dict:
    """``workflow`` (API format) for one video: its file, its save prefixes under the video's name, its options."""
    wf = copy.deepcopy(workflow)
    nodes = {k: v for k, v in wf.items() if isinstance(v, dict) and "class_type" in v}
    loaders = [n for n in nodes.values() if n["class_type"] in VIDEO_NODES]
    if len(loaders) != 1:
        raise ValueError(f"the workflow has {len(loaders)} {' / '.join(VIDEO_NODES)} nodes; it needs exactly one "
                         "(export it with File > Export (API) from a workflow that loads one video)")
    loaders[0]["inputs"]["file"] = uploaded
    for node in nodes.values():
        prefix = node["inputs"].get("filename_prefix")
        if isinstance(prefix, str):
            node["inputs"]["filename_prefix"] = f"{UPLOAD_FOLDER}/{item.name}/{prefix}"
    for key, value in item.options.items():
        names = PER_VIDEO_INPUTS[key]
        hits = [n for n in nodes.values() for name in names if isinstance(n["inputs"].get(name), (int, float, str))
                and (key not in ("turntable_frames", "turntable_size") or n["class_type"] == _TURNTABLE)
                and (key in ("turntable_frames", "turntable_size") or n["class_type"] != _TURNTABLE)]
        if not hits:
            raise ValueError(f"{item.source}: the workflow has no node input for {key} ({' / '.join(names)}); "
                             "drop the column or use a workflow that has it")
        for node in hits:
            for name in names:
                if name in node["inputs"] and not isinstance(node["inputs"][name], list):
                    node["inputs"][name] = value
    return wf


def saved_files(history: dict) -> list[str]:
    """``subfolder/filename`` of every file the prompt's output nodes report."""
    found = []

    def walk(value):
        if isinstance(value, dict):
            if "filename" in value:
                found.append(f"{value.get('subfolder', '')}/{value['filename']}".lstrip("/"))
            else:
                for v in value.values():
                    walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(history.get("outputs", {}))
    return found


async def _upload(session, server: str, item) -> str:
    import aiohttp

    path = Path(item.video)
    form = aiohttp.FormData()
    form.add_field("image", path.read_bytes(), filename=f"{item.name}{path.suffix.lower()}")
    form.add_field("type", "input")
    form.add_field("subfolder", UPLOAD_FOLDER)
    form.add_field("overwrite", "true")
    async with session.post(f"{server}/upload/image", data=form) as r:
        if r.status != 200:
            raise RuntimeError(f"upload of {path} failed: HTTP {r.status} {await r.text()}")
        info = await r.json()
    return f"{info.get('subfolder') or UPLOAD_FOLDER}/{info['name']}"


async def _wait(ws, prompt_id: str, timeout: float) -> tuple[str, str, str]:
    """(status, kind, message) of the prompt from the websocket messages."""
    import aiohttp

    deadline = time.monotonic() + timeout
    while True:
        msg = await ws.receive(timeout=max(1.0, deadline - time.monotonic()))
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            return "failed", "error", "the server closed the websocket (did ComfyUI stop?)"
        if msg.type != aiohttp.WSMsgType.TEXT:
            continue  # previews are binary
        event = json.loads(msg.data)
        data = event.get("data") or {}
        if data.get("prompt_id") != prompt_id:
            continue
        kind = event.get("type")
        if kind == "execution_success" or (kind == "executing" and data.get("node") is None):
            return "done", "", ""
        if kind == "execution_error":
            return "failed", "error", (f"node {data.get('node_id')} ({data.get('node_type')}): "
                                       f"{data.get('exception_type')}: {data.get('exception_message')}").strip()
        if kind == "execution_interrupted":
            return "interrupted", "interrupted", f"interrupted at node {data.get('node_id')} ({data.get('node_type')})"


async def run_video(session, ws, client_id: str, args, workflow: dict, item) -> dict:
    """Queue and await one video; its report row."""
    started = time.perf_counter()
    row = {"name": item.name, "status": "failed", "kind": "input", "exit_code": 2, "device": args.server}
    try:
        prompt = prompt_for(workflow, item, await _upload(session, args.server, item))
        async with session.post(f"{args.server}/prompt", json={"prompt": prompt, "client_id": client_id}) as r:
            answer = await r.json(content_type=None)
        if r.status != 200:
            error = answer.get("error", {})
            nodes = "; ".join(f"node {k}: {e.get('message', '')}".strip() for k, v in answer.get("node_errors", {}).items()
                              for e in v.get("errors", [])[:1])
            raise ValueError(f"ComfyUI refused the prompt: {error.get('message', r.status)} {nodes}".strip())
        status, kind, message = await _wait(ws, answer["prompt_id"], args.timeout)
        async with session.get(f"{args.server}/history/{answer['prompt_id']}") as r:
            history = (await r.json()).get(answer["prompt_id"], {})
        files = saved_files(history)
        row.update(status=status, kind=kind, message=message, exit_code={"": 0, "interrupted": 130}.get(kind, 3),
                   out=f"{UPLOAD_FOLDER}/{item.name}", files=files, prompt_id=answer["prompt_id"],
                   glb=next((f for f in files if f.endswith(".glb")), None),
                   turntable=next((f for f in files if "turntable" in f), None))
    except ValueError as exc:
        row["message"] = " ".join(str(exc).split())
    except (OSError, RuntimeError, asyncio.TimeoutError) as exc:
        row.update(kind="error", exit_code=1, message=f"{type(exc).__name__}: {' '.join(str(exc).split())}")
    row["seconds"] = round(time.perf_counter() - started, 2)
    row["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return row


async def run(args) -> int:
    import aiohttp

    items = read_inputs(args.inputs)
    workflow = json.loads(Path(args.workflow).read_text(encoding="utf-8"))
    client_id = uuid.uuid4().hex
    failed = 0
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{args.server.replace('http', 'ws', 1)}/ws?clientId={client_id}") as ws:
            for item in items:
                previous = read_row(args.out, item.name)
                if previous and (previous["status"] == "done" or (previous["status"] == "failed" and not args.retry_failed)):
                    failed += previous["status"] == "failed"
                    continue
                row = await run_video(session, ws, client_id, args, workflow, item)
                row["attempts"] = (previous or {}).get("attempts", 0) + 1
                write_row(args.out, row)
                merge_report(args.out, items)
                failed += row["status"] != "done"
                print(f"{item.name}: {row['status']} in {row['seconds']:.1f} s"
                      + (f" ({row['kind']}: {row['message']})" if row["kind"] else ""), flush=True)
                if row["status"] == "interrupted":
                    break
    report = merge_report(args.out, items)
    c = report["counts"]
    print(f"comfyui_batch: {report['videos']} videos: {c['done']} done, {c['failed']} failed, "
          f"{c['interrupted'] + c['pending']} not finished; report {Path(args.out) / 'batch.csv'}")
    return 0 if c["done"] == report["videos"] else 3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="video files, folders, globs or .txt / .csv lists")
    p.add_argument("--out", required=True, help="folder of the report (batch.json, batch.csv)")
    p.add_argument("--workflow", required=True, help="an API-format workflow with one LoadVideo node")
    p.add_argument("--server", default="http://127.0.0.1:8188", help="the ComfyUI server")
    p.add_argument("--retry-failed", action="store_true", help="queue the videos the report lists as failed again")
    p.add_argument("--timeout", type=float, default=7200.0, help="seconds to wait for one video")
    args = p.parse_args(argv)
    args.server = args.server.rstrip("/")
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        print("comfyui_batch: error: needs aiohttp (pip install aiohttp; ComfyUI installs it)", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run(args))
    except (ValueError, FileNotFoundError) as exc:
        print(f"comfyui_batch: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"comfyui_batch: error: cannot reach ComfyUI at {args.server} ({exc}); start it or pass --server",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
