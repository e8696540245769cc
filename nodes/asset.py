"""Writing the 4D asset under ComfyUI's output folder (no ComfyUI imports: the output folder is passed in).

* ``output_target``: a ``filename_prefix`` such as ``sv4d/asset`` -> a new numbered folder ``sv4d/asset_00001_``
  inside the output folder; a prefix that would leave it (absolute, ``..``, drive letters) raises ValueError.
* ``publish``: the folder is written as a hidden ``.name.partial-*`` sibling and renamed into place only when every
  file is complete (a crash or Cancel leaves no half-written asset under the final name).
The files themselves are written by the library's ``sv4d_models.reconstruction.export_asset`` (what ``sv4d run``
writes, with the same empty-surface check).
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Callable

def output_target(output_dir: str | os.PathLike, prefix: str) -> tuple[Path, str]:
    """``(folder to create, its path relative to the output folder in posix form)`` for ``prefix``."""
    root = Path(output_dir).resolve()
    text = prefix.strip().replace("\\", "/")
    parts = PurePosixPath(text).parts
    fix = "use a relative name inside ComfyUI's output folder, such as 'sv4d/asset'"
    if not text or text.endswith("/") or PurePosixPath(text).is_absolute() or PureWindowsPath(prefix).drive \
            or ".." in parts or any(p.startswith(".") for p in parts):
        raise ValueError(f"filename_prefix {prefix!r} is not allowed; {fix}")
    parent = (root / Path(*parts[:-1])).resolve()
    if parent != root and root not in parent.parents:
        raise ValueError(f"filename_prefix {prefix!r} points outside ComfyUI's output folder; {fix}")
    stem = parts[-1]
    taken = [int(m.group(1)) for p in (parent.iterdir() if parent.is_dir() else [])
             if (m := re.fullmatch(re.escape(stem) + r"_(\d{5})_", p.name))]
    name = f"{stem}_{max(taken, default=0) + 1:05d}_"
    return parent / name, (PurePosixPath(*parts[:-1]) / name).as_posix()


def publish(final: Path, write: Callable[[Path], None]) -> Path:
    """Run ``write(folder)`` on a hidden sibling folder, then rename it to ``final`` (never half-written)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        raise FileExistsError(f"{final} already exists; choose another filename_prefix")
    partial = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    try:
        write(partial)
        os.rename(partial, final)
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
    return final
