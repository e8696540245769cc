"""Shared test fixtures. Tests run on CPU with tiny configs and fixed seeds."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REFERENCE = SHARED / "reference"
PARITY = REFERENCE / "parity"

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def require_shared(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not present (../shared/ must sit beside the checkout)")
    return path
