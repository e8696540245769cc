"""How every long job stops early: one exception type.

Sampling (``SV4DPipeline.run`` and the stage functions), the NeRF fit and training poll a caller-supplied
``should_stop()`` between units of work (sampler steps, optimisation steps). When it returns True the job first
saves what it can (finished passes, a fit checkpoint), then raises ``JobInterrupted``, whose message says what was
kept and how to continue. ``JobInterrupted`` is an ``InterruptedError``, so ``except InterruptedError`` works.
A ``should_stop`` may also raise its own exception (ComfyUI's interrupt does): it propagates unchanged.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable, Iterator

__all__ = ["JobInterrupted", "StopCheck", "stop_requested", "stop_on_signals"]

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


@contextlib.contextmanager
def stop_on_signals(announce: Callable[[str], None] = lambda text: None) -> Iterator[StopCheck]:
    """A ``should_stop`` that turns True on SIGTERM or Ctrl-C (SIGINT): the job stops after its current step,
    resumable. A second Ctrl-C raises ``KeyboardInterrupt`` at once. ``announce(text)`` is told the first time.
    Outside the main thread (where handlers cannot be set) the check never turns True."""
    asked = []

    def handler(signum, frame):
        if asked and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if not asked:
            announce(f"{signal.Signals(signum).name}: stopping after the current step (Ctrl-C again: at once)")
        asked.append(signum)

    main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    try:
        yield lambda: bool(asked)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
