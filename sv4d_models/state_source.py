"""One reader for checkpoints: a ``.safetensors`` file (header up front, tensors one at a time) or a state dict.

Used by the UNet loader (``checkpoint.load_unet``) and the encoder loaders (``encoders``); neither ever
materialises a whole 12 GB file. Bad paths and damaged files raise errors that name the file and the fix.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Union

import torch

StateDictSource = Union[str, os.PathLike, Mapping[str, torch.Tensor]]
CHECKPOINT_FILES = ("sv4d.safetensors", "sv4d2.safetensors", "sv4d2_8views.safetensors", "sv3d_u.safetensors",
                    "sv3d_p.safetensors")
CHECKPOINT_FOLDER_HINT = "ComfyUI/models/checkpoints/ (or models/sv4d/)"


class CheckpointNotFoundError(FileNotFoundError, ValueError):
    """A checkpoint path that does not exist (a ``FileNotFoundError`` and, for older callers, a ``ValueError``)."""


class CheckpointSource:
    """``keys()``, ``shape(key)``, ``tensor(key)``, ``get(key, device, dtype)`` and ``metadata`` over a file or dict.

    Usable as a context manager (closes the file handle).
    """

    def __init__(self, source: StateDictSource):
        self.path: Path | None = None
        self.metadata: dict[str, str] = {}
        self._file = None
        if isinstance(source, Mapping):
            self._sd = source
            self.shapes = {k: tuple(v.shape) for k, v in source.items()}
            return
        if not isinstance(source, (str, os.PathLike)):
            raise TypeError(f"expected a state dict (Mapping[str, Tensor]) or a path to a .safetensors file, got {type(source)}")
        self._sd, self.path = None, Path(source)
        if not self.path.is_file():
            raise CheckpointNotFoundError(
                f"checkpoint file {str(self.path)!r} does not exist; download the official file (e.g. "
                f"{', '.join(CHECKPOINT_FILES)}) from Stability AI's Hugging Face pages and put it in "
                f"{CHECKPOINT_FOLDER_HINT}, or pass its full path")
        if self.path.suffix.lower() not in (".safetensors", ".sft"):
            raise ValueError(f"{str(self.path)!r} is not a .safetensors file; only .safetensors checkpoints are read "
                             "(the official releases are .safetensors; convert .ckpt/.pt with safetensors.torch.save_file)")
        self._open()

    def _open(self) -> None:
        from safetensors import safe_open

        try:
            self._file = safe_open(str(self.path), framework="pt", device="cpu")
            self.shapes = {k: tuple(self._file.get_slice(k).get_shape()) for k in self._file.keys()}
            self.metadata = self._file.metadata() or {}
        except Exception as exc:  # safetensors raises SafetensorError / OSError / its own parse errors
            size = self.path.stat().st_size
            raise ValueError(
                f"{self.path} ({size:,} bytes) is not a readable safetensors file: it is truncated or corrupt "
                f"({type(exc).__name__}: {exc}). Download it again and compare its size with the published one "
                "(sv4d.safetensors is 11,923,967,436 bytes)") from exc

    def keys(self) -> list[str]:
        return list(self.shapes)

    def shape(self, key: str) -> tuple[int, ...]:
        return self.shapes[key]

    def tensor(self, key: str) -> torch.Tensor:
        """The stored tensor (read from disk now for files)."""
        return self._sd[key] if self._sd is not None else self._file.get_tensor(key)

    def get(self, key: str, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``tensor(key)`` moved to ``device`` and, for floating tensors, cast to ``dtype`` (None keeps each)."""
        t = self.tensor(key)
        target = dtype if (dtype is not None and t.is_floating_point()) else t.dtype
        return t.to(device=device if device is not None else t.device, dtype=target)

    def name(self) -> str:
        return str(self.path) if self.path is not None else "<state dict>"

    def close(self) -> None:
        if self._file is not None and hasattr(self._file, "__exit__"):
            self._file.__exit__(None, None, None)
        self._file = None

    def __enter__(self) -> "CheckpointSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
