"""Files bundled with the library: the demo model (a small SV4D 2.0 8-view model at 64 px, trained here on the
library's synthetic scenes by ``python -m train.make_demo_model``) and its JSON card (recipe, sizes, measured
quality: ``benchmarks/demo_quality.py``).

    from sv4d_models.assets import demo_model_path, demo_pipeline_config
    pipe = SV4DPipeline.from_checkpoints(demo_model_path(), config=demo_pipeline_config())
"""
from __future__ import annotations

from pathlib import Path

DEMO_MODEL = Path(__file__).with_name("sv4d2_8views_demo.safetensors")  # float16, official key layout
DEMO_CARD = DEMO_MODEL.with_suffix(".json")
DEMO_KIND = "sv4d2_8views"
DEMO_IMAGE_SIZE = 64  # the model's only resolution (8 x 8 latents)
DEMO_STEPS = 1  # Euler steps per window: 1 = the model's mean estimate, the best PSNR (benchmarks/demo_quality.py)
DEMO_CFG, DEMO_MIN_CFG = 1.0, 1.0  # no guidance at 1 step (official sv4d2_8views: 2.5 / 1.5)


def demo_pipeline_config(**changes) -> dict:
    """``SV4DPipeline`` settings the demo model was measured with (64 px, ``DEMO_STEPS``, guidance) + ``changes``."""
    return {"image_size": DEMO_IMAGE_SIZE, "num_steps": DEMO_STEPS, "cfg": DEMO_CFG, "min_cfg": DEMO_MIN_CFG,
            **changes}


def demo_model_path() -> Path:
    """Path of the bundled demo model; FileNotFoundError with the fix when the package was installed without it."""
    if not DEMO_MODEL.is_file():
        raise FileNotFoundError(f"the demo model {DEMO_MODEL} is missing; reinstall the package with its data files "
                                "(pip install -e .) or remake it with python -m train.make_demo_model")
    return DEMO_MODEL


__all__ = ["DEMO_MODEL", "DEMO_CARD", "DEMO_KIND", "DEMO_IMAGE_SIZE", "DEMO_STEPS", "DEMO_CFG", "DEMO_MIN_CFG",
           "demo_model_path", "demo_pipeline_config"]
