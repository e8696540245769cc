"""Divergence guard of ``fit_dynamic_nerf``: a loss spike or a non-finite loss rolls the fit back to the last good
state and lowers the learning rate; a fit that keeps diverging ends with ``FitDivergedError`` naming the step.

A step is a spike when its loss exceeds ``spike_factor`` x the median of the last ``window`` losses of the same
stage (a stage's first three steps are only checked for non-finite values: the dynamic stage sees frames the
static solution does not explain, so its starting loss is legitimately higher). Good states are snapshotted in memory every ``snapshot_every`` steps
(model, optimiser, occupancy grid, RNG, step, history); a rollback restores one exactly, so the retry repeats the same
batches with a smaller learning rate.
"""
from __future__ import annotations

import copy
import logging
import math
import statistics
from collections import deque
from dataclasses import dataclass


from ..config import check_known_keys
from ..validate import check_fields

log = logging.getLogger("sv4d.nerf")


class FitDivergedError(RuntimeError):
    """The fit diverged again after the allowed number of rollbacks (message: step, losses, the fix)."""


@dataclass(frozen=True)
class GuardConfig:
    enabled: bool = True
    spike_factor: float = 8.0  # loss > factor x recent median (same stage) = spike
    window: int = 20  # recent losses compared against
    snapshot_every: int = 25  # steps between in-memory good states
    lr_backoff: float = 0.5  # learning-rate factor after each rollback
    max_rollbacks: int = 4  # then FitDivergedError

    def __post_init__(self) -> None:
        check_fields(self, {"spike_factor": (None, 1e6), "window": (None, 100_000), "snapshot_every": (None, 10**7),
                            "lr_backoff": (None, None), "max_rollbacks": (None, 1000)}, "guard")
        if self.spike_factor <= 1 or self.window < 3 or self.snapshot_every < 1:
            raise ValueError(f"guard: spike_factor={self.spike_factor} must be > 1, window={self.window} >= 3, "
                             f"snapshot_every={self.snapshot_every} >= 1")
        if not 0 < self.lr_backoff < 1 or self.max_rollbacks < 0:
            raise ValueError(f"guard: lr_backoff={self.lr_backoff} must be in (0, 1), max_rollbacks >= 0")

    @classmethod
    def from_dict(cls, d: dict) -> "GuardConfig":
        check_known_keys(cls, d)
        return cls(**d)


class DivergenceGuard:
    """Watches the losses of one fit (see the module docstring)."""

    def __init__(self, cfg: GuardConfig, state):
        self.cfg, self.rollbacks = cfg, 0
        self.recent: deque[float] = deque(maxlen=cfg.window)
        self.stage: str | None = None
        self.snapshot = self._take(state)
        self.events: list[dict] = []

    @staticmethod
    def _take(state) -> dict:
        return {"model": copy.deepcopy(state.model.state_dict()), "optimizer": copy.deepcopy(state.optimizer.state_dict()),
                "occupancy": None if state.occupancy is None else copy.deepcopy(state.occupancy.state_dict()),
                "rng": state.generator.get_state(), "step": state.step, "history": len(state.history)}

    def _spike(self, loss: float, stage: str) -> bool:
        if not math.isfinite(loss):
            return True
        if stage != self.stage:  # a new stage sees other frames: its loss level is its own
            self.recent.clear()
        self.stage = stage
        spike = len(self.recent) >= 3 and loss > self.cfg.spike_factor * statistics.median(self.recent)
        if not spike:
            self.recent.append(loss)
        return spike

    def after_step(self, state, info: dict) -> bool:
        """True when the step was rolled back (the caller skips its bookkeeping); raises after too many rollbacks."""
        if not self.cfg.enabled:
            return False
        if not self._spike(float(info["loss"]), info["stage"]):
            if state.step % self.cfg.snapshot_every == 0:
                self.snapshot = self._take(state)
            return False
        return self._rollback(state, info)

    def _rollback(self, state, info: dict) -> bool:
        loss, step = float(info["loss"]), int(info["step"])
        median = statistics.median(self.recent) if self.recent else float("nan")
        if self.rollbacks >= self.cfg.max_rollbacks:
            raise FitDivergedError(
                f"the 4D fit diverged at step {step} (loss {loss:.4g}, recent median {median:.4g}) after "
                f"{self.rollbacks} rollbacks that each lowered the learning rate by {self.cfg.lr_backoff}; the last good "
                f"state is step {self.snapshot['step']}. The input views may be inconsistent (check the sampled "
                "videos), or lower NeRFFitConfig.lr / lr_deformation")
        self.rollbacks += 1
        snap = self.snapshot
        state.model.load_state_dict(snap["model"])
        state.optimizer.load_state_dict(snap["optimizer"])
        if state.occupancy is not None:
            state.occupancy.load_state_dict(snap["occupancy"])
        state.generator.set_state(snap["rng"])
        state.step = snap["step"]
        del state.history[snap["history"]:]
        state.lr_scale *= self.cfg.lr_backoff
        event = {"event": "rollback", "at_step": step, "to_step": snap["step"], "loss": loss, "median": median,
                 "lr_scale": state.lr_scale}
        self.events.append(event)
        log.warning("4D fit: loss %.4g at step %d is a spike (recent median %.4g): rolled back to step %d, learning "
                    "rate x%.3g", loss, step, median, snap["step"], state.lr_scale)
        return True


__all__ = ["GuardConfig", "DivergenceGuard", "FitDivergedError"]
