"""Render the bundled demo clip ``sv4d_models/assets/demo_input.gif``: the input view (matrix column 0) of the demo
object (``sv4d_models.demo.DEMO_SCENE``, a synthetic scene the demo model never trained on), 9 frames at 64 px.

The clip is exactly ``demo.ground_truth(...)["images"][:, 0]`` up to the gif's 256-colour palette, so the demo can
score the generated views against the object's true views. Run from the repository root:
    python scripts/make_demo_input.py [--out sv4d_models/assets/demo_input.gif]
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    from PIL import Image

    from sv4d_models.assets import DEMO_IMAGE_SIZE, DEMO_KIND
    from sv4d_models.demo import DEMO_INPUT, ground_truth
    from sv4d_models.files import atomic_write_bytes

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(DEMO_INPUT))
    a = ap.parse_args(argv)
    frames = ground_truth(DEMO_KIND, DEMO_IMAGE_SIZE)["images"][:, 0]  # [F, S, S, 3] in [0, 1]
    images = [Image.fromarray((f.clamp(0, 1) * 255).round().byte().numpy()) for f in frames]


    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=125, loop=0, optimize=False)
    atomic_write_bytes(Path(a.out), buf.getvalue(), overwrite=True)
    print(f"wrote {a.out}: {len(images)} frames at {DEMO_IMAGE_SIZE} px")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
