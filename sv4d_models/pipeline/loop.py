"""The one sampling loop: every pass of a plan that is not done yet, each with its own seed, its reference views
taken from the passes before it, recorded in a pass ledger. ``SV4DPipeline.run``, the ComfyUI sampling nodes and
the trainer's validation all sample through ``run_plan``; they differ only in their ledger (a work dir with a
manifest, a work dir named by the node's inputs, RAM) and in what they do with the progress events.

    ledger = PassStore(None)                        # or RunRecord (pipeline), PassStore(folder) (nodes)
    run_plan(models, plan, frames, clip, ledger, PassSettings(seed=23), on_event=print)

Events (``on_event``, dicts with a ``type`` key; see ``sv4d_models.events``): ``sample_step`` after every sampler
step and ``pass_resumed`` for a pass found done in the ledger, both carrying ``global_step`` / ``global_total``
over the selected passes (plus ``step_offset``, the steps of stages run before the loop, e.g. the SV3D orbit).
"""
from __future__ import annotations

from collections import ChainMap
from dataclasses import dataclass
from typing import Callable, Mapping, Protocol

import torch

from ..events import pass_resumed, sample_step
from ..sampling.plan import Plan, PlannedPass
from ..stopping import JobInterrupted, StopCheck, stop_requested
from .stages import PassResult, SamplingModels, pass_seed, reference_images, sample_pass

__all__ = ["PassLedger", "PassSettings", "run_plan", "plan_steps"]


@dataclass(frozen=True)
class PassSettings:
    """What fixes a plan's cells besides the inputs and the models.

    ``seed``: base seed (pass k samples with ``pass_seed(seed, k)``, or the ledger's re-roll override);
    ``sigmas``: one schedule for every pass (``[n + 1]`` ending in 0), None = the EDM schedule of each pass's steps;
    ``cfg`` / ``min_cfg``: guidance scales (None = the kind's official values); camera arguments as in
    ``conditioning_angles``; ``encode_per_view``: the official V noisy encodes of each concat frame.
    """

    seed: int
    sigmas: torch.Tensor | None = None
    cfg: float | None = None
    min_cfg: float | None = None
    elevations_deg: float | tuple[float, ...] | None = None
    azimuths_deg: tuple[float, ...] | None = None
    cond_aug: float = 1e-5
    encode_per_view: bool = False


class PassLedger(Protocol):
    """Where finished passes live (``PassStore``: a folder or RAM; ``RunRecord``: a work dir with its manifest)."""

    def done(self, index: int) -> bool: ...
    def base_seed(self, index: int, default: int) -> int: ...
    def record(self, index: int, result: PassResult) -> None: ...
    def cells(self) -> Mapping[int, torch.Tensor]: ...


def plan_steps(planned: PlannedPass, settings: PassSettings) -> int:
    return len(settings.sigmas) - 1 if settings.sigmas is not None else len(planned.step_directions)


def run_plan(models: SamplingModels, plan: Plan, frames, clip_embeds, ledger: PassLedger, settings: PassSettings, *,
             select: Callable[[PlannedPass], bool] | None = None, known: Mapping[int, torch.Tensor] | None = None,
             on_event: Callable[[dict], None] | None = None, should_stop: StopCheck | None = None,
             step_offset: int = 0, total_steps: int | None = None) -> list[int]:
    """Sample every pass of ``plan`` that ``select`` keeps, is not in ``known`` and is not done in ``ledger``.

    Args:
        frames, clip_embeds: ``[F, 3, S, S]`` in [-1, 1] and ``[F, D]`` (or anything indexable like them).
        known: cells of passes finished elsewhere (an earlier node; ``REFERENCE``: row 0's reference views); used as
            references, never sampled again.
        should_stop: polled before every pass and between steps (``JobInterrupted``; finished passes are kept).
        step_offset, total_steps: the global step count of the caller's whole run (default: these passes alone).
    Returns:
        the indices sampled now, in plan order.
    """
    known = known or {}
    todo = [p for p in plan.passes if (select is None or select(p)) and p.index not in known]
    total = total_steps if total_steps is not None else step_offset + sum(plan_steps(p, settings) for p in todo)
    outputs = ChainMap(ledger.cells(), known)
    emit = on_event or (lambda event: None)
    done_now, offset = [], step_offset
    for p in todo:
        steps = plan_steps(p, settings)
        if ledger.done(p.index):
            offset += steps
            emit(pass_resumed(p.index, p.kind, steps, offset, total))
            continue
        if stop_requested(should_stop):
            raise JobInterrupted("sampling", f"stopped before pass {p.index}")
        seed = pass_seed(ledger.base_seed(p.index, settings.seed), p.index)

        def on_step(info: dict, p=p, start=offset) -> None:
            emit(sample_step(p.index, p.kind, start + info["step"], total, info))

        result = sample_pass(models, p, frames, clip_embeds, reference_images(plan, p, outputs), seed=seed,
                             sigmas=settings.sigmas, cfg=settings.cfg, min_cfg=settings.min_cfg,
                             elevations_deg=settings.elevations_deg, azimuths_deg=settings.azimuths_deg,
                             cond_aug=settings.cond_aug, encode_per_view=settings.encode_per_view,
                             callback=on_step, should_stop=should_stop)
        ledger.record(p.index, result)
        done_now.append(p.index)
        offset += steps
    return done_now
