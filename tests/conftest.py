"""Shared test fixtures. Tests run on CPU with tiny configs and fixed seeds."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"  # the project's shared folder (sample videos, ComfyUI snapshot); absent in a clone
REFERENCE = Path(__file__).parent / "data" / "reference"  # official key lists + parity fixtures (PROVENANCE.md)
PARITY = REFERENCE / "parity"

# One thread by default: tiny tensors gain little from two, and OpenMP threads stall badly when anything else
# shares the two cores. SV4D_TEST_THREADS=2 on a quiet machine.
torch.set_num_threads(int(os.environ.get("SV4D_TEST_THREADS", "1")))


@pytest.fixture(scope="session")
def bad_inputs_world(tmp_path_factory) -> dict:
    """The wrong-input catalogue's files and models (tests/bad_inputs_world.py), built once for its four modules."""
    from bad_inputs_world import build

    return build(tmp_path_factory)


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def require_shared(path: Path) -> Path:
    """``path`` if it exists. Missing: a failure under CI (``CI=true``), where ../shared must be present; elsewhere a
    skip (a clone without the shared folder still runs everything else)."""
    if not path.exists():
        message = f"{path} is not present (../shared/ must sit beside the checkout)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message + "; CI=true, so this is a failure, not a skip")
        pytest.skip(message)
    return path


def official_layout(src: Path, dst: Path) -> Path:
    """A copy of a tiny checkpoint without our ``sv4d_model_kind`` metadata key, as Stability's files come: only the
    file name and the weights can tell its kind (the tiny widths still need the network-config metadata)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from sv4d_models.checkpoint import META_KIND

    with safe_open(str(src), "pt") as f:
        meta = {k: v for k, v in (f.metadata() or {}).items() if k != META_KIND}
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_file(load_file(str(src)), str(dst), metadata=meta)
    return dst
