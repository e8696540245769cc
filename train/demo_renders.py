"""Render the library's synthetic scenes into a renders folder (the Blender script's layout), the one set of images
the demo model's VAE, image encoder and UNet dataset are all made from.

    python -m train.demo_renders --out runs/demo/renders --objects 96 --val-objects 2 --views 12 --frames 9 --size 64

Layout (what ``python -m train.prepare_data --renders`` reads; ``train/blender/render_objaverse.py`` writes it)::

    OUT/obj_{i:05d}/curation.json                 {"accepted": true, "scene": name, "seed": s, "split": ...}
    OUT/obj_{i:05d}/static/f{t:03d}_v{v:03d}.png  RGB on white, t = frame, v = view
    OUT/obj_{i:05d}/static/cameras.json           elevation_deg / azimuth_deg per view, n_frames
    OUT/obj_{i:05d}/matrix/...                    held-out objects only: the kind's matrix cameras (input first)

Orbits: one fixed elevation per object (uniform in [-5, 25] deg) and ``views`` azimuths ``start + k * 360 / views``,
each jittered by up to +-0.4 of the spacing, so relative camera offsets are continuous (the demo's matrix asks for
30, 75, 120, ... deg). Frame ``t`` is at time ``t / (frames - 1)``, as ``render_matrix`` and the pipeline use. Scene
``i`` is ``SyntheticScene.make(kind=("static", "rigid", "nonrigid")[i % 3], seed=seed_base + i)``; held-out objects
use ``val_seed_base + i``. Rendering runs one view set per frame; use OMP_NUM_THREADS=1 (with 2 threads on a
shared machine the sphere tracer is ~20x slower).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from sv4d_models.camera import Cameras
from sv4d_models.images import to_uint8
from sv4d_models.kinds import FOUR_D_KINDS
from sv4d_models.synthetic import KINDS as SCENE_KINDS
from sv4d_models.synthetic import SyntheticScene
from sv4d_models.cli import OneLineParser  # noqa: E402 - one-line argparse errors, as sv4d's

TRAIN_SEED_BASE = 1_000  # training objects: seeds 1000, 1001, ...
VAL_SEED_BASE = 500_000  # held-out objects of the dataset (validation grids); benchmarks use seeds >= 900000


def jittered_orbit(g: torch.Generator, n_views: int, jitter: float = 0.4) -> tuple[torch.Tensor, torch.Tensor]:
    """``(elevation_deg [N], azimuth_deg [N])``: one elevation in [-5, 25], azimuths evenly spaced from a random
    start with a uniform jitter of +-``jitter`` spacings (order kept)."""
    elev = -5.0 + 30.0 * float(torch.rand(1, generator=g, dtype=torch.float64))
    start = 360.0 * float(torch.rand(1, generator=g, dtype=torch.float64))
    spacing = 360.0 / n_views
    jit = (torch.rand(n_views, generator=g, dtype=torch.float64) * 2.0 - 1.0) * jitter * spacing
    az = (start + spacing * torch.arange(n_views, dtype=torch.float64) + jit) % 360.0
    return torch.full((n_views,), elev, dtype=torch.float64), az


def save_pngs(folder: Path, images: torch.Tensor) -> None:
    """``[F, N, S, S, 3]`` in [0, 1] -> ``folder/f{t:03d}_v{v:03d}.png``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    data = to_uint8(images).numpy()
    for t in range(data.shape[0]):
        for v in range(data.shape[1]):
            Image.fromarray(data[t, v]).save(folder / f"f{t:03d}_v{v:03d}.png")


def render_object(scene: SyntheticScene, folder: Path, elev: torch.Tensor, az: torch.Tensor, n_frames: int,
                  size: int) -> None:
    """Render ``n_frames`` x N views of ``scene`` into ``folder`` (PNGs + cameras.json)."""
    cams = Cameras.orbit(az, elev)
    times = torch.linspace(0.0, 1.0, n_frames) if n_frames > 1 else torch.zeros(1)
    images = torch.stack([scene.render(cams, float(t), size)["rgb"] for t in times])  # [F, N, S, S, 3]
    save_pngs(folder, images)
    (folder / "cameras.json").write_text(json.dumps({"elevation_deg": elev.tolist(), "azimuth_deg": az.tolist(),
                                                     "n_frames": n_frames, "size": size}))


def render_all(args: argparse.Namespace) -> Path:
    """Every object of the folder (held-out ones last in sorted order); existing complete objects are kept."""
    from tqdm import tqdm

    out = Path(args.out)
    jobs = [(i, "train", args.seed_base + i) for i in range(args.objects)]
    jobs += [(args.objects + j, "val", args.val_seed_base + j) for j in range(args.val_objects)]
    for i, split, seed in tqdm(jobs, desc="render", unit="obj", disable=args.quiet):
        obj = out / f"obj_{i:05d}"
        if (obj / "curation.json").is_file():
            continue  # rendered by an earlier (interrupted) run with the same arguments
        kind = SCENE_KINDS[i % len(SCENE_KINDS)]
        scene = SyntheticScene.make(kind=kind, seed=seed)
        elev, az = jittered_orbit(torch.Generator().manual_seed(seed), args.views)
        render_object(scene, obj / "static", elev, az, args.frames, args.size)
        if split == "val":
            gt = scene.render_matrix(model_kind=args.matrix_kind, n_frames=args.frames, size=args.size)
            save_pngs(obj / "matrix", gt["images"])
            cams = gt["cameras"]
            (obj / "matrix" / "cameras.json").write_text(json.dumps({
                "elevation_deg": cams.elevation_deg.tolist(), "azimuth_deg": cams.azimuth_deg.tolist(),
                "n_frames": args.frames, "size": args.size}))
        (obj / "curation.json").write_text(json.dumps({"accepted": True, "scene": scene.name, "seed": seed,
                                                       "split": split}))
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = OneLineParser(prog="python -m train.demo_renders", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="renders folder")
    p.add_argument("--objects", type=int, default=96, help="training objects")
    p.add_argument("--val-objects", type=int, default=2, help="held-out objects (also rendered at matrix cameras)")
    p.add_argument("--views", type=int, default=12)
    p.add_argument("--frames", type=int, default=9)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--matrix-kind", default="sv4d2_8views", choices=FOUR_D_KINDS)
    p.add_argument("--seed-base", type=int, default=TRAIN_SEED_BASE)
    p.add_argument("--val-seed-base", type=int, default=VAL_SEED_BASE)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.objects < 1 or args.val_objects < 0 or args.views < 9 or args.frames < 5 or args.size % 8:
        p.error(f"need --objects >= 1, --val-objects >= 0, --views >= 9, --frames >= 5 and --size a multiple of 8; "
                f"got {args.objects}, {args.val_objects}, {args.views}, {args.frames}, {args.size}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = render_all(args)
    if not args.quiet:
        print(f"rendered {args.objects} + {args.val_objects} objects to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
