"""The README's pictures, from a real ``sv4d demo`` run (runs one into ``--demo`` when that folder has none):

- ``docs/demo_views.png``: the middle frame, true views (top row) vs the demo model's generated views (bottom row),
  column 0 = the input view;
- ``docs/demo_grid.png``: the job's ``grid.png`` (rows = frames, columns = views);
- ``docs/demo_turntable.png``: 8 evenly spaced frames of ``reconstruction/turntable.mp4`` (the 4D fit on the
  generated views: the camera circles the object while time runs).

    python scripts/readme_pictures.py [--demo sv4d_demo] [--docs docs]
"""
from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _png(array: np.ndarray, scale: int = 1) -> bytes:
    from PIL import Image

    im = Image.fromarray(array)
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _strip(images, pad: int = 4) -> np.ndarray:
    """Images ``[N, H, W, 3]`` uint8 side by side on white with ``pad`` px gaps."""
    n, h, w, _ = images.shape
    out = np.full((h, n * w + (n - 1) * pad, 3), 255, np.uint8)
    for i, im in enumerate(images):
        out[:, i * (w + pad):i * (w + pad) + w] = im
    return out


def main(argv=None) -> int:
    import imageio.v3 as iio

    from sv4d_models.demo import DEMO_FRAMES, ground_truth
    from sv4d_models.files import atomic_write_bytes
    from sv4d_models.frames_io import load_frames
    from sv4d_models.images import to_uint8

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", default="sv4d_demo", help="output folder of `sv4d demo` (run there when missing)")
    ap.add_argument("--docs", default=str(ROOT / "docs"))
    a = ap.parse_args(argv)
    demo, docs = Path(a.demo), Path(a.docs)
    if not (demo / "manifest.json").is_file():
        subprocess.run([sys.executable, "-m", "sv4d_models", "demo", "--out", str(demo), "--quiet"], check=True)
    docs.mkdir(parents=True, exist_ok=True)
    mid = DEMO_FRAMES // 2
    views = np.stack([to_uint8(np.asarray(load_frames(demo / "videos" / f"v{v:03d}.mp4")[mid][..., :3]))
                      for v in range(len(list((demo / "videos").glob("v*.mp4"))))])
    truth = ground_truth("sv4d2_8views", views.shape[1])["images"][mid]
    truth = to_uint8(truth).numpy()
    pad = np.full((4, _strip(views).shape[1], 3), 255, np.uint8)
    atomic_write_bytes(docs / "demo_views.png", _png(np.concatenate([_strip(truth), pad, _strip(views)]), 2),
                       overwrite=True)
    atomic_write_bytes(docs / "demo_grid.png", (demo / "grid.png").read_bytes(), overwrite=True)
    tt = iio.imread(demo / "reconstruction" / "turntable.mp4", plugin="pyav")
    pick = np.linspace(0, len(tt) - 1, 8).round().astype(int)
    atomic_write_bytes(docs / "demo_turntable.png", _png(_strip(tt[pick]), 1 if tt.shape[1] >= 128 else 2),
                       overwrite=True)
    print(f"wrote {docs}/demo_views.png, demo_grid.png, demo_turntable.png from {demo}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
