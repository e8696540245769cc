"""Showing progress events (``sv4d_models.events``) in a terminal."""
from __future__ import annotations

import sys
import time

from . import events


class ConsoleReporter:
    """The console reporter of ``sv4d_models.events`` (``sv4d`` and the trainer): one tqdm bar per stage (sampling,
    fit, training steps, exports), one summary line per stage on stdout, warnings and rollbacks on stderr."""

    def __init__(self, quiet: bool = False):
        self.quiet, self.bar, self.stage, self.started = quiet, None, None, time.perf_counter()

    def _bar(self, stage: str, total: int, unit: str = "step"):
        from tqdm import tqdm

        if self.stage != stage:
            self.close()
            self.stage = stage
            self.bar = tqdm(total=total, desc=stage, unit=unit, disable=self.quiet, leave=False,
                            unit_scale=unit == "B", dynamic_ncols=True)
        return self.bar

    def __call__(self, event: dict) -> None:
        """A reporter of ``sv4d_models.events``."""
        kind = event["type"]
        if kind == events.WARNING:  # shown even with --quiet: something the user must know (e.g. a guessed kind)
            self.close()
            print(f"sv4d: warning: {event['text']}", file=sys.stderr, flush=True)
        elif kind == events.SUMMARY:
            self.close()
            if not self.quiet:
                print(f"[{event['stage']}] {event['text']}", flush=True)
        elif kind in (events.SAMPLE_STEP, events.PASS_RESUMED):
            bar = self._bar("sampling", event["global_total"])
            done = event["global_step"] + (1 if kind == events.SAMPLE_STEP else 0)
            bar.update(done - bar.n)
        elif kind == events.ROLLBACK:
            print(f"[nerf] loss spike at step {event['at_step']}: rolled back to step {event['to_step']}, learning "
                  f"rate x{event['lr_scale']:.3g}", file=sys.stderr, flush=True)
        elif kind == events.FIT_STEP:
            bar = self._bar("nerf fit", event["total_steps"])
            bar.update(event["step"] - bar.n)
            bar.set_postfix(loss=f"{event['loss']:.3f}", stage=event["stage"], refresh=False)
        elif kind == events.TRAIN_STEP:
            bar = self._bar("train", event["total_steps"])
            bar.update(event["step"] - bar.n)
            bar.set_postfix(loss=f"{event['loss']:.4f}", refresh=False)
        elif kind == events.PROGRESS:
            bar = self._bar(event["stage"], event["total"], event["unit"])
            bar.update(event["done"] - bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar, self.stage = None, None


__all__ = ["ConsoleReporter"]
