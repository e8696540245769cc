"""The one reader of checkpoint files: a ``.safetensors`` file (header up front, tensors one at a time) or a state
dict, plus the table of our safetensors metadata keys and a classifier of foreign checkpoints for error messages.

Every module that loads weights (UNet, CLIP, VAE) goes through ``CheckpointSource``; none ever materialises a whole
12 GB file. Tensors are read with plain file reads straight into a fresh tensor of the stored dtype (no memory map:
the pages of a mapped file count towards the process's resident memory for as long as the map lives, which made a
loader's peak about 1.6x the weights it kept). Bad paths and damaged files raise errors that name the file and the
fix.
"""
from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Union

import torch

from ..kinds import CHECKPOINT_FOLDER_HINT, KINDS

StateDictSource = Union[str, os.PathLike, Mapping[str, torch.Tensor]]
CHECKPOINT_FILES = {k: spec.official_file for k, spec in KINDS.items()}  # model kind -> official file name

# Our safetensors metadata keys (written by tiny_checkpoint and our exporters; official files have none).
META_KIND = "sv4d_model_kind"  # model kind (sv4d2 and sv4d2_8views share keys: this tells them apart)
META_NETWORK = "sv4d_network_config"  # official-form yaml network_config as JSON (non-official widths)
META_VECTOR_SPLIT = "sv4d_vector_split"  # JSON list: widths of the UNet vector's parts (non-standard widths)
META_TINY_SEED = "sv4d_tiny_seed"  # seed of a tiny test checkpoint

# safetensors dtype names -> torch dtypes (the format's little-endian element types)
_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}


class CheckpointNotFoundError(FileNotFoundError, ValueError):
    """A checkpoint path that does not exist (a ``FileNotFoundError`` and, for older callers, a ``ValueError``)."""


