"""Where the evaluation networks' weights come from: an explicit file, else known file names in the weight folders
(``--weights DIR``, ``$SV4D_EVAL_WEIGHTS``, ``./checkpoints/eval``; CLIP also ``$SV4D_MODELS`` and ``./checkpoints``,
where ``sv4d run`` finds the SV4D files), else (LPIPS backbones) torch's hub cache. Nothing is downloaded: a missing
file is a FileNotFoundError naming the file names and the folders searched."""
from __future__ import annotations

from pathlib import Path

from ..files import env_folders, model_folders

I3D_FILES = ("i3d_pretrained_400.pt", "rgb_imagenet.pt", "i3d_torchscript.pt")
CLIP_FILES = ("open_clip_model.safetensors", "sv4d.safetensors", "sv4d2.safetensors", "sv4d2_8views.safetensors",
              "sv3d_u.safetensors", "sv3d_p.safetensors")
RANDOM_I3D = "random"  # a random-weight I3D: a smoke figure only, never comparable with published FVDs


def weight_dirs(extra=()) -> list[Path]:
    """The folders searched for evaluation weights, in order."""
    return [Path(p) for p in extra] + env_folders("SV4D_EVAL_WEIGHTS") + [Path("checkpoints") / "eval"]


def find_weight(what: str, names: tuple[str, ...], given: str | None, folders: list[Path]) -> Path:
    """``given`` if set (must exist), else the first of ``names`` found in ``folders``."""
    if given:
        if not Path(given).is_file():
            raise FileNotFoundError(f"{what} weights {given} do not exist (nothing is downloaded); give one of "
                                    f"{', '.join(names)}")
        return Path(given)
    for folder in folders:
        for name in names:
            if (folder / name).is_file():
                return folder / name
    raise FileNotFoundError(f"{what} needs one of {', '.join(names)} (nothing is downloaded); put it in "
                            f"{' or '.join(str(f) for f in folders)} (--weights DIR or $SV4D_EVAL_WEIGHTS adds a "
                            "folder) or name the file explicitly")


def find_i3d(given: str | None, extra=()) -> Path | str:
    return RANDOM_I3D if given == RANDOM_I3D else find_weight("FVD (I3D)", I3D_FILES, given, weight_dirs(extra))


def find_clip(given: str | None, extra=()) -> Path:
    folders = weight_dirs(extra) + model_folders()  # where sv4d run finds the SV4D files
    return find_weight("CLIP-S (OpenCLIP ViT-H-14)", CLIP_FILES, given, folders)


__all__ = ["I3D_FILES", "CLIP_FILES", "RANDOM_I3D", "weight_dirs", "find_weight", "find_i3d", "find_clip"]
