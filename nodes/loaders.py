"""SV4D Checkpoint Loader: an official SV4D / SV4D 2.0 file -> MODEL, CLIP_VISION, VAE (ComfyUI objects).

Files are listed from ComfyUI's ``checkpoints`` folder (names starting with ``sv4d``) and from the pack's own
``sv4d`` model folder (``models/sv4d/``, or ``sv4d:`` in extra_model_paths.yaml; every .safetensors there).
Core ``ImageOnlyCheckpointLoader`` must not be used for SV4D files: its detection takes them for SV3D_p and
silently drops the motion layers.
"""
from __future__ import annotations

import logging
import os

import folder_paths

from sv4d_models.checkpoint import CheckpointSource, plan_unet
from sv4d_models.kinds import FOUR_D_KINDS, KINDS, ORBIT_KINDS

from . import compat
from .comfy_models import WEIGHT_DTYPES, load_clip_vision, load_sv4d_model, load_vae
from .compat import io, ui
from .sockets import checked_widgets

log = logging.getLogger("sv4d")
FOLDER = "sv4d"
EXTENSIONS = (".safetensors", ".sft")
OFFICIAL_4D = ", ".join(KINDS[k].official_file for k in FOUR_D_KINDS)
LOADER_HINTS = (  # phrase of describe_checkpoint -> the core loader that takes such a file
    ("SV3D", "core 'Image Only Checkpoint Loader (img2vid model)', then connect it to SV4D Reference Orbit (SV3D)"),
    ("SVD", "core 'Image Only Checkpoint Loader (img2vid model)' (it is an image-to-video model, not SV4D)"),
    ("Stable Diffusion", "core 'Load Checkpoint'"), ("SDXL", "core 'Load Checkpoint'"),
    ("VAE", "core 'Load VAE'"), ("OpenCLIP", "core 'Load CLIP Vision'"),
)


def register_folder() -> None:
    """Register ``models/sv4d`` with ComfyUI's folder_paths (idempotent; extra_model_paths entries are kept)."""
    folder_paths.add_model_folder_path(FOLDER, os.path.join(folder_paths.models_dir, FOLDER))


def checkpoint_names() -> list[str]:
    """Every .safetensors in the ``sv4d`` folder, then ``sv4d*`` files of ``checkpoints``."""
    register_folder()
    own = [n for n in folder_paths.get_filename_list(FOLDER) if n.lower().endswith(EXTENSIONS)]
    core = [n for n in folder_paths.get_filename_list("checkpoints")
            if os.path.basename(n).lower().startswith("sv4d") and n.lower().endswith(EXTENSIONS)]
    return list(dict.fromkeys(own + core))


def checkpoint_path(name: str) -> str:
    path = folder_paths.get_full_path(FOLDER, name) or folder_paths.get_full_path("checkpoints", name)
    if path is None:
        raise ValueError(f"checkpoint {name!r} is not in ComfyUI/models/checkpoints/ or models/sv4d/; put "
                         f"{OFFICIAL_4D} there and refresh (R) the node list")
    return path


def loader_hint(message: str) -> str:
    for phrase, loader in LOADER_HINTS:
        if phrase in message:
            return f"load it with {loader}"
    return f"SV4D Checkpoint Loader takes {OFFICIAL_4D}"


def check_plan(name: str, src: CheckpointSource, model_kind: str | None):
    """``plan_unet`` (kind by requested / metadata / file name / weights, strict key check) with messages that name
    the file and the right loader."""
    try:
        plan = plan_unet(src, model_kind)
    except ValueError as err:
        text = str(err)
        if "was requested" in text:
            raise ValueError(f"{name}: {text}; set model_kind to 'auto'") from None
        if "it looks like " not in text:  # unreadable / truncated / damaged file: the library's message names the fix
            raise ValueError(f"{name}: {text}") from None
        looks = text.split("it looks like ", 1)[1].split(". Supported files", 1)[0]
        raise ValueError(f"{name} is not an SV4D checkpoint: it looks like {looks}; {loader_hint(looks)}. "
                         f"SV4D Checkpoint Loader takes {OFFICIAL_4D}") from None
    if plan.kind in ORBIT_KINDS:
        raise ValueError(f"{name} is an SV3D checkpoint ({plan.kind}), not SV4D: {loader_hint('SV3D')}. "
                         f"SV4D Checkpoint Loader takes {OFFICIAL_4D}")
    return plan


