"""Render the library's synthetic 4D scenes (or encode Blender renders of Objaverse objects) into a training
dataset (``train/data.py`` layout) through the project's own encoders.

    python -m train.prepare_data --out data/synthetic --encoders sv3d_p.safetensors --objects 200 --val-objects 8
    python -m train.prepare_data --out data/objaverse --encoders sv3d_p.safetensors --renders RENDERS --val-objects 8

Per object: a static orbit (fixed elevation, evenly spaced azimuths from a random start) and a dynamic orbit
(smoothly varying elevation and azimuth offsets, SV3D's "dynamic orbits"), each N views x F frames at S px,
encoded with the engine file's VAE encoder (posterior means) and CLIP image encoder. Validation objects also get a
"matrix" record: the kind's official matrix cameras (input view first) as uint8 images, for sampled image grids.
Shards and the manifest are written atomically; ``--overwrite`` is needed to replace an existing dataset.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import torch

from sv4d_models.camera import Cameras
from sv4d_models.files import atomic_path, atomic_write_json, check_writable
from sv4d_models.images import to_uint8
from sv4d_models.kinds import FOUR_D_KINDS, OFFICIAL_VIDEO_FRAMES, SV3D_N_VIEWS
from sv4d_models.pipeline import Placement, load_encoder_models
from sv4d_models.synthetic import KINDS as SCENE_KINDS
from sv4d_models.synthetic import SyntheticScene
from sv4d_models.cli import OneLineParser  # noqa: E402 - one-line argparse errors, as sv4d's

from .data import DATASET_FORMAT


def smooth_noise(g: torch.Generator, n: int, amplitude: float, width: float = 2.5) -> torch.Tensor:
    """Periodic smooth random values ``[n]`` (white noise convolved with a wrapped Gaussian), max |x| = amplitude."""
    x = torch.randn(n, generator=g, dtype=torch.float64)
    k = torch.arange(n, dtype=torch.float64)
    d = torch.minimum(k, n - k)
    kernel = torch.exp(-0.5 * (d / width) ** 2)
    y = torch.fft.ifft(torch.fft.fft(x) * torch.fft.fft(kernel)).real
    return y / y.abs().max().clamp_min(1e-9) * amplitude


def orbit(g: torch.Generator, n_views: int, dynamic: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(elevation_deg [N], azimuth_deg [N])`` of a static or dynamic orbit (elevation in [-5, 30] deg)."""
    elev0 = -5.0 + 35.0 * float(torch.rand(1, generator=g, dtype=torch.float64))
    start = 360.0 * float(torch.rand(1, generator=g, dtype=torch.float64))
    az = (start + 360.0 * torch.arange(n_views, dtype=torch.float64) / n_views) % 360.0
    elev = torch.full((n_views,), elev0, dtype=torch.float64)
    if dynamic:
        elev = (elev + smooth_noise(g, n_views, 10.0)).clamp(-10.0, 40.0)
        az = (az + smooth_noise(g, n_views, 0.3 * 360.0 / n_views)) % 360.0
    return elev, az


def render_orbit(scene: SyntheticScene, elev: torch.Tensor, az: torch.Tensor, n_frames: int, size: int) -> torch.Tensor:
    """``[F, N, S, S, 3]`` in [0, 1] on white."""
    cams = Cameras.orbit(az, elev)
    times = torch.linspace(0.0, 1.0, n_frames) if n_frames > 1 else torch.zeros(1)
    return torch.stack([scene.render(cams, float(t), size)["rgb"] for t in times])


