"""The job's own record in ``--out`` (``job.json``): the options a run was started with.

``--resume`` continues only the same job: options that change what is computed are compared with the record before
anything is loaded or written, and a difference is an error in the CLI's words (``--preset tiny (recorded) vs cpu
(now)``, with ``--fast`` named when that is the switch that differs). A finished run resumed with the same options is
reported as finished and left untouched. ``--skip-nerf`` may be dropped on resume (the sampled views are reused and
the 4D stage runs). Folders written before this record existed are resumed as before (the sampling work dir and the
fit checkpoint still check their own settings).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from .cli_text import flag
from .files import atomic_write_json, read_json
from .presets import FAST_FIT_STEPS, FAST_PRESET

JOB_RECORD = "job.json"
_NOT_RECORDED = ("resume", "overwrite", "extra")  # how to treat the folder, not what the job computes
_RESUME_FREE = ("skip_nerf",)  # a resume may drop it: the views are reused and the 4D stage runs


def job_options(settings) -> dict[str, Any]:
    """The options of ``settings`` (a ``JobSettings``) that the record keeps; the video by its absolute path."""
    d = {k: v for k, v in dataclasses.asdict(settings).items() if k not in _NOT_RECORDED}
    d["video"] = str(Path(d["video"]).resolve())
    return d


def write_job_record(out: Path, settings) -> None:
    atomic_write_json(out / JOB_RECORD, {"format": "sv4d_job_options/1", "options": job_options(settings)})


def check_resume(settings) -> dict | None:
    """With ``settings.resume``: ValueError naming every option that differs from the record in ``--out`` (and the
    fix); the finished run's manifest when ``--out`` already holds this job, finished (nothing to do); else None."""
    out = Path(settings.out)
    if not settings.resume or not (out / JOB_RECORD).is_file():
        return None
    recorded = read_json(out / JOB_RECORD, "the job's recorded options").get("options", {})
    now = job_options(settings)
    changed = [k for k in sorted(set(recorded) | set(now)) if k not in _RESUME_FREE and recorded.get(k) != now.get(k)]
    if changed:
        listed = "; ".join(f"{flag(k)} {_show(recorded.get(k))} (recorded) vs {_show(now.get(k))} (now)"
                           for k in changed[:4]) + ("; ..." if len(changed) > 4 else "")
        raise ValueError(f"--resume: --out {out} was started with other options ({listed}){_fast_hint(recorded, now)}; "
                         "rerun with the recorded options to continue it, or pass --overwrite to start over")
    manifest = out / "manifest.json"
    if manifest.is_file():
        done = read_json(manifest, "the job's manifest")
        if settings.skip_nerf or not done.get("settings", {}).get("skip_nerf", False):
            return done
    return None


def _show(value: Any) -> str:
    return "(default)" if value is None else str(value)


def _fast_hint(recorded: dict, now: dict) -> str:
    def fast(d):
        return d.get("preset") == FAST_PRESET and d.get("fit_steps") == FAST_FIT_STEPS

    if fast(recorded) and not fast(now):
        return " (it was started with --fast: add --fast)"
    if fast(now) and not fast(recorded):
        return " (it was started without --fast: drop --fast)"
    return ""


__all__ = ["JOB_RECORD", "job_options", "write_job_record", "check_resume"]
