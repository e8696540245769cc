"""The sampling nodes' runs: the library's sampling loop (``sv4d_models.pipeline.run_plan``, the one
``SV4DPipeline.run`` uses) over a pass store in a work dir named by the hash of everything that fixes the passes,
so a Cancelled or crashed node continues from its finished passes when queued again with the same inputs. No
ComfyUI imports here: the models, the progress reporter and the stop check are passed in.

RNG and order are ``SV4DPipeline.run``'s (the same loop): pass k samples with ``pass_seed(seed, k)``, the SV3D stage
with ``pass_seed(seed, REFERENCE)``, concat latents are encoded per view in ``official`` mode only.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from sv4d_models.kinds import KINDS
from sv4d_models.pipeline import PassSettings, PassStore, check_image_size, reference_row, run_plan
from sv4d_models.sampling import REFERENCE, get_sigmas_edm
from sv4d_models.sampling.plan import PlannedPass, make_plan
from sv4d_models.validate import RANGES, check_fields

from .values import CameraSpec, SampledPasses, resolve_setting, run_key


@dataclass(frozen=True)
class SamplingWidgets:
    """Widget values of one sampling node (0 = the kind's official value)."""

    seed: int = 23
    steps: int = 0
    cfg: float = 0.0
    min_cfg: float = 0.0
    sigmas: torch.Tensor | None = None

    def __post_init__(self) -> None:
        check_fields(self, {"seed": RANGES["seed"], "steps": (0, RANGES["sampler_steps"][1], "0 = official"),
                            "cfg": RANGES["cfg"], "min_cfg": RANGES["cfg"]})

    def resolved(self, kind: str) -> "SamplingWidgets":
        spec = KINDS[kind]
        steps = self.steps or spec.default_steps
        if self.sigmas is not None:
            steps = check_sigmas(self.sigmas)
        return SamplingWidgets(int(self.seed), int(steps), resolve_setting(self.cfg, spec.cfg),
                               resolve_setting(self.min_cfg, spec.min_cfg), self.sigmas)

    def schedule(self) -> torch.Tensor:
        return get_sigmas_edm(self.steps) if self.sigmas is None else self.sigmas.detach().float().cpu()

    def identity(self) -> list:
        sig = None if self.sigmas is None else [round(float(s), 7) for s in self.sigmas]
        return [self.seed, self.steps, self.cfg, self.min_cfg, sig]


def check_sigmas(sigmas: torch.Tensor) -> int:
    """Number of steps of a core SIGMAS schedule; ValueError naming the problem and the fix."""
    if not torch.is_tensor(sigmas) or sigmas.ndim != 1 or sigmas.numel() < 2:
        shape = tuple(sigmas.shape) if torch.is_tensor(sigmas) else type(sigmas).__name__
        raise ValueError(f"sigmas must be a 1-D schedule with at least 2 values (steps + 1), got {shape}; connect a "
                         "core scheduler node (e.g. KarrasScheduler) or leave sigmas empty")
    if not bool(torch.isfinite(sigmas).all()):
        raise ValueError(f"sigmas hold NaN or infinite values ({[float(s) for s in sigmas[:6]]}...); connect a core "
                         "scheduler node's output or leave sigmas empty")
    if float(sigmas[-1]) != 0.0 or bool((sigmas[1:] > sigmas[:-1]).any()):
        raise ValueError("sigmas must decrease and end in 0 (as core schedulers' output does); got "
                         f"{[round(float(s), 4) for s in sigmas[:4]]}...{float(sigmas[-1]):.4g}")
    return int(sigmas.numel() - 1)


def start_run(models, frames: torch.Tensor, orbit: torch.Tensor | None, cameras: CameraSpec | None,
              mode: str, steps: int, identity) -> SampledPasses:
    """Check the inputs against the model and compute what every pass shares (plan, CLIP rows, reference row).

    ``identity``: what fixes the models' numbers (files / weights, dtypes, device type), part of work-dir keys.
    """
    kind = models.kind
    cameras = CameraSpec(kind) if cameras is None else cameras
    cameras.check_kind(kind)
    check_image_size(frames.shape[-1], models.levels)
    plan = make_plan(kind, int(frames.shape[0]), mode, steps)
    outputs = {}
    if plan.given_reference_row:
        if orbit is None:
            raise ValueError("sv4d needs reference views of frame 0: connect the orbit output of SV4D Reference "
                             "Orbit (SV3D), or an IMAGE batch of 8, 9 or 21 views of frame 0")
        outputs[REFERENCE] = reference_row(orbit, plan.n_views, frames.shape[-1])
    elif orbit is not None:
        raise ValueError(f"{kind} has no reference-orbit stage (it samples windows from the video alone); "
                         "disconnect the orbit input")
    clip = models.clip_embed(frames)  # chunked by the models
    ref = tuple(outputs.values())
    key = run_key("sv4d-run", kind, plan.mode, identity, cameras.identity(), tensors=(frames, *ref))
    return SampledPasses(plan, kind, frames, clip, outputs, cameras, key)


def run_passes(models, state: SampledPasses, select: Callable[[PlannedPass], bool], widgets: SamplingWidgets,
               work_root: Path, on_event, should_stop) -> SampledPasses:
    """Sample the selected passes of ``state``'s plan that are not done yet (``run_plan``), resuming from the work
    dir; ``on_event``: the reporter of the loop's ``sample_step`` / ``pass_resumed`` events."""
    w = widgets.resolved(state.kind)
    plan = make_plan(state.kind, state.plan.n_frames, state.plan.mode, w.steps)
    todo = [p.index for p in plan.passes if select(p) and p.index not in state.outputs]
    key = run_key(state.key, w.identity(), todo)
    run = {"inputs": state.key[:16], "kind": state.kind, "mode": plan.mode, "seed": w.seed, "steps": w.steps,
           "cfg": w.cfg, "min_cfg": w.min_cfg, "sigmas": w.identity()[-1], "passes": todo}
    store = PassStore(Path(work_root) / key[:24], run=run)  # a pass file of other settings is refused, not reused
    settings = PassSettings(w.seed, w.schedule(), w.cfg, w.min_cfg, state.cameras.elevations_deg,
                            state.cameras.azimuths_deg, encode_per_view=plan.mode == "official")
    run_plan(models, plan, state.frames, state.clip, store, settings, select=select, known=state.outputs,
             on_event=on_event, should_stop=should_stop)
    new = {i: store.load_pass(i)["cells"] for i in todo}
    return state.extended(new, key, **{f"pass_{i}": w.identity() for i in todo})


def is_first_stage(p: PlannedPass) -> bool:
    """Passes of the anchor node: SV4D anchors (or the single short-video window), every SV4D 2.0 window."""
    return p.kind != "dense"
