"""Progress events of every long job: plain dicts with a ``type`` key, built only by the constructors below, and one
reporter protocol, ``Reporter = Callable[[dict], None]``, that the ``sv4d`` CLI, the ComfyUI nodes and the trainer
consume (each dispatches on ``event["type"]``).

    type          made by                              keys besides "type"
    sample_step   the sampling loop, the SV3D stage    pass_index, pass_kind, step, total_steps, sigma, sigma_next,
                                                       direction, denoised, global_step, global_total
    pass_resumed  the sampling loop                    pass_index, pass_kind, steps, global_step, global_total
    fit_step      the 4D fit                           step, stage, loss, terms, n_evaluated, total_steps (+ preview)
    rollback      the 4D fit's divergence guard        at_step, to_step, loss, median, lr_scale, step, stage
    train_step    the trainer                          step, total_steps, loss, lr
    progress      exports, quality checks, hashing     stage, done, total, unit
    summary       the job (one line per stage)         stage, text
    warning       anything the user must see           text
"""
from __future__ import annotations

from typing import Callable

Reporter = Callable[[dict], None]

SAMPLE_STEP, PASS_RESUMED, FIT_STEP, ROLLBACK = "sample_step", "pass_resumed", "fit_step", "rollback"
TRAIN_STEP, PROGRESS, SUMMARY, WARNING = "train_step", "progress", "summary", "warning"
TYPES = (SAMPLE_STEP, PASS_RESUMED, FIT_STEP, ROLLBACK, TRAIN_STEP, PROGRESS, SUMMARY, WARNING)


def sample_step(pass_index: int, pass_kind: str, global_step: int, global_total: int, step_info: dict) -> dict:
    """One sampler step of a pass; ``step_info``: ``step, total_steps, sigma, sigma_next, direction, denoised``."""
    return {"type": SAMPLE_STEP, "pass_index": pass_index, "pass_kind": pass_kind, **step_info,
            "global_step": global_step, "global_total": global_total}


def pass_resumed(pass_index: int, pass_kind: str, steps: int, global_step: int, global_total: int) -> dict:
    """A pass found finished (resume): its ``steps`` count as done; ``global_step`` = steps done after it."""
    return {"type": PASS_RESUMED, "pass_index": pass_index, "pass_kind": pass_kind, "steps": steps,
            "global_step": global_step, "global_total": global_total}


def fit_step(info: dict, total_steps: int) -> dict:
    """One 4D-fit step (``info`` from ``nerf.fit_steps.train_step``)."""
    return {**info, "type": FIT_STEP, "total_steps": total_steps}


def rollback(record: dict, step: int, stage: str, loss: float) -> dict:
    """The fit's guard rolled back (``record``: ``at_step, to_step, loss, median, lr_scale``)."""
    return {**{k: v for k, v in record.items() if k != "event"}, "type": ROLLBACK, "step": step, "stage": stage,
            "loss": loss}


def train_step(step: int, total_steps: int, loss: float, lr: float) -> dict:
    return {"type": TRAIN_STEP, "step": step, "total_steps": total_steps, "loss": loss, "lr": lr}


def progress(stage: str, done: int, total: int, unit: str = "item") -> dict:
    return {"type": PROGRESS, "stage": stage, "done": done, "total": total, "unit": unit}


def summary(stage: str, text: str) -> dict:
    return {"type": SUMMARY, "stage": stage, "text": text}


def warning(text: str) -> dict:
    return {"type": WARNING, "text": text}


__all__ = ["Reporter", "TYPES", "SAMPLE_STEP", "PASS_RESUMED", "FIT_STEP", "ROLLBACK", "TRAIN_STEP", "PROGRESS",
           "SUMMARY", "WARNING", "sample_step", "pass_resumed", "fit_step", "rollback", "train_step", "progress",
           "summary", "warning"]
