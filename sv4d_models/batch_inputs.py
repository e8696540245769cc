"""What ``sv4d batch`` runs: its INPUTs read into a list of videos, each with a name (its folder under ``--out``)
and its own option values, and the share of that list each process runs.

An INPUT is a video file, a folder (its videos and gifs, sub-folders included, in sorted order), a glob
(``'clips/**/*.mp4'``) or a list: ``.txt`` (one video per line; ``#`` comments) or ``.csv`` (a ``video`` column, an
optional ``name`` column and optional per-video option columns, ``PER_VIDEO``; an empty cell keeps the batch's
value). Relative paths in a list are relative to the list's folder.

Names: the file name without its suffix, reduced to letters, digits, ``.``, ``_`` and ``-``. Names that would
collide (two ``cat.mp4`` from different folders, ``Cat`` vs ``cat`` on a case-blind file system, one video listed
with two seeds) all get ``-`` and 8 hex digits of their path and options, so a name never changes with the order of
the list, and no name can leave ``--out`` (no ``/``, no leading ``.``). A ``name`` given in a list must already be
such a name.
"""
from __future__ import annotations

import csv
import glob
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .frames_io import GIF_EXTENSIONS, SUPPORTED_EXTENSIONS, VIDEO_EXTENSIONS

LISTS = (".txt", ".csv")
PER_VIDEO = {"elevation": float, "frames": int, "seed": int, "steps": int, "fit_steps": int, "mode": str,
             "preset": str, "mask_threshold": float, "mesh_threshold": float, "mesh_resolution": int,
             "turntable_frames": int, "turntable_size": int}
RESERVED = ("batch.json", "batch.csv", ".batch")  # the report and the batch's own records, beside the videos' folders
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")
_GLOB = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class BatchItem:
    """One video of the batch: ``name`` (its folder under ``--out``), ``video`` (absolute path), ``options``
    (per-video option values from a CSV list, by ``JobSettings`` field) and ``source`` (where it was listed)."""

    name: str
    video: str
    options: dict = field(default_factory=dict)
    source: str = ""


def read_inputs(inputs: list[str]) -> list[BatchItem]:
    """Every INPUT read, duplicates (same video, same options) dropped, and named (module docstring).
    ValueError / FileNotFoundError naming the INPUT (or list line) and the fix."""
    found: list[tuple[str, dict, str, str | None]] = []  # video, options, source, name given in a list
    for text in inputs:
        found += _read_one(text)
    seen, unique = set(), []
    for entry in found:
        key = _key(entry[0], entry[1])
        if key not in seen:
            seen.add(key)
            unique.append(entry)
    if not unique:
        raise ValueError(f"INPUT {' '.join(inputs)} holds no video; pass video files, a folder of videos, a glob or a "
                         ".txt / .csv list")
    return _named(unique)


def shard(items: list[BatchItem], rank: int, world: int) -> list[BatchItem]:
    """Process ``rank``'s share of ``items`` out of ``world``: every ``world``-th from index ``rank`` (each video once,
    every process knows its share without talking, and long and short videos spread evenly)."""
    if not 0 <= rank < world:
        raise ValueError(f"process rank {rank} is outside 0..{world - 1}")
    return items[rank::world]


def _read_one(text: str) -> list[tuple[str, dict, str, str | None]]:
    path = Path(text).expanduser()
    if path.is_dir():
        videos = sorted(p for p in path.rglob("*") if p.is_file() and _is_video(p))
        if not videos:
            raise ValueError(f"INPUT folder {text} holds no video ({', '.join(VIDEO_EXTENSIONS + GIF_EXTENSIONS)}); "
                             "pass another folder, or list image folders in a .txt file")
        return [(str(p.resolve()), {}, text, None) for p in videos]
    if path.is_file():
        if path.suffix.lower() in LISTS:
            return _read_list(path)
        if path.suffix.lower() not in SUPPORTED_EXTENSIONS:
            raise ValueError(f"INPUT {text} is neither a video ({', '.join(SUPPORTED_EXTENSIONS)}) nor a .txt / .csv "
                             "list; pass a video, a folder, a glob or a list")
        return [(str(path.resolve()), {}, text, None)]
    if _GLOB.search(text):
        matched = sorted(Path(p) for p in glob.glob(text, recursive=True))
        videos = [p for p in matched if p.is_dir() or (p.is_file() and p.suffix.lower() in SUPPORTED_EXTENSIONS)]
        if not videos:
            raise ValueError(f"INPUT {text!r} matches no video; check the pattern (quote it so that the shell "
                             "passes it unexpanded; ** matches sub-folders)")
        return [(str(p.resolve()), {}, text, None) for p in videos]
    raise FileNotFoundError(f"INPUT {text} does not exist; pass a video, a folder of videos, a glob or a .txt / .csv "
                            "list")


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS + GIF_EXTENSIONS and not path.name.startswith(".")


