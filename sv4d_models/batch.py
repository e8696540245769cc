"""``sv4d batch``: the job of ``sv4d run`` on many videos, each into ``--out/<name>/``, sharded across the processes
of ``accelerate launch`` (or ``torchrun``), with one failure never stopping the rest and every video resumable.

Per video, in the process whose share it is (``batch_inputs.shard``): a folder whose manifest says done with the
same options is skipped; a failed one (its row in the report) is skipped unless ``retry_failed``; anything else
runs (``resume``: an interrupted one continues from its work dirs). The networks are loaded once per process
(``run_job(loaded=...)``). A failure is recorded in its row with its kind and one-line message, and the next video
runs. ``should_stop()`` (SIGTERM, Ctrl-C) ends the current video after its current step, resumable, and no further
video starts. Rows are merged into ``batch.json`` / ``batch.csv`` after every video (``batch_report``).
"""
from __future__ import annotations

import dataclasses
import os
import time
import traceback
from pathlib import Path
from typing import Callable

from .batch_inputs import BatchItem, shard
from .batch_report import manifest_row, merge_report, read_row, results_dir, write_row
from .cli_text import KIND_EXIT_CODES, failure_kind
from .job import JobSettings, run_job
from .job_record import check_resume
from .memory import PeakMemory
from .stopping import StopCheck, stop_requested


@dataclasses.dataclass
class Place:
    """Where this process runs: its rank among ``world`` processes (``accelerate`` / ``torchrun``) and its device
    (None: the job's default)."""

    rank: int = 0
    world: int = 1
    device: str | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0


def _run_one(item: BatchItem, settings: JobSettings, place: Place, loaded: dict, should_stop: StopCheck | None,
             report, memory: PeakMemory, previous: dict | None) -> dict:
    """Run one video's job; its row (done, or failed / interrupted with kind and message)."""
    from .cli_text import one_line

    started = time.perf_counter()
    memory.start()
    row = {"name": item.name, "rank": place.rank, "device": settings.device or "auto",
           "attempts": (previous or {}).get("attempts", 0) + 1}
    try:
        manifest = run_job(settings, report, should_stop=should_stop, loaded=loaded)
        row.update(status="done", kind="", exit_code=0, message="", **manifest_row(manifest, settings.out))
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - isolation: every failure is recorded, the batch goes on
        kind = failure_kind(exc)
        message = one_line(exc).replace("pass --overwrite to start over", f"delete {settings.out} to start over")
        message = message.removeprefix("--resume: ")  # the batch resumes every video; the flag is not the user's
        row.update(status="interrupted" if kind == "interrupted" else "failed", kind=kind,
                   exit_code=KIND_EXIT_CODES[kind], message=message, out=settings.out)
        if kind == "error":
            row["traceback"] = traceback.format_exc()
        if kind == "out_of_memory":
            _free_memory()
    row["seconds"] = round(time.perf_counter() - started, 2)
    row["peak_memory_mb"], row["memory"] = memory.peak()
    row["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return row


def _free_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _finished_row(item: BatchItem, settings: JobSettings, previous: dict | None) -> dict | None:
    """The row of a video whose folder holds this job finished (kept from before when it says so), else None."""
    try:
        manifest = check_resume(dataclasses.replace(settings, resume=True))
    except ValueError:
        return None  # another job's folder: running it records why (the run's own message)
    if manifest is None:
        return None
    if previous is not None and previous.get("status") == "done":
        return previous
    return {"name": item.name, "status": "done", "kind": "", "exit_code": 0, "message": "",
            "seconds": sum(manifest.get("timings_s", {}).values()), **manifest_row(manifest, settings.out)}


def run_batch(items: list[BatchItem], make_settings: Callable[[BatchItem], JobSettings], out: str | os.PathLike,
              place: Place = Place(), retry_failed: bool = False, should_stop: StopCheck | None = None,
              report=lambda event: None, on_video: Callable[[BatchItem, dict, str, dict], None] | None = None) -> dict:
    """Run this process's share of ``items`` (module docstring). ``make_settings(item)`` gives a video's
    ``JobSettings`` (a ValueError there is that video's failure); ``report`` gets each job's events;
    ``on_video(item, row, what, report)`` is called after each video (``what``: ran / skipped / kept_failed) with the
    merged report. Returns ``{"ran", "skipped", "kept_failed", "interrupted"}`` counts of this process."""
    out = Path(out)
    results_dir(out).mkdir(parents=True, exist_ok=True)
    loaded, memory = {}, PeakMemory(place.device)
    counts = {"ran": 0, "skipped": 0, "kept_failed": 0, "interrupted": 0}
    for item in shard(items, place.rank, place.world):
        if stop_requested(should_stop):
            counts["interrupted"] += 1
            break
        previous = read_row(out, item.name)
        try:
            settings = make_settings(item)
        except (ValueError, TypeError) as exc:
            row, what = _settings_failure(item, exc, out, previous), "ran"
        else:
            row, what = _finished_row(item, settings, previous), "skipped"
            if row is None and previous is not None and previous["status"] == "failed" and not retry_failed:
                row, what = previous, "kept_failed"
            elif row is None:
                row, what = _run_one(item, settings, place, loaded, should_stop, report, memory, previous), "ran"
        counts[what] += 1
        if row is not previous:
            write_row(out, row)
        merged = merge_report(out, items)
        if on_video is not None:
            on_video(item, row, what, merged)
        if row["status"] == "interrupted":
            counts["interrupted"] += 1
            break
    return counts


def _settings_failure(item: BatchItem, exc: BaseException, out: Path, previous: dict | None) -> dict:
    from .cli_text import one_line

    return {"name": item.name, "status": "failed", "kind": "input", "exit_code": 2, "message": one_line(exc),
            "out": str(out / item.name), "attempts": (previous or {}).get("attempts", 0) + 1, "seconds": 0.0}


def item_settings(base: JobSettings, out: str | os.PathLike) -> Callable[[BatchItem], JobSettings]:
    """``make_settings`` for ``run_batch``: ``base`` with the video, its folder ``out/<name>``, resume, and the
    video's own option values (checked by ``JobSettings`` as on the command line)."""

    def make(item: BatchItem) -> JobSettings:
        try:
            return dataclasses.replace(base, video=item.video, out=str(Path(out) / item.name), resume=True,
                                       overwrite=False, **item.options)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"{item.source}: {exc}") from None

    return make


__all__ = ["Place", "run_batch", "item_settings"]
