"""Make the demo model from scratch: synthetic renders -> VAE (three stages) -> image encoder -> encoders engine file
-> dataset -> SV4D 2.0 8-view UNet (``train/configs/demo.yaml``) -> float16 engine file in the official layout + a card.

VAE stages: 800 steps on 32 px crops + 60 on whole images; 300 more on whole images (lr 5e-4), then the latents are
rescaled; 300 decoder-only steps (the latent space, hence the dataset, is fixed from here on).

    OMP_NUM_THREADS=1 python -m train.make_demo_model                      # the committed recipe (2-core CPU, ~3.5 h)
    OMP_NUM_THREADS=1 python -m train.make_demo_model --toy --work /tmp/demo_toy --out /tmp/demo_toy/model.safetensors

Every stage is seeded and skipped when its output exists (the UNet trainer resumes from its checkpoints), so an
interrupted run continues. Stage timings are printed and stored in the card
(``sv4d_models/assets/sv4d2_8views_demo.json``). The output loads like Stability's files:
``SV4DPipeline.from_checkpoints(path, config={"image_size": 64, ...})`` / ``load_unet(path)``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch
from sv4d_models.cli import OneLineParser  # noqa: E402 - one-line argparse errors, as sv4d's

REPO = Path(__file__).resolve().parents[1]
DEMO_MODEL = REPO / "sv4d_models" / "assets" / "sv4d2_8views_demo.safetensors"
CLIP_PREFIX = "conditioner.embedders.0.open_clip.model."
VAE_PREFIX = "conditioner.embedders.1.encoder."
DECODER_PREFIX = "first_stage_model.decoder."
MAX_BYTES = 20 * 2**20  # the demo model's size budget (issue 11)


def build_encoders_file(vae_path: Path, clip_path: Path, out: Path) -> Path:
    """Engine file with the demo VAE (encoder + quant_conv under embedder 1, decoder under first_stage_model) and
    image encoder (``visual.*`` under embedder 0) in the official key layout; no UNet (``model.encoders``)."""
    from safetensors.torch import load_file, save_file

    from sv4d_models.files import atomic_path

    vae, clip = load_file(str(vae_path)), load_file(str(clip_path))
    state = {CLIP_PREFIX + k: v for k, v in clip.items()}
    state.update({VAE_PREFIX + k: v for k, v in vae.items() if k.startswith(("encoder.", "quant_conv."))})
    state.update({DECODER_PREFIX + k[len("decoder."):]: v for k, v in vae.items() if k.startswith("decoder.")})
    with atomic_path(out, overwrite=True) as tmp:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    return out


def to_float16(src: Path, out: Path, card: dict) -> Path:
    """Copy an engine file with every floating tensor in float16 (metadata kept, the card added as JSON)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from sv4d_models.files import atomic_path

    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata() or {})
        state = {k: f.get_tensor(k) for k in f.keys()}
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    meta["sv4d_demo_card"] = json.dumps(card)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, overwrite=True) as tmp:
        save_file(state, str(tmp), metadata=meta)
    if out.stat().st_size > MAX_BYTES:
        raise RuntimeError(f"{out} is {out.stat().st_size / 2**20:.1f} MiB, over the 20 MiB budget; use smaller widths")
    return out


def _stage(name: str, timings: dict, done: bool, fn) -> None:
    if done:
        print(f"== {name}: output exists, skipped", flush=True)
        return
    print(f"== {name}", flush=True)
    started = time.perf_counter()
    fn()
    timings[name] = round(time.perf_counter() - started, 1)
    print(f"== {name}: {timings[name]:.0f} s", flush=True)


def encoder_stages(args: argparse.Namespace, work: Path, timings: dict, n_obj: int, n_val: int) -> Path:
    """Renders, the three VAE stages, the image encoder and the encoders engine file (``model.encoders``)."""
    from train import demo_renders, train_image_encoder, train_vae

    renders, clip, encoders = work / "renders", work / "clip.safetensors", work / "encoders.safetensors"
    vae1, vae2, vae3 = (work / f"vae{n}.safetensors" for n in ("_stage1", "", "_final"))
    toy = ["--full-steps", "2", "--batch", "8"] if args.toy else None
    _stage("render", timings, (renders / f"obj_{n_obj + n_val - 1:05d}" / "curation.json").is_file(),
           lambda: demo_renders.main(["--out", str(renders), "--objects", str(n_obj), "--val-objects", str(n_val),
                                      "--views", "12", "--frames", "9", "--size", "64", "--quiet"]))
    _stage("vae", timings, vae1.is_file(), lambda: train_vae.main(
        ["--renders", str(renders), "--out", str(vae1), "--std-stride", "1",
         "--steps", "4" if args.toy else str(args.vae_steps),
         *(toy or ["--full-steps", str(args.vae_full_steps)])]))
    _stage("vae_refine", timings, vae2.is_file(), lambda: train_vae.main(
        ["--renders", str(renders), "--out", str(vae2), "--init", str(vae1), "--steps", "0", "--lr", "5e-4",
         "--seed", "1", *(toy or ["--full-steps", str(args.vae_refine_steps)])]))
    _stage("decoder_refine", timings, vae3.is_file(), lambda: train_vae.main(
        ["--renders", str(renders), "--out", str(vae3), "--init", str(vae2), "--decoder-only", "--steps", "0",
         "--lr", "5e-4", "--seed", "2", *(toy or ["--full-steps", str(args.decoder_steps)])]))
    _stage("image_encoder", timings, clip.is_file(), lambda: train_image_encoder.main(
        ["--renders", str(renders), "--out", str(clip), "--steps", "4" if args.toy else str(args.clip_steps),
         "--batch", "8" if args.toy else "32"]))
    _stage("encoders_file", timings, encoders.is_file(), lambda: build_encoders_file(vae3, clip, encoders))
    return encoders


