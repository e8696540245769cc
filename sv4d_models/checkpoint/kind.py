"""Which model kind a checkpoint is: the one resolver that the library, the ``sv4d`` CLI and the ComfyUI nodes call.

Order of evidence:

1. the kind the caller asks for (``model_kind=`` / ``--model-kind`` / the node's widget): it must agree with the
   weights;
2. our safetensors metadata key ``sv4d_model_kind`` (tiny test files, the demo model, our exports);
3. the file name: Stability's official names, and for SV4D 2.0 any name containing ``8view``;
4. the weights (key names and shapes).

SV4D 2.0 comes as two files with identical keys and shapes, ``sv4d2.safetensors`` (12 frames x 4 views) and
``sv4d2_8views.safetensors`` (5 frames x 8 views). When only the weights are left to decide between them, the
resolver assumes ``sv4d2`` and says so in ``CheckpointKind.warning``: every entry point shows that warning where the
user sees it (stderr, the node's text output, the manifest), because running the 8-view file as the 4-view model
gives silently wrong views.
"""
from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from ..kinds import KINDS, MODEL_KINDS
from .source import CHECKPOINT_FILES, META_KIND, META_VECTOR_SPLIT, CheckpointSource, as_source, describe_checkpoint

log = logging.getLogger("sv4d")

UNET_PREFIX = "model.diffusion_model."

# Kinds whose files have identical keys and shapes; the first is assumed when nothing else tells them apart.
SAME_KEYS: tuple[tuple[str, ...], ...] = (("sv4d2", "sv4d2_8views"),)
EIGHT_VIEW_MARK = "8view"  # a file name containing this (any case) is the 8-view SV4D 2.0 model


@dataclass(frozen=True)
class CheckpointKind:
    """The resolved kind of one checkpoint.

    Attributes:
        kind: one of ``MODEL_KINDS``.
        reason: what decided it (``requested``, ``file metadata``, ``official file name ...``, ``weights``...).
        vector_dims: widths of the UNet ``vector`` input's parts.
        source: ``name:size`` of a file (what work-dir manifests record); ``<state dict>`` otherwise.
        warning: set when only the weights decided between kinds with identical keys (say it to the user).
    """

    kind: str
    reason: str
    vector_dims: tuple[int, ...]
    source: str
    warning: str | None = None

    def to_json(self) -> dict:
        return {**asdict(self), "vector_dims": list(self.vector_dims)}


def unet_shapes(src: CheckpointSource) -> tuple[str, dict[str, tuple[int, ...]]]:
    """(prefix, {stripped key: shape}) of the UNet part; prefix "" for bare UNet-only files."""
    pref = {k[len(UNET_PREFIX):]: s for k, s in src.shapes.items() if k.startswith(UNET_PREFIX)}
    if pref:
        return UNET_PREFIX, pref
    if "input_blocks.0.0.weight" in src.shapes:
        return "", dict(src.shapes)
    return UNET_PREFIX, {}


def vector_dims(kind: str, metadata: dict[str, str]) -> tuple[int, ...]:
    """Widths of the UNet ``vector`` input's parts: stored in the metadata of non-standard files, else the kind's."""
    if META_VECTOR_SPLIT in metadata:
        return tuple(int(d) for d in json.loads(metadata[META_VECTOR_SPLIT]))
    return KINDS[kind].vector_dims


def _family(kind: str) -> tuple[str, ...]:
    return next((group for group in SAME_KEYS if kind in group), (kind,))


def weights_kind(shapes: dict[str, tuple[int, ...]], all_keys: Iterable[str] = (), stored: str | None = None,
                 requested: str | None = None) -> str:
    """The kind the UNet keys / shapes show (for files with identical keys: the first of its ``SAME_KEYS`` group).

    ``stored`` / ``requested`` (the file's metadata, the caller's kind; the first SV3D one counts) are needed only for
    SV3D files of non-standard width, whose shapes do not say whether they are sv3d_u or sv3d_p.
    """
    declared = next((k for k in (stored, requested) if k in ("sv3d_u", "sv3d_p")), requested)
    has = lambda frag: any(frag in k for k in shapes)  # noqa: E731
    label = shapes.get("label_emb.0.0.weight", (0, 0))[1]
    if has(".motion_blocks."):
        return "sv4d2" if has(".time_mixer_motion.") else "sv4d"
    if has(".time_stack.") and label in (256, 1280):
        return "sv3d_u" if label == 256 else "sv3d_p"
    if has(".time_stack.") and describe_checkpoint(all_keys, shapes).startswith("an SV3D"):
        if declared in ("sv3d_u", "sv3d_p"):
            return declared  # non-standard width: the caller or the file says which
        raise ValueError(f"model_kind={declared!r} was requested but the weights are an SV3D checkpoint" if declared
                         else "an SV3D checkpoint of non-standard width: pass model_kind='sv3d_u' or 'sv3d_p'")
    raise ValueError(f"this file does not look like an SV4D / SV4D 2.0 / SV3D checkpoint: it looks like "
                     f"{describe_checkpoint(all_keys, shapes)}. Supported files: {', '.join(CHECKPOINT_FILES.values())}")


