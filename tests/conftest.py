"""Shared test fixtures. Tests run on CPU with tiny configs and fixed seeds."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REFERENCE = SHARED / "reference"
PARITY = REFERENCE / "parity"

# One thread by default: tiny tensors gain little from two, and OpenMP threads stall badly when anything else
# shares the two cores. SV4D_TEST_THREADS=2 on a quiet machine.
torch.set_num_threads(int(os.environ.get("SV4D_TEST_THREADS", "1")))


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def require_shared(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not present (../shared/ must sit beside the checkout)")
    return path
