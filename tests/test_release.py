"""What the ComfyUI registry and Manager get: a tree without ``__pycache__`` or symbolic links (governed ComfyUI builds
refuse such packs), requirements that never install or upgrade torch, complete ``[tool.comfy]`` metadata, and an
archive filter (``.comfyignore``) that keeps everything the pack runs on. ``.ci/run`` also runs ``comfy node
validate`` and inspects the archive ``comfy node pack`` builds."""
from __future__ import annotations

import os
import re
import subprocess
import tomllib

import pytest
from PIL import Image

from conftest import REPO

RUNTIME = ("__init__.py", "nodes/", "sv4d_models/", "workflows/", "example_workflows/", "requirements.txt",
           "pyproject.toml", "README.md", "LICENSE", "docs/")
TORCH_FAMILY = re.compile(r"^\s*(torch|torchvision|torchaudio|xformers|triton)\b", re.I)


def tracked() -> list[tuple[str, str]]:
    """(mode, path) of every file git tracks; outside a git checkout: a failure under CI, else a skip."""
    try:
        out = subprocess.run(["git", "ls-files", "-s"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI runs on a git clone; git ls-files failed")
        pytest.skip("not a git checkout")
    return [(line.split()[0], line.split("\t", 1)[1]) for line in out.splitlines()]


def test_the_tree_has_no_bytecode_and_no_symbolic_links():
    files = tracked()
    assert files
    assert [p for _, p in files if "__pycache__" in p.split("/") or p.endswith((".pyc", ".pyo"))] == []
    assert [p for mode, p in files if mode == "120000"] == []  # git's mode for a symbolic link
    ignored = (REPO / ".gitignore").read_text().split()
    assert "__pycache__/" in ignored and "*.pyc" in ignored


def test_requirements_never_install_or_upgrade_torch():
    lines = [line for line in (REPO / "requirements.txt").read_text().splitlines() if line.strip()
             and not line.lstrip().startswith("#")]
    assert lines and not [line for line in lines if TORCH_FAMILY.match(line)]
    assert not [line for line in lines if line.lstrip().startswith("-")]  # no --upgrade, --index-url, -r ...
    assert not [line for line in lines if "==" in line]  # ranges only: never forces a downgrade of ComfyUI's own


def test_registry_metadata_is_complete():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    comfy, project = meta["tool"]["comfy"], meta["project"]
    assert comfy["PublisherId"] and comfy["DisplayName"] and comfy["includes"] == []
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", comfy["PublisherId"])
    icon = comfy["Icon"].split("/main/", 1)[1]
    assert (REPO / icon).is_file() and icon in {p for _, p in tracked()}
    width, height = Image.open(REPO / icon).size
    assert width <= 800 and height <= 400  # the registry's limit
    assert re.fullmatch(r">=\d+\.\d+\.\d+", comfy["requires-comfyui"])
    assert project["version"] and project["urls"]["Repository"].startswith("https://")
    assert "LICENSE" in project["license-files"] and (REPO / "LICENSE").read_text().startswith("MIT License")


def test_the_registry_archive_keeps_what_the_pack_runs_on():
    patterns = [p.strip() for p in (REPO / ".comfyignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    assert all(p.endswith("/") and "*" not in p for p in patterns)  # plain folders: checked by prefix below
    kept = [path for _, path in tracked() if not any(path.startswith(p) for p in patterns)]
    for needed in RUNTIME:
        assert any(path == needed or path.startswith(needed) for path in kept), needed
    assert not [p for p in kept if p.startswith("tests/")]
