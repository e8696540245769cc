"""``scripts/comfyui_batch.py`` against a fake ComfyUI (aiohttp: ``/upload/image``, ``/prompt``, ``/ws``, ``/history``)
that speaks ComfyUI's messages: one prompt per video, the end awaited on the websocket, the report of ``sv4d batch``,
resume and --retry-failed."""
from __future__ import annotations

import asyncio
import csv
import importlib.util
import json
import threading
from pathlib import Path

import pytest

aiohttp = pytest.importorskip("aiohttp")
from aiohttp import web  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / "workflows" / "sv4d2_novel_views_api.json"


def load_script():
    spec = importlib.util.spec_from_file_location("comfyui_batch", REPO / "scripts" / "comfyui_batch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeComfy:
    """Queued prompts run at once: a video whose name holds 'broken' ends in ``execution_error``, the others in
    ComfyUI 0.3's ``executing`` with node None (``new_style``: ``execution_success``)."""

    def __init__(self, new_style: bool = False):
        self.prompts, self.uploads, self.sockets, self.history = [], {}, {}, {}
        self.new_style = new_style

    async def upload(self, request):
        form = await request.post()
        f = form["image"]
        self.uploads[f"{form['subfolder']}/{f.filename}"] = f.file.read()
        return web.json_response({"name": f.filename, "subfolder": form["subfolder"], "type": "input"})

    async def ws(self, request):
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        self.sockets[request.query["clientId"]] = sock
        await sock.send_json({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}}})
        async for _ in sock:
            pass
        return sock

    async def prompt(self, request):
        body = await request.json()
        pid = f"p{len(self.prompts)}"
        self.prompts.append(body["prompt"])
        asyncio.get_running_loop().create_task(self._execute(pid, body))
        return web.json_response({"prompt_id": pid, "number": len(self.prompts), "node_errors": {}})

    async def _execute(self, pid, body):
        sock = self.sockets[body["client_id"]]
        await asyncio.sleep(0.05)
        await sock.send_json({"type": "executing", "data": {"node": "6", "prompt_id": pid}})
        await sock.send_bytes(b"\x00\x00\x00\x01preview")
        await sock.send_json({"type": "executing", "data": {"node": "1", "prompt_id": "someone-else's"}})
        video = body["prompt"]["1"]["inputs"]["file"]
        if "broken" in video:
            await sock.send_json({"type": "execution_error", "data": {
                "prompt_id": pid, "node_id": "1", "node_type": "LoadVideo", "exception_type": "av.InvalidDataError",
                "exception_message": "Invalid data found when processing input"}})
            self.history[pid] = {"outputs": {}}
            return
        prefix = body["prompt"]["11"]["inputs"]["filename_prefix"]
        folder, stem = prefix.rsplit("/", 1)
        self.history[pid] = {"outputs": {"11": {"images": [{"filename": f"{stem}_00001_.png", "subfolder": folder,
                                                            "type": "output"}]}}}
        done = ({"type": "execution_success", "data": {"prompt_id": pid}} if self.new_style else
                {"type": "executing", "data": {"node": None, "prompt_id": pid}})
        await sock.send_json(done)

    async def get_history(self, request):
        pid = request.match_info["pid"]
        return web.json_response({pid: self.history[pid]} if pid in self.history else {})


@pytest.fixture(params=[False, True], ids=["comfyui-0.3", "execution_success"])
def server(request):
    fake = FakeComfy(new_style=request.param)
    app = web.Application()
    app.router.add_post("/upload/image", fake.upload)
    app.router.add_post("/prompt", fake.prompt)
    app.router.add_get("/ws", fake.ws)
    app.router.add_get("/history/{pid}", fake.get_history)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield fake, f"http://127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def test_one_prompt_per_video_and_the_batch_report(server, tmp_path, capsys):
    fake, url = server
    script = load_script()
    for folder in ("a", "b"):
        (tmp_path / "clips" / folder).mkdir(parents=True)
        (tmp_path / "clips" / folder / "cat.mp4").write_bytes(f"video {folder}".encode())
    (tmp_path / "clips" / "broken.mp4").write_bytes(b"junk")
    listing = tmp_path / "list.csv"
    listing.write_text("video,name,seed\nclips/a/cat.mp4,cat_seed7,7\n")
    out = tmp_path / "report"
    args = [str(tmp_path / "clips"), str(listing), "--out", str(out), "--workflow", str(WORKFLOW), "--server", url,
            "--timeout", "20"]
    assert script.main(args) == 3
    report = json.loads((out / "batch.json").read_text())
    rows = {r["name"]: r for r in report["rows"]}
    assert report["counts"] == {"done": 3, "failed": 1, "interrupted": 0, "pending": 0}
    assert rows["broken"]["kind"] == "error" and "Invalid data found" in rows["broken"]["message"]
    assert [r["name"] for r in csv.DictReader((out / "batch.csv").open())] == [r["name"] for r in report["rows"]]
    assert len(fake.prompts) == 4 and sorted(fake.uploads.values()) == sorted([b"video a", b"video b", b"junk",
                                                                                b"video a"])
    by_file = {p["1"]["inputs"]["file"]: p for p in fake.prompts}
    seeded = by_file["sv4d_batch/cat_seed7.mp4"]
    assert seeded["7"]["inputs"]["seed"] == 7 and seeded["11"]["inputs"]["filename_prefix"] == \
        "sv4d_batch/cat_seed7/sv4d2/grid"
    workflow = json.loads(WORKFLOW.read_text())
    assert workflow["7"]["inputs"]["seed"] == 23  # the file's workflow is left as it was
    cats = [n for n in rows if n.startswith("cat-")]
    assert len(cats) == 2 and all(rows[n]["files"] == [f"sv4d_batch/{n}/sv4d2/grid_00001_.png"] for n in cats)
    assert script.main(args) == 3 and len(fake.prompts) == 4  # a rerun queues nothing
    assert script.main([*args, "--retry-failed"]) == 3 and len(fake.prompts) == 5  # only the failed one
    assert json.loads((out / "batch.json").read_text())["rows"][2]["attempts"] == 2


def test_a_workflow_without_a_video_input_and_an_unreachable_server_are_one_line_errors(tmp_path, capsys):
    script = load_script()
    clip = tmp_path / "cat.mp4"
    clip.write_bytes(b"v")
    with pytest.raises(ValueError, match="0 LoadVideo nodes; it needs exactly one"):
        script.prompt_for({"1": {"class_type": "SaveImage", "inputs": {}}}, None, "x.mp4")
    assert script.main([str(clip), "--out", str(tmp_path / "r"), "--workflow", str(WORKFLOW), "--server",
                        "http://127.0.0.1:9"]) == 2
    assert "cannot reach ComfyUI at http://127.0.0.1:9" in capsys.readouterr().err
