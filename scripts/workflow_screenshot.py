"""Open a workflow in ComfyUI's real web UI (headless Chromium over the DevTools protocol), save a screenshot and
check the frontend's own UI -> API conversion of it against the workflow's API twin.

    python scripts/workflow_screenshot.py [--workflow sv4d_full] [--out docs/sv4d_full.png]

Needs a ComfyUI checkout in COMFYUI_PATH (bash ../shared/comfyui/install.sh .comfyui) and Chromium
(Debian: apt-get install chromium). The server runs on a free loopback port with this pack symlinked into
custom_nodes/, as the integration tests run it; nothing is downloaded.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--hide-scrollbars"]
SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Workflow.ShowMissingModelsWarning": False,
            "Comfy.Workflow.ShowMissingNodesWarning": False, "Comfy.UseNewMenu": "Top",
            "Comfy.Minimap.Visible": False, "Comfy.Sidebar.Location": "left"}


class DevTools:
    """A minimal Chrome DevTools Protocol client over aiohttp's websocket."""

    def __init__(self, ws):
        self.ws, self.next_id = ws, 0

    async def call(self, method: str, **params):
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            msg = await self.ws.receive_json(timeout=120)
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    async def js(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")


async def capture(url: str, port: int, workflow: dict, size: tuple[int, int]) -> tuple[bytes, dict]:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            try:
                pages = await (await http.get(f"http://127.0.0.1:{port}/json/list")).json()
                break
            except aiohttp.ClientError:
                await asyncio.sleep(0.2)
        page = next(p for p in pages if p["type"] == "page")
        async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            dt = DevTools(ws)
            await dt.call("Emulation.setDeviceMetricsOverride", width=size[0], height=size[1], deviceScaleFactor=1,
                          mobile=False)
            await dt.call("Page.navigate", url=url)
            for _ in range(600):
                if await dt.js("!!(window.app && window.app.graph && window.app.canvas)"):
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(3)
            await dt.js(f"app.loadGraphData({json.dumps(workflow)}).then(() => true)")
            await asyncio.sleep(3)
            prompt = json.loads(await dt.js("app.graphToPrompt().then(p => JSON.stringify(p.output))"))
            shot = await dt.call("Page.captureScreenshot", format="png")
    return base64.b64decode(shot["data"]), prompt


def shrink(png: bytes, width: int) -> bytes:
    """Resize to ``width`` and store with a 256-colour palette (a small file for the README)."""
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    img = img.resize((width, round(img.height * width / img.width)), Image.LANCZOS)
    buf = io.BytesIO()
    img.quantize(256).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflow", default="sv4d_full", help="name in workflows/ (UI format)")
    parser.add_argument("--out", default=None, help="PNG path (default docs/<workflow>.png)")
    parser.add_argument("--width", type=int, default=1400, help="width of the saved PNG")
    args = parser.parse_args(argv)
    from comfyui_server import ComfyServer, free_port
    from comfyui_workflows import WORKFLOWS

    comfyui = Path(os.environ.get("COMFYUI_PATH", REPO / ".comfyui" / "ComfyUI"))
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None or not (comfyui / "main.py").is_file():
        print("needs chromium on PATH and a ComfyUI checkout in COMFYUI_PATH", file=sys.stderr)
        return 2
    workflow = json.loads((WORKFLOWS / f"{args.workflow}.json").read_text(encoding="utf-8"))
    api = json.loads((WORKFLOWS / f"{args.workflow}_api.json").read_text(encoding="utf-8"))
    out = Path(args.out or REPO / "docs" / f"{args.workflow}.png")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "models").mkdir()
        (work / "nodes").mkdir()
        settings = work / "run" / "user" / "default" / "comfy.settings.json"
        settings.parent.mkdir(parents=True)
        settings.write_text(json.dumps(SETTINGS), encoding="utf-8")
        server = ComfyServer(comfyui, work / "run", work / "models", work / "nodes").start()
        port = free_port()
        browser = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={work / 'chromium'}",
                                    f"--remote-debugging-port={port}", "about:blank"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            png, prompt = asyncio.run(capture(server.url, port, workflow, (1920, 1080)))
        finally:
            browser.terminate()
            browser.wait(30)
            server.stop()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(shrink(png, args.width))
    twin = {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()}
    mine = {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in prompt.items()}
    same = mine == twin
    print(f"wrote {out} ({out.stat().st_size:,} bytes); frontend's graphToPrompt == {args.workflow}_api.json: {same}")
    if not same:
        for k in sorted(set(mine) | set(twin)):
            if mine.get(k) != twin.get(k):
                print(f"  node {k}: frontend {mine.get(k)}\n          twin     {twin.get(k)}")
    return 0 if same else 1


if __name__ == "__main__":
    time.sleep(0)
    raise SystemExit(main())
