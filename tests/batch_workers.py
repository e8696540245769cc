"""Process targets of tests/test_batch.py, in a module of their own: spawned children import them by this module's
name (``batch_workers``, tests/ is on the path), whatever name pytest gave the test module."""
from __future__ import annotations

from sv4d_models.batch_inputs import BatchItem
from sv4d_models.batch_report import merge_report, write_row


def finish(out: str, names: list[str], start, index: int) -> None:
    items = [BatchItem(n, f"/{n}.mp4") for n in names]
    start.wait()
    write_row(out, {"name": names[index], "status": "done", "seconds": float(index)})
    merge_report(out, items)


def merge_after(out: str, done) -> None:
    merge_report(out, [BatchItem("a", "/a.mp4")])
    done.set()
