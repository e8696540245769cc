"""``sv4d batch`` on the command line: where this process runs (accelerate), the progress bar over videos on the main
process, the one-line summary and the exit code (``sv4d_models.batch`` runs the videos)."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .batch import Place, item_settings, run_batch
from .batch_inputs import read_inputs
from .batch_report import BATCH_DIR, merge_report
from .console import ConsoleReporter
from .files import atomic_write_json, read_json
from .stopping import stop_on_signals

ONE_PROCESS_NOTE = ("sv4d batch: note: accelerate launch --cpu starts one process (several CPU processes need an MPI "
                    "hostfile); for N processes on one machine use accelerate launch --multi_gpu --num_processes N "
                    "(on a machine without GPUs they run on the CPU) or torchrun --nproc_per_node N")


def _launched() -> bool:
    return "WORLD_SIZE" in os.environ or any(k.startswith("ACCELERATE_") for k in os.environ)


def find_place(device: str | None) -> tuple[Place, object]:
    """This process's rank, share and device, and its accelerate ``PartialState`` (None when not launched)."""
    if not _launched():
        return Place(device=device), None
    try:
        from accelerate import PartialState
    except ImportError:
        raise ValueError("sv4d batch runs under accelerate launch / torchrun but accelerate is not installed; "
                         "pip install accelerate") from None
    import torch

    forced = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    state = PartialState(cpu=forced or device == "cpu" or not torch.cuda.is_available())
    if state.num_processes == 1 and forced and state.is_main_process:
        print(ONE_PROCESS_NOTE, file=sys.stderr)
    if device is None or device == "cuda":
        device = f"cuda:{state.device.index or 0}" if state.device.type == "cuda" else state.device.type
    return Place(state.process_index, state.num_processes, device), state


class _VideoBar:
    """The progress bar over every video of the batch (all processes' rows, read from the merged report) and one line
    per video; the main process shows the bar, every process its lines (unless quiet)."""

    def __init__(self, total: int, place: Place, quiet: bool):
        from tqdm import tqdm

        self.place, self.quiet = place, quiet
        self.bar = tqdm(total=total, desc="videos", unit="video", disable=quiet or not place.main, dynamic_ncols=True)

    def __call__(self, item, row: dict, what: str, report: dict) -> None:
        counts = report["counts"]
        self.bar.update(counts["done"] + counts["failed"] - self.bar.n)
        if self.quiet:
            return
        text = {"skipped": "done before (skipped)", "kept_failed": "failed before (kept; --retry-failed reruns it)"
                }.get(what, f"{row['status']} in {row.get('seconds', 0):.1f} s")
        if row["status"] != "done" and what == "ran":
            text += f" ({row['kind']}: {row['message']})"
        who = "" if self.place.world == 1 else f"[rank {self.place.rank}] "
        self.bar.write(f"{who}{item.name}: {text}", file=sys.stdout)

    def close(self) -> None:
        self.bar.close()


def batch_command(a: argparse.Namespace, job_settings) -> int:
    """Run ``sv4d batch`` with parsed options (``job_settings(a, video, out)``: ``cli.job_settings``); the exit code
    (``cli_text.BATCH_EPILOG``)."""
    started = time.perf_counter()
    out = Path(a.out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file; choose a folder")
    items = read_inputs(a.inputs)
    place, state = find_place(a.device)
    first = items[0]
    base = job_settings(argparse.Namespace(**{**vars(a), "device": place.device}), first.video, str(out / first.name))
    bar = _VideoBar(len(items), place, a.quiet)
    announce = (lambda text: bar.bar.write(f"sv4d batch: {text}", file=sys.stderr))
    try:
        with stop_on_signals(announce) as should_stop:
            counts = run_batch(items, item_settings(base, out), out, place, a.retry_failed, should_stop,
                               report=ConsoleReporter(quiet=True), on_video=bar)
    finally:
        bar.close()
    atomic_write_json(out / BATCH_DIR / "processes" / f"rank{place.rank}.json", counts)
    if counts["interrupted"]:
        print(f"sv4d batch: interrupted; finished work is kept in {out}: run the same command again to continue",
              file=sys.stderr)
        return 130
    together = state.wait_for_everyone if state is not None and place.world > 1 else (lambda: None)
    together()  # every process's rows are written
    code = _summary(out, items, place, time.perf_counter() - started)
    together()  # none exits before all are done: torchrun stops the others when one exits with a code other than 0
    return code


def _summary(out: Path, items: list, place: Place, seconds: float) -> int:
    """The one-line summary (main process) and the exit code (every process: from the merged report)."""
    report = merge_report(out, items)
    c = report["counts"]
    unfinished = c["failed"] + c["interrupted"] + c["pending"]
    if place.main:
        folder = out / BATCH_DIR / "processes"
        ranks = [read_json(folder / f"rank{r}.json", "a process's counts") for r in range(place.world)
                 if (folder / f"rank{r}.json").is_file()]
        skipped, kept = (sum(r[k] for r in ranks) for k in ("skipped", "kept_failed"))
        print(f"sv4d batch: {report['videos']} videos: {c['done']} done ({skipped} skipped: done before), "
              f"{c['failed']} failed ({kept} of them before, not retried), {c['interrupted'] + c['pending']} not "
              f"finished; {seconds:.0f} s; report {out / 'batch.csv'}", flush=True)
        if unfinished:
            failed = [r for r in report["rows"] if r["status"] != "done"]
            for r in failed[:10]:
                print(f"  {r['name']}: {r['status']}" + (f" ({r['kind']}: {r['message']})" if r.get("kind") else ""),
                      file=sys.stderr)
            print(f"sv4d batch: {unfinished} of {report['videos']} videos not done (see {out / 'batch.csv'}); fix them "
                  "and run the same command again (add --retry-failed to rerun the failed ones)", file=sys.stderr)
    return 3 if unfinished else 0


__all__ = ["batch_command", "find_place", "ONE_PROCESS_NOTE"]
