"""Command line: the whole chain on the embedded default, or on a user video with official checkpoints.

    python -m sv4d_models demo [--out sv4d_demo]            # embedded default, CPU, a few minutes, no weights needed
    python -m sv4d_models run VIDEO --checkpoint sv4d.safetensors --sv3d sv3d_u.safetensors --out runs/x [--gpu-preset]

``demo`` renders the built-in animated synthetic object as the input video, writes tiny random checkpoints with the
official key layout and runs the SV4D sampling stage on them (its images are noise: the weights are random; the
run shows every stage, resume files and outputs), then fits the dynamic NeRF on the object's exact multi-view
matrix (what a perfect SV4D would produce) and writes the exports. ``run`` does the real thing: sampling with the
official weights, then the reconstruction of the sampled matrix.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from .kinds import FOUR_D_KINDS


def _progress(prefix: str, every: int = 10):
    start = time.time()

    def callback(info: dict) -> None:
        step = info.get("global_step", info.get("step", 0))
        if step % every == 0:
            loss = f" loss {info['loss']:.4f}" if "loss" in info else ""
            total = info.get("global_total", "")
            print(f"[{prefix}] step {step}{'/' + str(total) if total else ''}{loss} ({time.time() - start:.0f}s)", flush=True)

    return callback


def _fit_config(preset: str, steps: int | None):
    import dataclasses

    from .nerf.fit_config import PRESETS

    cfg = PRESETS["tiny" if preset == "test" else preset]()
    if steps is not None:
        cfg = dataclasses.replace(cfg, static_steps=steps // 3, dynamic_steps=steps - steps // 3)
    return cfg


def cmd_demo(a: argparse.Namespace) -> int:
    from .pipeline import SV4DPipeline
    from .reconstruction import ExportSettings, reconstruct
    from .synthetic import SyntheticScene
    from .tiny_checkpoint import write_tiny_checkpoint

    out = Path(a.out)
    if out.exists() and any(out.iterdir()) and not a.resume:
        raise SystemExit(f"{out} is not empty; pass --resume to continue it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    scene = SyntheticScene.make(kind="nonrigid", seed=a.seed)
    gt = scene.render_matrix(model_kind="sv4d", n_frames=a.frames, size=a.size)
    print(f"[demo] synthetic object: {a.frames} frames x {gt['images'].shape[1]} views at {a.size}px")
    ckpt = out / "checkpoints"
    files = {k: ckpt / f"tiny_{k}.safetensors" for k in ("sv4d", "sv3d_u")}
    for kind, path in files.items():
        if not path.exists():
            write_tiny_checkpoint(path, kind, seed=0)
    pipe = SV4DPipeline.from_checkpoints(files["sv4d"], files["sv3d_u"], device="cpu").configure(
        image_size=a.size, num_steps=a.steps, seed=a.seed)
    video = gt["images"][:, 0]  # the input view of every frame, [F, S, S, 3] in [0, 1]
    result = pipe.run(video, work_dir=out / "sampling", callback=_progress("sv4d sampling", 1))
    result.write_videos(out / "sampling_videos", overwrite=a.resume)
    print(f"[demo] sampling stage: {len(result.plan.passes)} passes over {result.n_frames} frames "
          f"-> {out / 'sampling_videos'} (tiny random weights: the generated views are noise)")
    export = ExportSettings(turntable_frames=24, turntable_size=96, mesh_resolution=64)
    paths = reconstruct(gt["images"], gt["masks"], gt["cameras"], gt["times"], out / "reconstruction",
                        config=_fit_config(a.preset, a.fit_steps), export=export, callback=_progress("nerf", 25),
                        overwrite=a.resume)
    _report(out, paths)
    return 0


def cmd_run(a: argparse.Namespace) -> int:
    from .pipeline import SV4DPipeline
    from .reconstruction import reconstruct

    out = Path(a.out)
    pipe = SV4DPipeline.from_checkpoints(a.checkpoint, a.sv3d, device=a.device, model_kind=a.model_kind)
    changes = {k: v for k, v in dict(num_steps=a.steps, seed=a.seed, image_size=a.image_size, mode=a.mode).items() if v is not None}
    pipe = pipe.configure(**changes)
    result = pipe.run(a.video, work_dir=out / "sampling", callback=_progress("sampling", 1))
    result.write_videos(out / "videos", overwrite=True)
    images = result.images
    masks = (images < 0.97).any(-1).float()  # white background -> foreground mask (SV3D authors' rule)
    paths = reconstruct(images, masks, result.cameras, result.times, out / "reconstruction",
                        config=_fit_config(a.preset, a.fit_steps), callback=_progress("nerf", 50))
    _report(out, paths)
    return 0


def _report(out: Path, paths: dict) -> None:
    fit = paths.pop("fit")
    summary = {k: str(v) if not isinstance(v, list) else f"{len(v)} files" for k, v in paths.items()}
    summary["nerf_steps"] = fit.step
    print(json.dumps(summary, indent=1))
    print(f"[done] outputs in {out}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sv4d_models", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="whole chain on the embedded synthetic object (CPU, no weights needed)")
    d.add_argument("--out", default="sv4d_demo")
    d.add_argument("--frames", type=int, default=9)
    d.add_argument("--size", type=int, default=64, help="image size (multiple of 16 for the tiny UNet)")
    d.add_argument("--steps", type=int, default=2, help="sampler steps per pass")
    d.add_argument("--preset", choices=("tiny", "test", "cpu", "gpu"), default="cpu",
                   help="NeRF fit preset (test = tiny)")
    d.add_argument("--fit-steps", type=int, default=None, help="override the preset's total NeRF steps")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--resume", action="store_true", help="continue an interrupted demo in --out")
    d.set_defaults(func=cmd_demo)
    r = sub.add_parser("run", help="video -> SV4D sampling (official weights) -> 4D reconstruction and exports")
    r.add_argument("video")
    r.add_argument("--checkpoint", required=True, help="sv4d.safetensors / sv4d2.safetensors / sv4d2_8views.safetensors")
    r.add_argument("--sv3d", default=None, help="sv3d_u.safetensors or sv3d_p.safetensors (SV4D only)")
    r.add_argument("--model-kind", default=None, choices=FOUR_D_KINDS)
    r.add_argument("--out", required=True)
    r.add_argument("--device", default=None)
    r.add_argument("--steps", type=int, default=None)
    r.add_argument("--seed", type=int, default=None)
    r.add_argument("--image-size", type=int, default=None)
    r.add_argument("--mode", choices=("auto", "official", "extended"), default=None)
    r.add_argument("--preset", choices=("cpu", "gpu"), default="gpu")
    r.add_argument("--fit-steps", type=int, default=None)
    r.set_defaults(func=cmd_run)
    a = p.parse_args(argv)
    return a.func(a)
