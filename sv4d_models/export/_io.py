"""Atomic, no-clobber file writing shared by every exporter.

Every write goes to a temporary file in the destination folder and is then moved into place, so a reader never
sees a half-written file and a crash leaves no truncated output. Existing outputs are never replaced unless the
caller passes ``overwrite=True``; without it the final move uses ``os.link`` (fails atomically if the name was
taken in the meantime) and falls back to a check + ``os.replace`` on file systems without hard links.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


def check_writable(path: str | os.PathLike, overwrite: bool) -> Path:
    """Raise ``FileExistsError`` naming ``path`` and the fix when it exists and ``overwrite`` is False."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it (or choose another path)")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); move it onto ``path`` when the block succeeds.

    For writers that need a file name (ffmpeg, PIL). The temporary file is removed if the block raises.
    """
    path = check_writable(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _commit(tmp, path, overwrite)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically; returns the final path."""
    with atomic_path(path, overwrite) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, overwrite: bool = False) -> Path:
    """UTF-8 text version of :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"), overwrite)


def _commit(tmp: Path, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # atomic and refuses to clobber
    except FileExistsError:
        raise FileExistsError(
            f"{path} appeared while it was being written; pass overwrite=True to replace it"
        ) from None
    except OSError:  # no hard links here (e.g. some network / FAT file systems)
        check_writable(path, overwrite=False)
        os.replace(tmp, path)
        return
    tmp.unlink()


def prepare_folder(folder: str | os.PathLike, names: list[str], overwrite: bool) -> Path:
    """Create ``folder``; refuse (FileExistsError) if any of ``names`` already exists there and not ``overwrite``."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} exists and is not a folder; pass another output folder")
    taken = [n for n in names if (folder / n).exists()]
    if taken and not overwrite:
        raise FileExistsError(
            f"{folder / taken[0]} already exists ({len(taken)} output file(s) would be replaced); "
            "pass overwrite=True to replace them or choose another folder"
        )
    folder.mkdir(parents=True, exist_ok=True)
    return folder