class CheckpointSource:
    """``keys()``, ``shape(key)``, ``tensor(key)``, ``get(key, device, dtype)`` and ``metadata`` over a file or dict.

    Usable as a context manager (closes the file handle). ``CheckpointSource(existing_source)`` is not allowed:
    use :func:`as_source`, which passes an open source through.
    """

    def __init__(self, source: StateDictSource):
        self.path: Path | None = None
        self.metadata: dict[str, str] = {}
        self._file = self._raw = self._scratch = None
        if isinstance(source, Mapping):
            self._sd = source
            self.shapes = {k: tuple(v.shape) for k, v in source.items()}
            return
        if not isinstance(source, (str, os.PathLike)):
            raise TypeError(f"expected a state dict (Mapping[str, Tensor]) or a path to a .safetensors file, got {type(source)}")
        self._sd, self.path = None, Path(source)
        if self.path.is_dir():
            inside = sorted(p.name for p in self.path.glob("*.safetensors"))[:3]
            raise CheckpointNotFoundError(f"checkpoint {str(self.path)!r} is a folder, not a file; pass the "
                                          ".safetensors file inside it" + (f" (it holds {', '.join(inside)})"
                                                                           if inside else " (it holds none)"))
        if not self.path.is_file():
            raise CheckpointNotFoundError(
                f"checkpoint file {str(self.path)!r} does not exist; download the official file (e.g. "
                f"{', '.join(CHECKPOINT_FILES.values())}) from Stability AI's Hugging Face pages and put it in "
                f"{CHECKPOINT_FOLDER_HINT}, or pass its full path")
        if self.path.suffix.lower() not in (".safetensors", ".sft"):
            raise ValueError(f"{str(self.path)!r} is not a .safetensors file; only .safetensors checkpoints are read "
                             "(the official releases are .safetensors; convert .ckpt/.pt with safetensors.torch.save_file)")
        self._open()

    def _open(self) -> None:
        from safetensors import safe_open

        try:  # safetensors validates the header (offsets, sizes, dtypes); tensors are read by ``_read``
            self._file = safe_open(str(self.path), framework="pt", device="cpu")
            self.shapes = {k: tuple(self._file.get_slice(k).get_shape()) for k in self._file.keys()}
            self.metadata = self._file.metadata() or {}
            self._raw = open(self.path, "rb", buffering=0)
            (length,) = struct.unpack("<Q", self._raw.read(8))
            header = json.loads(self._raw.read(length))
            self._data_start = 8 + length
            self._entries = {k: (v["dtype"], v["data_offsets"]) for k, v in header.items() if k != "__metadata__"}
        except Exception as exc:  # safetensors raises SafetensorError / OSError / its own parse errors
            size = self.path.stat().st_size
            raise ValueError(
                f"{self.path} ({size:,} bytes) is not a readable safetensors file: it is truncated or corrupt "
                f"({type(exc).__name__}: {exc}). Download it again and compare its size with the published one "
                "(sv4d.safetensors is 11,923,967,436 bytes)") from exc

    def keys(self) -> list[str]:
        return list(self.shapes)

    def is_floating(self, key: str) -> bool:
        """Whether ``key`` is stored as a floating-point tensor (read from the header for files)."""
        if self._sd is not None:
            return bool(self._sd[key].is_floating_point())
        name = self._entries[key][0]
        return name in _DTYPES and _DTYPES[name].is_floating_point

    def dtype_name(self, key: str) -> str:
        return str(self._sd[key].dtype).replace("torch.", "") if self._sd is not None else self._entries[key][0]

    def shape(self, key: str) -> tuple[int, ...]:
        return self.shapes[key]

    def tensor(self, key: str) -> torch.Tensor:
        """The stored tensor (read from disk now for files)."""
        return self._sd[key] if self._sd is not None else self.get(key)

    def _read(self, key: str) -> torch.Tensor:
        """One tensor of the file in its stored dtype, read into a buffer this source reuses (valid until the next
        read: callers copy it at once). The copy out of an already-touched buffer is what makes the new memory:
        letting the kernel's read fill fresh memory instead was up to 25x slower on a loaded machine (page faults
        taken inside the read, measured in benchmarks/load.py)."""
        name, (start, end) = self._entries[key]
        dtype, size = _DTYPES[name], end - start
        if self._scratch is None or self._scratch.numel() < size:
            self._scratch = None
            self._scratch = torch.empty(max(size, 1 << 24), dtype=torch.uint8)
        out = self._scratch[:size].view(dtype).view(self.shapes[key])
        if out.numel() == 0:
            return out
        view = memoryview(self._scratch[:size].numpy())
        if size != out.numel() * out.element_size():
            raise ValueError(f"{self.path}: tensor {key} holds {size} bytes for {out.numel() * out.element_size()} "
                             "expected: the file is corrupt; download it again")
        self._raw.seek(self._data_start + start)
        done = 0
        while done < size:
            n = self._raw.readinto(view[done:])
            if not n:
                raise ValueError(f"{self.path} ends inside tensor {key}: the file is truncated; download it again")
            done += n
        return out

    def rows(self, key: str, index: int | slice) -> torch.Tensor:
        """``tensor(key)[index]`` along the first axis, reading only those rows from a file."""
        if self._sd is not None:
            return self._sd[key][index]
        return self._file.get_slice(key)[index]

    def get(self, key: str, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``tensor(key)`` moved to ``device`` and, for floating tensors, cast to ``dtype`` (None keeps each); a file's
        tensor is read once and copied once, into its final dtype and device."""
        if self._sd is None and _DTYPES.get(self._entries[key][0]) is not None:
            t = self._read(key)
            target = dtype if (dtype is not None and t.is_floating_point()) else t.dtype
            return t.to(device=device if device is not None else "cpu", dtype=target, copy=True)
        t = self._sd[key] if self._sd is not None else self._file.get_tensor(key)  # unknown dtype: safetensors reads
        target = dtype if (dtype is not None and t.is_floating_point()) else t.dtype
        return t.to(device=device if device is not None else t.device, dtype=target)

    def name(self) -> str:
        return str(self.path) if self.path is not None else "<state dict>"

    def close(self) -> None:
        if self._file is not None and hasattr(self._file, "__exit__"):
            self._file.__exit__(None, None, None)
        self._file = None
        if self._raw is not None:
            self._raw.close()
            self._raw = None
        self._scratch = None

    def __enter__(self) -> "CheckpointSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def describe_checkpoint(keys, unet_shapes: dict[str, tuple[int, ...]] | None = None) -> str:
    """Best guess (one phrase) of which model a checkpoint is, for error messages.

    ``keys``: every key of the file; ``unet_shapes``: its UNet keys (prefix stripped) with shapes, when known.
    """
    ks, shapes = set(keys), unet_shapes or {}

    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in ks)

    temporal = any(".time_stack." in k or ".time_mix_blocks." in k for k in shapes)
    if has("cond_stage_model."):
        return "a Stable Diffusion 1.x/2.x text-to-image checkpoint (it has cond_stage_model text-encoder keys)"
    if any(k.startswith("conditioner.embedders.0.transformer") or ".text_model." in k for k in ks):
        return "an SDXL-style text-to-image checkpoint (CLIP text encoders in the conditioner)"
    if has("conditioner.embedders.3.encoder.") or (temporal and shapes.get("label_emb.0.0.weight", (0, 0))[1] == 768):
        return "a Stable Video Diffusion (SVD img2vid) checkpoint"
    if has("conditioner.embedders.5.encoder."):
        return "an SV4D / SV4D 2.0 checkpoint" if has("model.diffusion_model.") else "an SV4D / SV4D 2.0 conditioner"
    if has("conditioner.embedders.1.encoder.") and has("model.diffusion_model."):
        return "an SV3D checkpoint"
    if has("conditioner.embedders.") and has("model.diffusion_model."):
        return "an sgm (SDXL-style) checkpoint without the SV3D/SV4D conditioner"
    if shapes and not temporal:
        return "an image (non-video) diffusion UNet without temporal layers"
    if has("model.diffusion_model.") or shapes:
        return "a diffusion-model checkpoint without conditioner weights"
    if "encoder.conv_in.weight" in ks and "decoder.conv_in.weight" in ks:
        return "a standalone AutoencoderKL (VAE) checkpoint"
    if "conv_in.weight" in ks and "conv_out.weight" in ks:
        return "a standalone VAE encoder or decoder"
    if "visual.conv1.weight" in ks or "conv1.weight" in ks:
        return "a standalone OpenCLIP checkpoint"
    sample = ", ".join(sorted(ks)[:3])
    return f"an unrecognised checkpoint ({len(ks)} tensors, e.g. {sample})"


def as_source(source: "StateDictSource | CheckpointSource") -> tuple[CheckpointSource, bool]:
    """``(reader, owned)``: an already open ``CheckpointSource`` passes through (``owned`` False: the caller must
    not close it); anything else is opened (``owned`` True)."""
    if isinstance(source, CheckpointSource):
        return source, False
    return CheckpointSource(source), True
