"""Regenerate tests/data/i3d_reference.json by running the *unmodified* reference I3D (piergiaj/pytorch-i3d).

``pytorch_i3d.py`` of a local checkout is imported as it is; nothing of it is stored in this repository, only:
every state-dict key and shape of ``InceptionI3d(400, in_channels=3)``, and its logits on one seeded input with
seeded random weights (``sv4d_models.metrics.i3d.random_i3d_state_dict``), so tests/test_metrics_fvd.py can prove
that our ``InceptionI3d`` has the same layout and computes the same function.

Usage: python scripts/make_i3d_fixture.py /path/to/pytorch-i3d [--out tests/data/i3d_reference.json]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
from pathlib import Path

import torch

from sv4d_models.metrics.i3d import i3d_input, random_i3d_state_dict

WEIGHT_SEED, INPUT_SEED, FRAMES = 0, 1, 9  # 9 frames: the fewest the reference's 2x7x7 pool accepts


def reference_module(checkout: Path):
    spec = importlib.util.spec_from_file_location("pytorch_i3d", checkout / "pytorch_i3d.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkout", type=Path)
    ap.add_argument("--out", type=Path, default=Path("tests/data/i3d_reference.json"))
    ap.add_argument("--commit", default=None, help="the checkout's commit (default: git rev-parse HEAD in it)")
    a = ap.parse_args()
    commit = a.commit or subprocess.run(["git", "-C", str(a.checkout), "rev-parse", "HEAD"], capture_output=True,
                                        text=True).stdout.strip()
    ref = reference_module(a.checkout).InceptionI3d(400, in_channels=3).eval()
    keys = {k: list(v.shape) for k, v in ref.state_dict().items()}
    ref.load_state_dict(random_i3d_state_dict(torch.Generator().manual_seed(WEIGHT_SEED)))
    videos = torch.rand(2, FRAMES, 224, 224, 3, generator=torch.Generator().manual_seed(INPUT_SEED))
    with torch.no_grad():
        logits = ref(i3d_input(videos))  # [B, 400, T'] (spatially squeezed)
    data = {"source": f"piergiaj/pytorch-i3d pytorch_i3d.py @ {commit or 'unknown'}: "
                      "InceptionI3d(400, in_channels=3)",
            "weight_seed": WEIGHT_SEED, "input_seed": INPUT_SEED, "frames": FRAMES, "time_positions": logits.shape[2],
            "logits_time_mean": logits.mean(2).tolist(), "keys": keys}
    a.out.write_text(json.dumps(data) + "\n")
    print(f"wrote {a.out}: {len(keys)} keys, logits {tuple(logits.shape)}")


if __name__ == "__main__":
    main()
