"""``sv4d demo``: the main job on the embedded default — the bundled sample clip and the bundled demo model.

The sample clip (``assets/demo_input.gif``, 9 frames at 64 px) is the input view of a synthetic animated object
that the demo model never saw in training (``DEMO_SCENE``; ``scripts/make_demo_input.py`` renders it), already
framed, so the job skips preprocessing and the generated views can be compared with the object's true views:
PSNR of every generated view against the ground truth, next to the trivial baseline of repeating the input view.
The 4D reconstruction is fitted on the generated views (not on the ground truth).
"""
from __future__ import annotations

from pathlib import Path

from . import events
from .cli_text import flag
from .job import JobSettings, run_job
from .presets import FAST_FIT_STEPS, FAST_PRESET, default_preset

DEMO_SCENE = {"kind": "nonrigid", "seed": 90_001}  # never used for training (the recipe's seeds start at 0)
DEMO_FRAMES = 9
ASSETS = Path(__file__).with_name("assets")
DEMO_INPUT = ASSETS / "demo_input.gif"


# ``sv4d run --model demo``: the options the bundled model can honour; any other given option is an error naming it
DEMO_HONOURS = ("seed", "steps", "preset", "fit_steps", "turntable_frames", "turntable_size", "mesh_resolution",
                "mesh_threshold", "mask_threshold", "skip_nerf", "device", "frames", "elevation", "mode", "resume",
                "overwrite")
DEMO_REFUSES = {"sv4d": "the demo runs its bundled model; drop --model demo to run your --sv4d file",
                "sv3d": "the demo model (sv4d2_8views) needs no SV3D orbit",
                "model_kind": "the demo model is a sv4d2_8views model",
                "image_size": "the demo model was trained at 64 px and runs only at that size",
                "dtype": "the demo model runs in float32"}


def check_demo_options(given: dict) -> None:
    """ValueError naming the first option of ``given`` (option name -> value the user set) that ``--model demo``
    cannot honour, and why."""
    for key, value in given.items():
        if key in DEMO_REFUSES:
            raise ValueError(f"{flag(key)} {value} cannot be used with --model demo: {DEMO_REFUSES[key]}")


def demo_settings(out: str, video: str | None = None, fast: bool = False, overrides: dict | None = None,
                  resume: bool = False, overwrite: bool = False) -> JobSettings:
    """Job settings of the demo (``fast``: the tiny fit preset, 240 fit steps and small exports)."""
    from .assets import DEMO_CFG, DEMO_IMAGE_SIZE, DEMO_KIND, DEMO_MIN_CFG, DEMO_STEPS, demo_model_path

    o = {k: v for k, v in (overrides or {}).items() if v is not None}
    steps = o.get("steps") or DEMO_STEPS
    preset = o.get("preset") or (FAST_PRESET if fast else default_preset(cuda=False))  # the demo runs on the CPU
    check_demo_options(o)
    keep = [k for k in DEMO_HONOURS if k not in ("steps", "preset", "resume", "overwrite")]  # those four: above / below
    return JobSettings(video=str(video or DEMO_INPUT), out=str(out), sv4d=str(demo_model_path()), model_kind=DEMO_KIND,
                       image_size=DEMO_IMAGE_SIZE, steps=steps, cfg=DEMO_CFG, min_cfg=DEMO_MIN_CFG, preset=preset,
                       dtype="float32",
                       preprocess=video is not None, resume=o.get("resume", resume),
                       overwrite=o.get("overwrite", overwrite), **{k: o[k] for k in keep if k in o},
                       **({"fit_steps": FAST_FIT_STEPS} if fast and "fit_steps" not in o else {}),
                       extra={"demo": {"scene": DEMO_SCENE, "fast": fast}})


def ground_truth(kind: str, size: int) -> dict:
    """The demo object's true matrix ``[F, V+1, S, S, 3]`` at the model kind's cameras."""
    from .synthetic import SyntheticScene

    return SyntheticScene.make(**DEMO_SCENE).render_matrix(model_kind=kind, n_frames=DEMO_FRAMES, size=size)


def compare_with_truth(result) -> dict:
    """PSNR of the generated views vs the true views, and of the repeat-the-input baseline."""
    from .images import psnr

    gt = ground_truth(result.model_kind, result.image_size)["images"]
    images = result.images
    if images.shape != gt.shape:
        return {"note": f"the clip is not the bundled demo clip ({tuple(images.shape)} vs {tuple(gt.shape)})"}
    generated, truth = images[:, 1:], gt[:, 1:]
    baseline = images[:, :1].expand_as(truth)
    per_view = [psnr(generated[:, v], truth[:, v]) for v in range(truth.shape[1])]
    return {"psnr_generated_vs_truth": psnr(generated, truth), "psnr_copy_input_vs_truth": psnr(baseline, truth),
            "psnr_per_view": per_view, "input_matches_truth_psnr": psnr(images[:, 0], gt[:, 0])}


def run_demo(out: str = "sv4d_demo", fast: bool = False, resume: bool = False, overwrite: bool = False,
             report=lambda info: None) -> dict:
    """Run the demo (see the module docstring); returns the job manifest (with ``quality``)."""
    settings = demo_settings(out, fast=fast, resume=resume, overwrite=overwrite)

    def evaluate(result) -> dict:
        q = compare_with_truth(result)
        if "psnr_generated_vs_truth" in q:
            report(events.summary("quality", f"generated views {q['psnr_generated_vs_truth']:.2f} dB vs the true "
                                                  f"views (repeating the input view: {q['psnr_copy_input_vs_truth']:.2f} dB)"))
        return q

    return run_job(settings, report, evaluate)


__all__ = ["DEMO_SCENE", "DEMO_FRAMES", "DEMO_INPUT", "demo_settings", "ground_truth", "compare_with_truth", "run_demo"]