def _by_name(name: str | None, candidates: tuple[str, ...]) -> tuple[str, str] | None:
    """(kind, reason) from a file name among ``candidates`` (kinds with the same keys), or None."""
    if not name:
        return None
    low = os.path.basename(name).lower()
    for kind in candidates:
        if low == KINDS[kind].official_file:
            return kind, f"official file name {KINDS[kind].official_file}"
    if EIGHT_VIEW_MARK in low and "sv4d2_8views" in candidates:
        return "sv4d2_8views", f"file name contains '{EIGHT_VIEW_MARK}'"
    return None


def unsure_warning(name: str | None, assumed: str, candidates: tuple[str, ...]) -> str:
    others = " / ".join(KINDS[k].official_file for k in candidates)
    spec = KINDS[assumed]
    return (f"{os.path.basename(name) if name else 'the checkpoint'}: {' and '.join(candidates)} files have identical "
            f"weights layouts and neither the file's metadata nor its name ({others}) says which this is, so it runs "
            f"as {assumed} ({spec.frames_per_pass} frames x {spec.views_per_pass} views per pass). If it is another "
            f"one, set the model kind (sv4d --model-kind, node widget model_kind) to "
            f"{' or '.join(k for k in candidates if k != assumed)}, or give the file its official name")


def decide_kind(shapes: dict[str, tuple[int, ...]], all_keys: Iterable[str] = (), requested: str | None = None,
                stored: str | None = None, name: str | None = None) -> tuple[str, str, str | None]:
    """``(kind, reason, warning)`` by the module docstring's order of evidence."""
    for what, value in (("model_kind", requested), ("stored model kind", stored)):
        if value is not None and value not in MODEL_KINDS:
            raise ValueError(f"{what}={value!r} is not supported; use one of {list(MODEL_KINDS)}")
    found = weights_kind(shapes, all_keys, stored, requested)
    candidates = _family(found)
    if requested is not None:
        if requested not in candidates:
            raise ValueError(f"model_kind={requested!r} was requested but the weights are a {found!r} checkpoint")
        return requested, "requested", None
    if stored is not None:
        if stored not in candidates:
            raise ValueError(f"the file's metadata says {META_KIND}={stored!r} but the weights are a {found!r} "
                             "checkpoint: the file is damaged or was mislabelled; download or export it again")
        return stored, f"file metadata ({META_KIND})", None
    if len(candidates) == 1:
        return found, "weights", None
    named = _by_name(name, candidates)
    if named is not None:
        return named[0], named[1], None
    return found, f"weights ({found} assumed)", unsure_warning(name, found, candidates)


def infer_model_kind(shapes: dict[str, tuple[int, ...]], all_keys: Iterable[str] = (), hint: str | None = None,
                     stored: str | None = None, name: str | None = None) -> str:
    """The kind only (see ``decide_kind``); an unsure decision is logged as a warning."""
    kind, _, warning = decide_kind(shapes, all_keys, hint, stored, name)
    if warning:
        log.warning(warning)
    return kind


def resolve_kind(source, requested: str | None = None) -> CheckpointKind:
    """The kind of a checkpoint file (header only: no tensor is read), ``CheckpointSource`` or state dict."""
    src, owned = as_source(source)
    try:
        _, shapes = unet_shapes(src)
        name = src.path.name if src.path is not None else None
        kind, reason, warning = decide_kind(shapes, src.keys(), requested, src.metadata.get(META_KIND), name)
        dims = vector_dims(kind, src.metadata)
        where = f"{name}:{Path(src.path).stat().st_size}" if src.path is not None else "<state dict>"
    finally:
        if owned:
            src.close()
    return CheckpointKind(kind, reason, dims, where, warning)


def warn_if_unsure(info: CheckpointKind, stacklevel: int = 3) -> None:
    """A Python warning (shown once per call site by default) when ``info`` was only a guess."""
    if info.warning:
        warnings.warn(info.warning, UserWarning, stacklevel=stacklevel)


__all__ = ["CheckpointKind", "SAME_KEYS", "UNET_PREFIX", "unet_shapes", "vector_dims", "decide_kind", "infer_model_kind", "resolve_kind", "unsure_warning",
           "warn_if_unsure", "weights_kind"]