def run_recipe(args: argparse.Namespace) -> Path:
    """Every stage (skipping finished ones), then the float16 engine file and its card."""
    from train import prepare_data
    from train.config import load_config
    from train.train import run

    work, timings = Path(args.work), {}
    n_obj, n_val = (8, 1) if args.toy else (args.objects, 2)
    encoders, data = encoder_stages(args, work, timings, n_obj, n_val), work / "data"
    _stage("dataset", timings, (data / "manifest.json").is_file(), lambda: prepare_data.main(
        ["--out", str(data), "--encoders", str(encoders), "--renders", str(work / "renders"), "--val-objects",
         str(n_val), "--matrix-kind", "sv4d2_8views", "--quiet"]))
    overrides = [f"model.encoders={encoders}", f"data.path={data}", f"run.output_dir={work / 'unet'}"]
    if args.toy:
        overrides += ["run.max_steps=2", "run.batch_size=1", "run.validate_every=0", "run.val_sample_steps=2",
                      "run.val_samples=1", "run.checkpoint_every=1"]
    elif args.unet_steps:
        overrides.append(f"run.max_steps={args.unet_steps}")
    cfg = load_config(REPO / "train" / "configs" / "demo.yaml", overrides)
    result = {}
    _stage("unet", timings, False, lambda: result.update(run(cfg)))
    card = demo_card(cfg, work, timings, result)
    out = to_float16(Path(result["export"]), Path(args.out), card)
    Path(args.out).with_suffix(".json").write_text(json.dumps(card, indent=1) + "\n")
    print(f"demo model: {out} ({out.stat().st_size / 2**20:.2f} MiB); timings {timings}")
    return out


def _meta(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: json.loads(v) for k, v in (f.metadata() or {}).items()}


def last_metrics(path: Path, prefix: str) -> dict:
    """The last logged value of every metric starting with ``prefix`` in a trainer ``metrics.csv`` (+ its step)."""
    import csv

    if not path.is_file():
        return {}
    out = {}
    with open(path, encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["metric"].startswith(prefix):
                out[row["metric"]] = float(row["value"])
                out["step"] = int(row["step"])
    return out


def demo_card(cfg, work: Path, timings: dict, result: dict) -> dict:
    """What the model is, how it was made and what the stages measured (quality: ``benchmarks/demo_quality.py``)."""
    return {"model_kind": cfg.model.kind, "image_size": 64, "unet_size": cfg.model.size,
            "recipe": "python -m train.make_demo_model (train/configs/demo.yaml)", "seed": cfg.run.seed,
            "unet_steps": result.get("step"), "final_loss": result.get("loss"),
            "unet_optim": dataclasses.asdict(cfg.optim), "unet_diffusion": dataclasses.asdict(cfg.diffusion),
            "unet_batch_size": cfg.run.batch_size, "unet_ema_decay": cfg.run.ema_decay,
            "validation": last_metrics(work / "unet" / "logs" / "metrics.csv", "val/"),
            "vae_stage1": _meta(work / "vae_stage1.safetensors"), "vae_stage2": _meta(work / "vae.safetensors"),
            "vae": _meta(work / "vae_final.safetensors"),
            "image_encoder": _meta(work / "clip.safetensors"),
            "stage_seconds": timings, "storage": "float16 (loaders upcast to float32)"}


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="python -m train.make_demo_model", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--work", default=str(REPO / "runs" / "demo"), help="renders, encoders, dataset, UNet run")
    p.add_argument("--out", default=str(DEMO_MODEL), help="the float16 engine file (+ .json card beside it)")
    p.add_argument("--objects", type=int, default=96, help="training objects")
    p.add_argument("--vae-steps", type=int, default=800)
    p.add_argument("--vae-full-steps", type=int, default=60)
    p.add_argument("--vae-refine-steps", type=int, default=300, help="second VAE stage: whole images, lr 5e-4")
    p.add_argument("--decoder-steps", type=int, default=300, help="third VAE stage: decoder only (latents fixed)")
    p.add_argument("--clip-steps", type=int, default=300)
    p.add_argument("--unet-steps", type=int, default=0, help="override run.max_steps of demo.yaml (0 = keep)")
    p.add_argument("--toy", action="store_true", help="minutes-scale check of the whole recipe (tiny counts)")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    run_recipe(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
