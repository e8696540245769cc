"""Test helpers: the pack imported as ComfyUI imports it, and ComfyUI itself in-process (from ``COMFYUI_PATH``).

Integration tests (marker ``comfyui``) skip when ``COMFYUI_PATH`` is unset, except under CI (``CI=true``), where
they fail: ``.ci/run`` always installs ComfyUI and sets it.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACK = "sv4d_pack"  # the name the pack is imported under in tests (ComfyUI uses the folder name)


LOCAL = REPO / ".comfyui" / "ComfyUI"  # where the tests install ComfyUI when COMFYUI_PATH is unset (git-ignored)
SNAPSHOT = REPO.parent / "shared" / "comfyui" / "install.sh"


def comfyui_path() -> Path:
    """The ComfyUI checkout: ``$COMFYUI_PATH``, else ``.comfyui/ComfyUI`` in the repository, else the shared snapshot
    installed there now (once; its requirements go into this venv). Without any of them: skip (fail under CI)."""
    path = os.environ.get("COMFYUI_PATH") or _local_comfyui()
    if not path:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("COMFYUI_PATH is unset under CI; .ci/run installs ComfyUI and must export it")
        pytest.skip(f"no ComfyUI: set COMFYUI_PATH to a ComfyUI checkout (git clone "
                    f"https://github.com/comfyanonymous/ComfyUI && pip install -r ComfyUI/requirements.txt), or put "
                    f"one at {LOCAL}")
    os.environ["COMFYUI_PATH"] = str(path)  # the server tests start ComfyUI in a subprocess
    root = Path(path)
    if not (root / "main.py").is_file():
        pytest.fail(f"COMFYUI_PATH={path} holds no ComfyUI checkout (main.py missing)")
    return root


def _local_comfyui() -> str | None:
    if (LOCAL / "main.py").is_file():
        return str(LOCAL)
    if not SNAPSHOT.is_file():
        return None
    import subprocess

    done = subprocess.run(["bash", str(SNAPSHOT), str(LOCAL.parent)], capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable}, timeout=1800)
    if done.returncode != 0 or not (LOCAL / "main.py").is_file():
        pytest.fail(f"installing ComfyUI from {SNAPSHOT} failed: {done.stderr[-1000:]}")
    return str(LOCAL)


def load_pack():
    """Import the pack's root ``__init__.py`` as package ``sv4d_pack`` (relative imports as under ComfyUI)."""
    if PACK in sys.modules:
        return sys.modules[PACK]
    spec = importlib.util.spec_from_file_location(PACK, REPO / "__init__.py", submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK] = module
    spec.loader.exec_module(module)
    return module


def pack_module(name: str):
    """``sv4d_pack.<name>``, e.g. ``pack_module("nodes.values")``."""
    load_pack()
    return importlib.import_module(f"{PACK}.{name}")


def comfy_in_process():
    """Make ComfyUI importable in this process on the CPU (pytorch attention, as ``--cpu
    --use-pytorch-cross-attention``) and return ``comfy.model_management``."""
    root = comfyui_path()
    shadow = sys.modules.get("comfy")
    if shadow is not None and Path(getattr(shadow, "__file__", None) or ".").resolve() == REPO / "__init__.py":
        # pytest imports a checkout's root __init__.py under the folder's name: a checkout named "comfy" would hide
        # ComfyUI's package of that name
        del sys.modules["comfy"]
    if str(root) not in sys.path:
        sys.path.append(str(root))  # appended: the checkout's own ``nodes`` package stays first
    from comfy.cli_args import args

    if "comfy.model_management" not in sys.modules:
        args.cpu = True
        args.use_pytorch_cross_attention = True
    import comfy.model_management as mm

    return mm


def add_checkpoint_folder(folder) -> None:
    """Make ``folder``'s files visible to ComfyUI's ``checkpoints`` lists (in-process ComfyUI)."""
    import folder_paths

    folder_paths.add_model_folder_path("checkpoints", str(folder))


def core_image_only_checkpoint(path):
    """Core Image Only Checkpoint Loader's call: ``(MODEL, CLIP_VISION, VAE)`` of an SVD / SV3D file."""
    import comfy.sd

    model, _, vae, clip_vision = comfy.sd.load_checkpoint_guess_config(str(path), output_vae=True, output_clip=False,
                                                                       output_clipvision=True)
    return model, clip_vision, vae