def encode(models, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[F, N, S, S, 3]`` -> latents ``[F, N, 4, h, w]`` and CLIP ``[F, N, D]`` (float16)."""
    f, n = images.shape[:2]
    x = images.flatten(0, 1).permute(0, 3, 1, 2) * 2.0 - 1.0
    lat = models.encode("concat", x).cpu()
    clip = models.clip_embed(x)
    return lat.view(f, n, *lat.shape[1:]).half(), clip.view(f, n, -1).half()


class ShardWriter:
    """Collects tensors and writes them as ``shard_NNNNN.safetensors`` files of about ``shard_bytes``."""

    def __init__(self, folder: Path, shard_bytes: int):
        self.folder, self.shard_bytes = folder, shard_bytes
        self.tensors: dict[str, torch.Tensor] = {}
        self.shards: list[dict] = []

    @property
    def current(self) -> str:
        return f"shard_{len(self.shards):05d}.safetensors"

    def add(self, rid: str, tensors: dict[str, torch.Tensor]) -> str:
        name = self.current
        self.tensors.update({f"{rid}.{k}": v.contiguous() for k, v in tensors.items()})
        if sum(t.numel() * t.element_size() for t in self.tensors.values()) >= self.shard_bytes:
            self.flush()
        return name

    def flush(self) -> None:
        if not self.tensors:
            return
        from safetensors.torch import save_file

        path = self.folder / self.current
        with atomic_path(path, overwrite=True) as tmp:
            save_file(self.tensors, str(tmp), metadata={"format": DATASET_FORMAT})
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        self.shards.append({"file": path.name, "bytes": path.stat().st_size, "sha256": digest})
        self.tensors = {}


def object_records(i: int, split: str, args, models, writer: ShardWriter, g: torch.Generator) -> list[dict]:
    """Render and encode object ``i`` (both orbits; validation objects also the kind's matrix)."""
    scene = SyntheticScene.make(kind=args.scene_kinds[i % len(args.scene_kinds)], seed=args.seed * 100_003 + i)
    records = []
    for name, dynamic in (("static", False), ("dynamic", True)):
        elev, az = orbit(g, args.views, dynamic)
        latents, clip = encode(models, render_orbit(scene, elev, az, args.frames, args.size))
        rid = f"obj{i:05d}_{name}"
        shard = writer.add(rid, {"latents": latents, "clip": clip, "elevation": elev.float(), "azimuth": az.float()})
        records.append(dict(rid=rid, shard=shard, object_id=f"obj{i:05d}", orbit=name, split=split,
                            n_frames=args.frames, n_views=args.views))
    if split == "val":
        gt = scene.render_matrix(model_kind=args.matrix_kind, n_frames=args.frames, size=args.size)
        images = to_uint8(gt["images"])
        cams = gt["cameras"]
        rid = f"obj{i:05d}_matrix"
        shard = writer.add(rid, {"images": images, "elevation": cams.elevation_deg.float(),
                                 "azimuth": cams.azimuth_deg.float()})
        records.append(dict(rid=rid, shard=shard, object_id=f"obj{i:05d}", orbit="matrix", split=split,
                            n_frames=args.frames, n_views=len(cams)))
    return records


def read_render_folder(folder: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A Blender orbit folder (``train/blender/render_objaverse.py``) -> images ``[F, N, S, S, 3]`` on white,
    elevation and azimuth ``[N]`` (deg)."""
    import numpy as np
    from PIL import Image

    from sv4d_models.files import read_json

    cams = read_json(folder / "cameras.json", "an orbit's cameras")
    n_frames, n_views = int(cams["n_frames"]), len(cams["azimuth_deg"])
    rows = []
    for t in range(n_frames):
        views = []
        for v in range(n_views):
            path = folder / f"f{t:03d}_v{v:03d}.png"
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing ({n_frames} frames x {n_views} views expected)")
            rgba = np.asarray(Image.open(path).convert("RGBA"), dtype=np.float32) / 255.0
            views.append(torch.from_numpy(rgba[..., :3] * rgba[..., 3:] + (1.0 - rgba[..., 3:])))
        rows.append(torch.stack(views))
    return torch.stack(rows), torch.tensor(cams["elevation_deg"]), torch.tensor(cams["azimuth_deg"])


def render_records(args, models, writer: ShardWriter) -> tuple[list[dict], int]:
    """Every accepted object of a Blender renders folder; the last ``--val-objects`` (sorted by id) are held out."""
    from tqdm import tqdm

    from sv4d_models.files import read_json

    root = Path(args.renders)
    objects = sorted(p for p in root.iterdir() if p.is_dir() and (p / "curation.json").is_file()
                     and read_json(p / "curation.json", "a curation record").get("accepted"))
    if not objects:
        raise FileNotFoundError(f"{root} holds no accepted objects (folders with curation.json accepted: true)")
    records, size = [], 0
    for i, obj in enumerate(tqdm(objects, desc="objects", unit="obj", disable=args.quiet)):
        split = "val" if i >= len(objects) - args.val_objects else "train"
        for name in ("static", "dynamic", "matrix"):
            if not (obj / name / "cameras.json").is_file():
                continue
            images, elev, az = read_render_folder(obj / name)
            if size and images.shape[2] != size:
                raise ValueError(f"{obj / name} renders are {images.shape[2]} px but earlier ones are {size} px; "
                                 "render every object at one --size")
            size, rid = images.shape[2], f"{obj.name}_{name}"
            if name == "matrix":
                tensors = {"images": to_uint8(images)}
            else:
                latents, clip = encode(models, images)
                tensors = {"latents": latents, "clip": clip}
            shard = writer.add(rid, {**tensors, "elevation": elev.float(), "azimuth": az.float()})
            records.append(dict(rid=rid, shard=shard, object_id=obj.name, orbit=name, split=split,
                                n_frames=images.shape[0], n_views=images.shape[1]))
    return records, size


def prepare(args: argparse.Namespace) -> Path:
    from tqdm import tqdm

    out = Path(args.out)
    check_writable(out / "manifest.json", args.overwrite)
    out.mkdir(parents=True, exist_ok=True)
    models = load_encoder_models(args.encoders, args.matrix_kind, placement=Placement(torch.device(args.device)))
    writer, g = ShardWriter(out, int(args.shard_mb * 2**20)), torch.Generator().manual_seed(args.seed)
    if args.renders:
        records, args.size = render_records(args, models, writer)
        args.frames, args.views = records[0]["n_frames"], records[0]["n_views"]
    else:
        records = []
        for i in tqdm(range(args.objects + args.val_objects), desc="objects", unit="obj", disable=args.quiet):
            records += object_records(i, "train" if i < args.objects else "val", args, models, writer, g)
    writer.flush()
    manifest = {"format": DATASET_FORMAT, "image_size": args.size, "latent_size": args.size // 8,
                "clip_dim": int(models.clip_embed(torch.zeros(1, 3, args.size, args.size)).shape[-1]),
                "n_frames": args.frames, "n_views": args.views, "matrix_kind": args.matrix_kind,
                "encoders": models.source, "seed": args.seed, "scene_kinds": list(args.scene_kinds),
                "shards": [s["file"] for s in writer.shards], "shard_info": writer.shards, "records": records}
    atomic_write_json(out / "manifest.json", manifest, overwrite=True)
    if not args.quiet:
        print(f"wrote {len(records)} records in {len(writer.shards)} shard(s) to {out}")
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = OneLineParser(prog="python -m train.prepare_data", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="dataset folder (manifest.json + shards)")
    p.add_argument("--renders", default=None, help="encode a Blender renders folder (train/blender/render_objaverse.py) "
                                                   "instead of rendering synthetic scenes")
    p.add_argument("--encoders", required=True, help="engine checkpoint whose VAE encoder / CLIP encode the renders")
    p.add_argument("--objects", type=int, default=32, help="training objects")
    p.add_argument("--val-objects", type=int, default=2, help="held-out objects (orbit + matrix records)")
    p.add_argument("--size", type=int, default=64, help="render size in pixels (a multiple of 8)")
    p.add_argument("--views", type=int, default=SV3D_N_VIEWS, help="views per orbit")
    p.add_argument("--frames", type=int, default=OFFICIAL_VIDEO_FRAMES, help="frames per orbit")
    p.add_argument("--scene-kinds", nargs="+", default=list(SCENE_KINDS), choices=SCENE_KINDS)
    p.add_argument("--matrix-kind", default="sv4d", choices=FOUR_D_KINDS, help="cameras of the validation matrix")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shard-mb", type=float, default=256.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    problems = [f"--{k.replace('_', '-')}={getattr(args, k)} must be >= {lo}" for k, lo in
                (("objects", 1), ("val_objects", 0), ("views", 2), ("frames", 1), ("size", 8)) if getattr(args, k) < lo]
    if args.size % 8:
        problems.append(f"--size={args.size} must be a multiple of 8 (the VAE downsamples by 8)")
    if problems:
        p.error("; ".join(problems))
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        prepare(parse_args(argv))
    except (FileExistsError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
