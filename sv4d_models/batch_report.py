"""The batch report: one row per video in ``--out/batch.json`` and ``--out/batch.csv``, merged from every process.

Each process writes the row of a video it ran to ``--out/.batch/results/<name>.json`` (atomic), then rebuilds both
report files from every row file, under an exclusive lock on ``--out/.batch/lock``, each with an atomic write. A
rebuild reads all row files, so the last one to run includes every row however many processes finish at once; a
reader never sees a half-written report. ``sv4d batch`` and ``scripts/comfyui_batch.py`` both write through here.

Row ``status``: ``done``, ``failed`` (``kind``: ``input`` = a bad file or value, exit 2 of ``sv4d run``;
``failed`` = the job ran and failed, exit 3; ``out_of_memory``; ``error`` = a bug, its traceback in the row file),
``interrupted`` (stopped, resumable) or ``pending`` (not run yet).
"""
from __future__ import annotations

import contextlib
import csv
import io
import os
import time
from pathlib import Path
from typing import Iterator

from .files import atomic_write_json, atomic_write_text, read_json

BATCH_DIR = ".batch"
STATUSES = ("done", "failed", "interrupted", "pending")
CSV_COLUMNS = ("name", "status", "kind", "exit_code", "message", "seconds", "peak_memory_mb", "memory",
               "quality_psnr", "psnr_fitted", "psnr_held_out_view", "psnr_held_out_frame", "out", "glb", "turntable",
               "manifest", "video", "options", "rank", "device", "attempts", "finished_at")


def results_dir(out: str | os.PathLike) -> Path:
    return Path(out) / BATCH_DIR / "results"


def read_row(out: str | os.PathLike, name: str) -> dict | None:
    """The row a process wrote for video ``name``, or None."""
    path = results_dir(out) / f"{name}.json"
    return read_json(path, "a batch row") if path.is_file() else None


def write_row(out: str | os.PathLike, row: dict) -> Path:
    """Keep ``row`` (a dict with at least ``name`` and ``status``) as the video's result, atomically."""
    if row.get("status") not in STATUSES:
        raise ValueError(f"row status {row.get('status')!r}: use one of {', '.join(STATUSES)}")
    return atomic_write_json(results_dir(out) / f"{row['name']}.json", row, overwrite=True)


def manifest_row(manifest: dict, out: str | os.PathLike) -> dict:
    """The quality numbers and output paths of a finished job's manifest (``sv4d_models.job``)."""
    metrics, outputs = manifest.get("metrics", {}), manifest.get("outputs", {})
    quality = manifest.get("quality", {})
    return {"quality_psnr": quality.get("psnr_generated_vs_truth"),
            "psnr_fitted": metrics.get("fitted", {}).get("psnr"),
            "psnr_held_out_view": metrics.get("held_out_view", {}).get("psnr"),
            "psnr_held_out_frame": metrics.get("held_out_frame", {}).get("psnr"),
            "out": str(out), "glb": outputs.get("glb"), "turntable": outputs.get("turntable"),
            "manifest": str(Path(out) / "manifest.json")}


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` between processes (released by the OS if the holder dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        try:
            import fcntl
        except ImportError:  # Windows
            import msvcrt

            while True:
                try:
                    msvcrt.locking(f.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError:  # LK_LOCK gives up after 10 s: keep waiting
                    continue
            try:
                yield
            finally:
                msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
            return
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def merge_report(out: str | os.PathLike, items: list, started: float | None = None) -> dict:
    """Rebuild ``batch.json`` and ``batch.csv`` from the row files of ``items`` (``BatchItem``s, in list order; a
    video without a row file is ``pending``) under the lock; returns the report."""
    out = Path(out)
    with _locked(out / BATCH_DIR / "lock"):
        rows = []
        for item in items:
            row = read_row(out, item.name) or {"name": item.name, "status": "pending"}
            rows.append({**row, "video": item.video, "options": item.options})
        counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
        report = {"format": "sv4d_batch/1", "videos": len(rows), "counts": counts,
                  "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "rows": rows}
        if started is not None:
            report["seconds"] = round(time.time() - started, 1)
        atomic_write_json(out / "batch.json", report, overwrite=True)
        atomic_write_text(out / "batch.csv", _csv(rows), overwrite=True)
    return report


def _csv(rows: list[dict]) -> str:
    import json

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: json.dumps(row[k], sort_keys=True) if k == "options" else row.get(k) for k in CSV_COLUMNS})
    return buf.getvalue()


__all__ = ["BATCH_DIR", "STATUSES", "CSV_COLUMNS", "results_dir", "read_row", "write_row", "manifest_row",
           "merge_report"]
