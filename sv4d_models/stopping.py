"""How every long job stops early: one exception type.

Sampling (``SV4DPipeline.run`` and the stage functions), the NeRF fit and training poll a caller-supplied
``should_stop()`` between units of work (sampler steps, optimisation steps). When it returns True the job first
saves what it can (finished passes, a fit checkpoint), then raises ``JobInterrupted``, whose message says what was
kept and how to continue. ``JobInterrupted`` is an ``InterruptedError``, so ``except InterruptedError`` works.
A ``should_stop`` may also raise its own exception (ComfyUI's interrupt does): it propagates unchanged.
"""
from __future__ import annotations

from typing import Callable

__all__ = ["JobInterrupted", "StopCheck", "stop_requested"]

StopCheck = Callable[[], bool]


class JobInterrupted(InterruptedError):
    """A long job ended early because ``should_stop()`` returned True.

    Attributes:
        job: which job (``"sampling"``, ``"nerf fit"``, ``"training"``).
        step: how far it got (passes done, optimisation steps done), when meaningful.
        resumable: whether a rerun with the same arguments continues from what was saved.
    """

    def __init__(self, job: str, message: str, step: int | None = None, resumable: bool = False):
        super().__init__(f"{job} stopped by should_stop(): {message}")
        self.job, self.step, self.resumable = job, step, resumable


def stop_requested(should_stop: StopCheck | None) -> bool:
    """True when a stop check was given and asks to stop now."""
    return should_stop is not None and bool(should_stop())
