"""Regenerate tests/data/preprocess_official_parity.npz by running the *unmodified* official SV4D preprocessing.

The official functions (``preprocess_video``, ``read_video`` and the readers they call) are parsed out of
``scripts/demo/sv4d_helpers.py`` of a local Stability-AI/generative-models checkout and executed as they are; the
heavy module-level imports of that file (sgm, rembg, ...) are skipped, only what the four functions use is supplied.
Nothing of the official code is stored in this repository, only its outputs on small synthetic inputs.

Needs (dev only): opencv-python-headless, torchvision, a generative-models checkout (a working tree or a bare git dir).
Usage: python scripts/make_preprocess_parity_fixture.py /path/to/generative-models [--out tests/data/...npz]
"""
from __future__ import annotations

import argparse
import ast
import os
import subprocess
import tempfile
from glob import glob
from pathlib import Path

import numpy as np

HELPERS = "scripts/demo/sv4d_helpers.py"
N_FRAMES, SIZE, RATIO = 5, 64, 0.917
# name -> (mode, H, W, object rows, object cols): wide/tall non-square inputs exercise the official axis mixing;
# "rgba_tall_top" is the case where the mixed axes crop the object away entirely.
CASES = {
    "rgba_wide": ("RGBA", 48, 80, (14, 34), (24, 60)),
    "rgb_tall": ("RGB", 80, 48, (10, 40), (12, 36)),
    "rgba_tall_top": ("RGBA", 96, 48, (2, 10), (14, 34)),
    "rgba_square": ("RGBA", 72, 72, (8, 60), (20, 50)),
}


def official_functions(repo: str) -> dict:
    if os.path.isfile(os.path.join(repo, HELPERS)):
        src = Path(repo, HELPERS).read_text()
    else:  # bare git dir
        src = subprocess.run(["git", "-C", repo, "show", f"HEAD:{HELPERS}"], capture_output=True, text=True,
                             check=True).stdout
    wanted = {"read_gif", "read_mp4", "read_video", "preprocess_video"}
    tree = ast.parse(src)
    mod = ast.Module(body=[n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in wanted],
                     type_ignores=[])
    import cv2
    import imageio
    import torch
    from PIL import Image, ImageSequence
    from torchvision.transforms import ToTensor

    ns = dict(cv2=cv2, imageio=imageio, np=np, torch=torch, Image=Image, ImageSequence=ImageSequence, glob=glob,
              Path=Path, os=os, ToTensor=ToTensor, remove=None)
    exec(compile(mod, HELPERS, "exec"), ns)  # noqa: S102 - the official functions, run unmodified
    return ns


def make_frames(mode: str, h: int, w: int, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """uint8 [N, H, W, C]: a shaded, slightly moving rectangle on transparent (RGBA) or white (RGB) ground."""
    out = []
    for i in range(N_FRAMES):
        a = np.zeros((h, w, 4), np.uint8) if mode == "RGBA" else np.full((h, w, 4), 255, np.uint8)
        r0, r1, c0, c1 = rows[0] + i % 2, rows[1], cols[0], cols[1] - i % 3
        yy, xx = np.mgrid[r0:r1, c0:c1]
        a[r0:r1, c0:c1, 0] = 40 + 150 * (yy - r0) // max(1, r1 - r0)
        a[r0:r1, c0:c1, 1] = 30 + 120 * (xx - c0) // max(1, c1 - c0)
        a[r0:r1, c0:c1, 2] = 90 + 60 * ((yy // 4 + xx // 4) % 2)
        a[r0:r1, c0:c1, 3] = 255
        out.append(a if mode == "RGBA" else a[..., :3])
    return np.stack(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", help="generative-models checkout or bare git dir")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests/data/"
                                             "preprocess_official_parity.npz"))
    parser.add_argument("--overwrite", action="store_true", help="replace an existing fixture")
    args = parser.parse_args()
    if Path(args.out).exists() and not args.overwrite:
        raise SystemExit(f"{args.out} exists; pass --overwrite to replace it")
    from PIL import Image

    ns, arrays = official_functions(args.repo), {}
    captured: dict = {}
    real_mimwrite = ns["imageio"].mimwrite

    def capture(path, frames, fps):  # record what the official code writes, then write it for real
        captured["frames"] = np.stack(frames)
        real_mimwrite(path, frames, fps=fps)

    ns["imageio"].mimwrite = capture
    try:
        for name, (mode, h, w, rows, cols) in CASES.items():
            frames = make_frames(mode, h, w, rows, cols)
            with tempfile.TemporaryDirectory() as tmp:
                for i, f in enumerate(frames):
                    Image.fromarray(f, mode).save(os.path.join(tmp, f"{i:03d}.png"))
                mp4 = ns["preprocess_video"](tmp, n_frames=N_FRAMES, W=SIZE, H=SIZE, output_folder=tmp,
                                             image_frame_ratio=RATIO)
                final = ns["read_video"](mp4, N_FRAMES, device="cpu")
            arrays[f"{name}/input"] = frames
            arrays[f"{name}/premp4"] = captured["frames"]  # [N, SIZE, SIZE, 3] uint8 before the mp4
            arrays[f"{name}/final"] = np.stack([  # [N, SIZE, SIZE, 3] uint8 after the OpenCV mp4 read-back
                ((t[0].permute(1, 2, 0).numpy() + 1) / 2 * 255).round().astype(np.uint8) for t in final])
    finally:
        ns["imageio"].mimwrite = real_mimwrite
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = out.with_suffix(".tmp.npz")
    np.savez_compressed(tmp_path, ratio=RATIO, size=SIZE, **arrays)
    os.replace(tmp_path, out)
    print(f"wrote {out} ({out.stat().st_size} bytes): {sorted(CASES)}")


if __name__ == "__main__":
    main()
