"""Test helper: a real ComfyUI server (``main.py --cpu``) on a free loopback port with this pack installed as users
install it (a symlink in ``$COMFYUI_PATH/custom_nodes/``), tiny checkpoints through ``--extra-model-paths-config``,
and its own input / output / temp / user folders. Plain ``urllib`` HTTP client (``/prompt``, ``/history``, ...).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACK_LINK = "ComfyUI-SV4D"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def install_pack(comfyui: Path) -> Path:
    """Symlink this checkout into ``custom_nodes/`` (idempotent); returns the link."""
    link = comfyui / "custom_nodes" / PACK_LINK
    if link.is_symlink() and link.resolve() == REPO:
        return link
    if link.exists() or link.is_symlink():
        raise RuntimeError(f"{link} exists and is not a symlink to {REPO}; remove it")
    link.symlink_to(REPO, target_is_directory=True)
    return link


class ComfyServer:
    """One ComfyUI process; ``start()`` waits until it answers, ``stop()`` ends its process group."""

    def __init__(self, comfyui: Path, work: Path, models: Path, custom_nodes: Path):
        self.comfyui, self.work, self.port = comfyui, work, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.output, self.input, self.temp = work / "output", work / "input", work / "temp_root"
        self.log_path = work / "server.log"
        work.mkdir(parents=True, exist_ok=True)
        self.config = work / "extra_model_paths.yaml"
        self.config.write_text(f"sv4d_tests:\n  base_path: {models}\n  checkpoints: checkpoints\n"
                               f"  custom_nodes: {custom_nodes}\n", encoding="utf-8")
        self.process: subprocess.Popen | None = None

    @property
    def temp_dir(self) -> Path:
        return self.temp / "temp"  # ComfyUI appends "temp" to --temp-directory

    def start(self, timeout: float = 240.0) -> "ComfyServer":
        install_pack(self.comfyui)
        for d in (self.output, self.input, self.temp, self.work / "user"):
            d.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
               "--disable-auto-launch", "--extra-model-paths-config", str(self.config),
               "--output-directory", str(self.output), "--input-directory", str(self.input),
               "--temp-directory", str(self.temp), "--user-directory", str(self.work / "user"),
               "--database-url", f"sqlite:///{self.work / 'comfyui.db'}", "--preview-method", "latent2rgb"]
        # single-threaded like the in-process tests (conftest): OpenMP threads stall badly on a shared 2-core box
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("SV4D_TEST_THREADS", "1"), PYTHONUNBUFFERED="1")
        self.log = open(self.log_path, "w", encoding="utf-8")
        self.process = subprocess.Popen(cmd, cwd=self.comfyui, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.process.returncode}:\n{self.log_text()[-4000:]}")
            try:
                self.get("/system_stats")
                return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"ComfyUI did not answer within {timeout} s:\n{self.log_text()[-4000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(30)
        if getattr(self, "log", None):
            self.log.close()

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    # ---- HTTP ------------------------------------------------------------------------------------
    def request(self, path: str, data=None, timeout: float = 30.0):
        body = None if data is None else json.dumps(data).encode()
        req = urllib.request.Request(self.url + path, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
        return json.loads(raw) if raw.strip() else None

    def get(self, path: str):
        return self.request(path)

    def queue(self, prompt: dict) -> str:
        """POST /prompt; returns the prompt id (AssertionError with the node errors on HTTP 400)."""
        try:
            return self.request("/prompt", {"prompt": prompt, "client_id": "sv4d-tests"})["prompt_id"]
        except urllib.error.HTTPError as err:
            raise AssertionError(f"/prompt refused the prompt: {err.read().decode()[:3000]}") from None

    def wait(self, prompt_id: str, timeout: float = 600.0) -> dict:
        """The history entry of a prompt once it has finished (success, error or interrupted)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            entry = self.get(f"/history/{prompt_id}").get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None and entry["status"].get("status_str"):
                return entry
            time.sleep(0.25)
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout} s:\n{self.log_text()[-3000:]}")

    def interrupt(self) -> None:
        self.request("/interrupt", {})


def messages(entry: dict, kind: str) -> list[dict]:
    """The payloads of one kind of status message (``execution_error``, ``execution_cached``, ...)."""
    return [data for name, data in entry.get("status", {}).get("messages", []) if name == kind]