def describe_load(name: str, plan, model) -> str:
    """The loader's text output: what was loaded as which kind, why, and in which memory mode."""
    spec, inner = KINDS[plan.kind], model.model
    lines = [f"{name}: {plan.kind} ({spec.frames_per_pass} frames x {spec.views_per_pass} views per pass), kind from "
             f"{plan.info.reason}",
             f"UNet {plan.n_params / 1e9:.2f} B parameters, weights {str(inner.get_dtype()).replace('torch.', '')}"
             f"{', computed in ' + str(inner.manual_cast_dtype).replace('torch.', '') if inner.manual_cast_dtype else ''}"
             f", {'DynamicVRAM (weights streamed by ComfyUI)' if compat.is_dynamic(model) else 'loaded by ComfyUI'}"
             f" on {model.load_device}"]
    if plan.info.warning:
        lines.insert(0, "WARNING: " + plan.info.warning)
    return "\n".join(lines)


def load_checkpoint(name: str, model_kind: str = "auto", weight_dtype: str = "default"):
    """(MODEL, CLIP_VISION, VAE, info text) of one SV4D-family checkpoint."""
    path = checkpoint_path(name)
    with CheckpointSource(path) as src:
        plan = check_plan(name, src, None if model_kind == "auto" else model_kind)
        if plan.info.warning:
            log.warning("SV4D Checkpoint Loader: %s", plan.info.warning)
        model = load_sv4d_model(src, plan, WEIGHT_DTYPES[weight_dtype])
        return model, load_clip_vision(src), load_vae(src, plan.kind), describe_load(name, plan, model)


class CheckpointLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SV4D_CheckpointLoader", display_name="SV4D Checkpoint Loader", category="SV4D/loaders",
            description="Loads an official SV4D / SV4D 2.0 checkpoint as ComfyUI MODEL, CLIP_VISION and VAE. Use it "
                        "instead of core Image Only Checkpoint Loader, which mistakes SV4D files for SV3D_p.",
            inputs=[io.Combo.Input("ckpt_name", options=checkpoint_names(),
                                   tooltip=f"{OFFICIAL_4D} from models/checkpoints/ (names starting with sv4d) or "
                                           "models/sv4d/"),
                    io.Combo.Input("model_kind", options=["auto", *FOUR_D_KINDS], default="auto",
                                   tooltip="auto: from the file (our metadata, then the official file name, then the "
                                           "weights; sv4d2 and sv4d2_8views have identical weights layouts, so a "
                                           "renamed 8-view file needs sv4d2_8views here: the info output warns)"),
                    io.Combo.Input("weight_dtype", options=list(WEIGHT_DTYPES), default="default",
                                   tooltip="UNet weight dtype; default = ComfyUI's choice for this device (fp16/bf16 "
                                           "on GPUs, fp32 on CPU); fp8 halves memory again")],
            outputs=[io.Model.Output(display_name="MODEL", tooltip="the SV4D UNet as a ComfyUI model"),
                     io.ClipVision.Output(display_name="CLIP_VISION", tooltip="the OpenCLIP ViT-H image encoder"),
                     io.Vae.Output(display_name="VAE", tooltip="conditioning encoder + the checkpoint's image "
                                                               "decoder (works with core VAE Encode / Decode)"),
                     io.String.Output(display_name="info", tooltip="what was loaded as which model kind and why, the "
                                                                   "weight dtype and memory mode; warnings first")],
        )

    @classmethod
    @checked_widgets
    def execute(cls, ckpt_name: str, model_kind: str, weight_dtype: str) -> io.NodeOutput:
        model, clip_vision, vae, info = load_checkpoint(ckpt_name, model_kind, weight_dtype)
        return io.NodeOutput(model, clip_vision, vae, info, ui=ui.PreviewText(info))


NODES = [CheckpointLoader]
