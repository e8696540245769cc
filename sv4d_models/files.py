"""Every file the library writes goes through here: atomic, no-clobber writes, output folders, and one fingerprint;
also the one list of folders where model files are looked up (``model_folders``).

Atomic write: the data goes to a temporary file in the destination folder, is flushed and ``fsync``-ed, then
moved onto the final name; the temporary file is removed on any failure. A reader (or a crash) therefore sees
either the complete previous file or the complete new one, never a partial one. Existing outputs are never
replaced unless ``overwrite=True``: without it the final move is ``os.link`` (fails atomically if the name was
taken meanwhile), falling back to a check + ``os.replace`` on file systems without hard links.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch

__all__ = ["clean_temp_files", "atomic_path", "atomic_write", "atomic_write_bytes", "atomic_write_text", "atomic_write_json",
           "json_text", "env_folders", "model_folders",
           "atomic_torch_save", "torch_load", "check_writable", "prepare_folder", "fingerprint", "read_json"]


def env_folders(name: str) -> list[Path]:
    """The folders in environment variable ``name`` (``os.pathsep``-separated; unset or empty: none)."""
    return [Path(p) for p in os.environ.get(name, "").split(os.pathsep) if p]


def model_folders() -> list[Path]:
    """Where official model file names are looked up (``sv4d run``'s checkpoints, ``sv4d eval``'s CLIP tower):
    ``$SV4D_MODELS`` and ``./checkpoints``."""
    return env_folders("SV4D_MODELS") + [Path("checkpoints")]


def check_writable(path: str | os.PathLike, overwrite: bool) -> Path:
    """Raise ``FileExistsError`` naming ``path`` and the fix when it exists and ``overwrite`` is False."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it (or choose another path)")
    return path


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()  # what open() would give a new file (mkstemp makes them 0600)


def _fsync(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); fsync and move it onto ``path`` when the block ends
    without error. For writers that need a file name (ffmpeg, PIL, safetensors). The temp file is always removed."""
    path = check_writable(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _fsync(tmp)
        os.chmod(tmp, _FILE_MODE)
        _commit(tmp, path, overwrite)
    finally:
        if tmp.exists():
            tmp.unlink()


def clean_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files an atomic write killed mid-way (SIGKILL, power loss) left in ``folder``
    (names ``.<stem>.<random>.tmp<suffix>``); returns what was removed. Final files are never touched."""
    folder = Path(folder)
    removed = []
    if folder.is_dir():
        for p in folder.iterdir():
            if p.name.startswith(".") and ".tmp" in p.name and p.is_file():
                p.unlink()
                removed.append(p)
    return removed


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], overwrite: bool = False,
                 mode: str = "wb") -> Path:
    """Call ``write(file_object)`` on a temporary file and move it onto ``path`` atomically; returns the path."""
    with atomic_path(path, overwrite) as tmp:
        with open(tmp, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as f:
            write(f)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(data), overwrite)


def atomic_write_text(path: str | os.PathLike, text: str, overwrite: bool = False) -> Path:
    """UTF-8 text version of :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"), overwrite)


def atomic_write_json(path: str | os.PathLike, obj: Any, overwrite: bool = True) -> Path:
    """``obj`` as indented, key-sorted JSON (replaces by default: state files such as manifests)."""
    return atomic_write_text(path, json_text(obj, path, indent=1, sort_keys=True), overwrite)


def json_text(obj: Any, path: str | os.PathLike, **dumps_kw) -> str:
    """``json.dumps`` that refuses NaN and infinity (bare ``NaN`` / ``Infinity`` are not JSON: other readers fail on
    them): ValueError naming the file ``path`` and the key of the first bad value; nothing is written."""
    try:
        return json.dumps(obj, allow_nan=False, **dumps_kw)
    except ValueError:
        where = _first_non_finite(obj, "")
        raise ValueError(f"{path}: {where or 'a value'} is NaN or infinite; a JSON file cannot hold it and nothing "
                         "was written (the data it comes from is broken: check the inputs and settings)") from None


def _first_non_finite(obj: Any, where: str) -> str | None:
    if isinstance(obj, float) and not math.isfinite(obj):
        return f"{where or 'the value'}={obj}"
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    for key, value in items:
        found = _first_non_finite(value, f"{where}[{key!r}]" if isinstance(key, int) else f"{where}.{key}".lstrip("."))
        if found:
            return found
    return None


def atomic_torch_save(obj: Any, path: str | os.PathLike, overwrite: bool = True) -> Path:
    """``torch.save`` (tensors and plain containers only: read back with ``weights_only=True``) atomically."""
    return atomic_write(path, lambda f: torch.save(obj, f), overwrite)


def _commit(tmp: Path, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # atomic and refuses to clobber
    except FileExistsError:
        raise FileExistsError(f"{path} appeared while it was being written; pass overwrite=True to replace it") from None
    except OSError:  # no hard links here (e.g. some network / FAT file systems)
        check_writable(path, overwrite=False)
        os.replace(tmp, path)
        return
    tmp.unlink()


def prepare_folder(folder: str | os.PathLike, names: Iterable[str], overwrite: bool) -> Path:
    """Create ``folder``; refuse (FileExistsError) if any of ``names`` already exists there and not ``overwrite``."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} exists and is not a folder; pass another output folder")
    taken = [n for n in names if (folder / n).exists()]
    if taken and not overwrite:
        raise FileExistsError(f"{folder / taken[0]} already exists ({len(taken)} output file(s) would be replaced); "
                              "pass overwrite=True to replace them or choose another folder")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def fingerprint(*tensors: torch.Tensor, extra: Any = None) -> str:
    """sha256 (hex) of the tensors' shapes, dtypes and bytes (one row at a time: no full copy) and of ``extra``
    (any JSON-serialisable value). Identifies the data a work dir or a checkpoint belongs to."""
    h = hashlib.sha256()
    for x in tensors:
        h.update(f"{tuple(x.shape)} {x.dtype};".encode())
        for row in x.detach().reshape(x.shape[0] if x.ndim else 1, -1):
            h.update(row.cpu().contiguous().view(torch.uint8).numpy())
    if extra is not None:
        h.update(json.dumps(extra, sort_keys=True).encode())
    return h.hexdigest()


def torch_load(path: str | os.PathLike, what: str = "file", **kw) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``; a truncated or foreign file raises ValueError
    naming the file, ``what`` it is and the fix (torch's own message names neither)."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, **kw)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} ({what}) does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"{path} ({what}) is a folder, not a file") from None
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower():
            raise _damaged(path, what, exc) from None
        raise UnsafeFileError(f"{path} ({what}) holds Python objects besides tensors, which are never unpickled "
                              f"here: this project did not write it; delete it or replace it with a trusted file"
                              ) from None
    except Exception as exc:  # noqa: BLE001 - zip / unpickling errors of every kind: the file is damaged
        raise _damaged(path, what, exc) from None


class UnsafeFileError(pickle.UnpicklingError, ValueError):
    """A torch file whose pickle holds more than tensors: refused by the weights-only loader, never executed."""


def _damaged(path: Path, what: str, exc: BaseException) -> ValueError:
    return ValueError(f"{path} ({what}) is damaged and cannot be read ({type(exc).__name__}: "
                      f"{' '.join(str(exc).split())[:200]}); delete it to redo that work")


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    """Parse a JSON file; a damaged one raises ValueError naming the file, ``what`` it is, and the fix."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} ({what}) is damaged and cannot be read ({exc}); delete it or the folder holding "
                         "it to start over") from None