def _read_list(path: Path) -> list[tuple[str, dict, str, str | None]]:
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    if path.suffix.lower() == ".txt":
        rows = [(i, {"video": line.strip()}) for i, line in enumerate(lines, 1)
                if line.strip() and not line.lstrip().startswith("#")]
    else:
        reader = csv.DictReader(lines)
        columns = [c.strip() for c in reader.fieldnames or []]
        unknown = [c for c in columns if c not in ("video", "name", *PER_VIDEO)]
        if "video" not in columns or unknown:
            raise ValueError(f"{path}: columns {columns}: " + (f"unknown {unknown}; " if unknown else "no 'video'; ") +
                             f"use video (required), name and per-video options {', '.join(PER_VIDEO)}")
        rows = [(i, {k.strip(): (v or "").strip() for k, v in row.items() if k is not None})
                for i, row in enumerate(reader, 2)]
    out = []
    for line, row in rows:
        where = f"{path} line {line}"
        if not row.get("video"):
            raise ValueError(f"{where}: the video cell is empty; give a path or delete the line")
        video = Path(row["video"]).expanduser()
        video = video if video.is_absolute() else path.parent / video
        if not video.exists():
            raise FileNotFoundError(f"{where}: video {row['video']} does not exist ({video}); fix the path (relative "
                                    "paths are relative to the list's folder)")
        options = {k: _convert(k, v, where) for k, v in row.items() if k in PER_VIDEO and v != ""}
        out.append((str(video.resolve()), options, where, row.get("name") or None))
    return out


def _convert(key: str, value: str, where: str):
    kind = PER_VIDEO[key]
    try:
        return kind(value)
    except ValueError:
        what = {int: "a whole number", float: "a number"}[kind]
        raise ValueError(f"{where}: {key}={value!r} must be {what}; fix the cell or leave it empty for the batch's "
                         "value") from None


def _key(video: str, options: dict) -> str:
    return hashlib.sha256(json.dumps([video, options], sort_keys=True).encode()).hexdigest()[:8]


def safe_name(stem: str) -> str:
    """``stem`` reduced to a folder name that stays inside ``--out`` (letters, digits, ``. _ -``; no leading dot)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).lstrip(".")[:80] or "video"
    return name + "_" if name.lower() in RESERVED else name


def _named(entries: list[tuple[str, dict, str, str | None]]) -> list[BatchItem]:
    given: dict[str, str] = {}
    for video, _, where, name in entries:
        if name is None:
            continue
        if not _NAME.fullmatch(name) or name.lower() in RESERVED:
            raise ValueError(f"{where}: name {name!r} is not a folder name inside --out; use letters, digits, . _ - "
                             f"(not starting with '.', at most 100 characters, not {' / '.join(RESERVED)})")
        if name.lower() in given:
            raise ValueError(f"{where}: name {name!r} is also given at {given[name.lower()]}; names must differ")
        given[name.lower()] = where
    derived = [safe_name(Path(video).stem) if name is None else None for video, _, _, name in entries]
    counts: dict[str, int] = {}
    for name in derived:
        if name is not None:
            counts[name.lower()] = counts.get(name.lower(), 0) + 1
    items = []
    for (video, options, where, name), auto in zip(entries, derived):
        if name is None:
            clash = counts[auto.lower()] > 1 or auto.lower() in given
            name = f"{auto}-{_key(video, options)}" if clash else auto
        items.append(BatchItem(name, video, options, where))
    return items


__all__ = ["BatchItem", "PER_VIDEO", "RESERVED", "read_inputs", "shard", "safe_name"]
