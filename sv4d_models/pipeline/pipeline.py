"""Standalone SV4D / SV4D 2.0 sampling: one input video -> a (frame x view) image matrix, bounded memory,
resumable, re-rollable. Spec: ``sv4d_reference.md`` sections 4-8.

    pipe = SV4DPipeline.from_checkpoints("sv4d.safetensors", "sv3d_u.safetensors")
    result = pipe.run("video.mp4", work_dir="runs/cat")      # [F, 9, 576, 576, 3] via result.images
    result.write_videos("runs/cat/videos")

* sv4d: SV3D orbit of frame 0 (``stages.sample_reference_orbit``: the input replaces the last, azimuth-0 frame;
  rolled by +1; views [0,2,5,7,9,12,14,16,19]) -> anchor pass(es) -> dense passes (alternating backward /
  forward steps), each overwriting its cells exactly as ``make_plan(...).passes[k].writes`` says (row 0 views 1..8
  come from SV3D and are overwritten by dense pass 0). ``reference_views=`` replaces the SV3D stage.
* sv4d2 / sv4d2_8views: autoregressive windows; the first has no reference (zero cond_view, indicator 0),
  later ones use the previous window's views at their first frame.

``run`` is the reference stage then ``loop.run_plan`` (the sampling loop the ComfyUI nodes and the trainer's
validation use too) over the pass store and manifest of ``store.py``.

Differences from the official scripts (all deliberate, see ``stages``): one RNG per pass
(``pass_seed(seed, k)``) instead of one global stream; CLIP embeddings computed once per frame; in
``extended`` mode (and with ``encode_per_view=False``) each frame's concat latent is encoded once and
repeated for the V views instead of V noisy encodes; dense passes draw noise only for their own cells.

Memory: finished passes leave the accelerator right away (latents and decoded cells on the CPU). With a
``work_dir`` (or ``offload="workdir"``, the default, which uses a temporary folder) every pass is a file
read back memory-mapped, and a pass loads only its own input frames, CLIP rows and reference row, so peak
RAM does not grow with the video length; ``offload="cpu"`` without a work dir keeps all passes in RAM
(faster, RAM grows with length). ``result.images`` assembles the full float matrix on demand; prefer
``result.view(v)`` / ``view_uint8(v)`` / ``write_videos`` for long videos.
"""
from __future__ import annotations

import functools
import os
from typing import Callable

import torch

from ..camera import conditioning_angles, frame_times, matrix_cameras
from .. import events
from ..checkpoint import resolve_kind, warn_if_unsure
from ..kinds import FOUR_D_KINDS, ORBIT_KINDS, get_kind
from ..sampling.plan import REFERENCE, Plan, make_plan
from ..stopping import JobInterrupted, StopCheck, stop_requested
from .config import PipelineConfig
from .inputs import check_image_size, load_input, reference_row, to_model_frames
from .models import EngineModels, Placement, load_engine_models
from .loop import PassSettings, run_plan
from .result import MultiViewResult
from .stages import pass_seed, sample_reference_orbit
from .store import PassStore, RunRecord

__all__ = ["SV4DPipeline"]


def _as_config(config: PipelineConfig | dict | None) -> PipelineConfig:
    return PipelineConfig.from_dict(config) if isinstance(config, dict) else (config or PipelineConfig())


def _placement(cfg: PipelineConfig) -> Placement:
    p = cfg.placement
    return Placement(torch.device(p.device), p.torch_dtype, int(p.encoding_t), int(p.decoding_t))


def _check_4d_kind(kind: str, source) -> None:
    if kind not in FOUR_D_KINDS:
        raise ValueError(f"{source} is a {kind!r} checkpoint; SV4DPipeline needs sv4d / sv4d2 / sv4d2_8views weights "
                         "(pass SV3D files as sv3d_checkpoint_path=)")


class _OrbitModels:
    """The SV3D stage's networks, shared by ``configure`` copies: given, or loaded on first use from a file."""

    def __init__(self, models: EngineModels | Callable[[], EngineModels] | None, kind: str | None,
                 source: str | None):
        loaded = isinstance(models, EngineModels)
        self.models = models if loaded else None
        self.loader = None if loaded else models
        self.kind = models.kind if loaded else kind
        self.source = models.source if loaded else source

    def get(self) -> EngineModels:
        if self.models is None and self.loader is None:
            raise ValueError("sv4d needs reference views of frame 0: pass sv3d_checkpoint_path= "
                             "(sv3d_u.safetensors / sv3d_p.safetensors) to from_checkpoints, or "
                             "reference_views= (8, 9 or 21 images) to run()")
        if self.models is None:
            self.models = self.loader()
        return self.models


class SV4DPipeline:
    """SV4D-family sampler over already-loaded networks (``from_checkpoints`` loads them from files).

    Args:
        models: the 4D model's ``EngineModels`` (its placement is replaced by the config's).
        config: ``PipelineConfig`` or dict (model kind / steps / device / dtype are resolved here).
        sv3d: SV3D ``EngineModels``, or a zero-argument loader called on first need (sv4d only).
        sv3d_kind: kind of the SV3D loader's model (``sv3d_u`` / ``sv3d_p``) when ``sv3d`` is a loader.
        sv3d_source: checkpoint id of the SV3D file (recorded in work dirs).
    """

    def __init__(self, models: EngineModels, config: PipelineConfig | dict | None = None,
                 sv3d: EngineModels | Callable[[], EngineModels] | None = None, sv3d_kind: str | None = None,
                 sv3d_source: str | None = None):
        config = _as_config(config)
        _check_4d_kind(models.kind, models.source)
        orbit = sv3d if isinstance(sv3d, _OrbitModels) else _OrbitModels(sv3d, sv3d_kind, sv3d_source)
        self._orbit = orbit if get_kind(models.kind).needs_reference_orbit else _OrbitModels(None, None, None)
        self._raw_config = config
        self.config = config.resolved(models.kind, self._orbit.kind)
        self.models = models.placed(_placement(self.config))

    @classmethod
    def from_checkpoints(cls, checkpoint_path: str | os.PathLike, sv3d_checkpoint_path: str | os.PathLike | None = None,
                         config: PipelineConfig | dict | None = None, device: str | None = None,
                         dtype: str | None = None, model_kind: str | None = None) -> "SV4DPipeline":
        """Load a 4D checkpoint (and, for sv4d, an SV3D one: checked now, loaded on first use).

        ``device`` / ``dtype`` / ``model_kind`` override the config's values. The UNet is loaded in the run
        dtype (float16 on CUDA by default), CLIP / VAE in float32, all under autocast when not float32.
        """
        changes = {k: v for k, v in (("device", device), ("dtype", dtype), ("model_kind", model_kind)) if v is not None}
        config = _as_config(config).replace(**changes)
        info = resolve_kind(checkpoint_path, config.sampling.model_kind)
        warn_if_unsure(info)  # sv4d2 vs sv4d2_8views guessed from the weights alone: say so
        kind = info.kind
        _check_4d_kind(kind, checkpoint_path)
        sv3d_kind = sv3d_source = None
        if get_kind(kind).needs_reference_orbit and sv3d_checkpoint_path is not None:
            sv3d_info = resolve_kind(sv3d_checkpoint_path, config.sampling.sv3d_kind)
            sv3d_kind, sv3d_source = sv3d_info.kind, sv3d_info.source
            if sv3d_kind not in ORBIT_KINDS:
                raise ValueError(f"sv3d_checkpoint_path {sv3d_checkpoint_path} is a {sv3d_kind!r} checkpoint; "
                                 "pass sv3d_u.safetensors or sv3d_p.safetensors")
        placement = _placement(config.resolved(kind, sv3d_kind))
        models = load_engine_models(checkpoint_path, kind, placement)
        sv3d = None if sv3d_kind is None else functools.partial(load_engine_models, sv3d_checkpoint_path, sv3d_kind,
                                                                  placement)
        return cls(models, config, sv3d, sv3d_kind, sv3d_source)

    def configure(self, **changes) -> "SV4DPipeline":
        """A pipeline sharing these networks with other settings (seed, steps, mode, cfg, image_size, ...)."""
        fixed = {"model_kind", "device", "dtype", "sv3d_kind"} & set(changes)
        flat = {**vars(self.config.sampling), **vars(self.config.placement)}
        if fixed and any(changes[k] != flat[k] for k in fixed):
            raise ValueError(f"{sorted(fixed)} need other weights / placement; load a new pipeline with "
                             "SV4DPipeline.from_checkpoints(...) instead")
        return SV4DPipeline(self.models, self._raw_config.replace(**changes), self._orbit)

    def with_config(self, config: PipelineConfig | dict) -> "SV4DPipeline":
        """A pipeline sharing these networks (and the SV3D stage's) with a whole new config; the model kind, device
        and dtype must stay those the networks were loaded for (``sv4d batch``: one load for every video)."""
        new = SV4DPipeline(self.models, config, self._orbit)
        placed = {k: getattr(self.config.placement, k) for k in ("device", "dtype")}
        if {k: getattr(new.config.placement, k) for k in placed} != placed:
            raise ValueError(f"the networks were loaded for {placed}; load a new pipeline for another device / dtype")
        return new

    def sv3d_models(self) -> EngineModels:
        """The SV3D stage's networks (loaded now if a loader was given; kept for later runs)."""
        return self._orbit.get().placed(self.models.placement)

    def checkpoint_ids(self) -> dict:
        return {"model": self.models.source, "sv3d": self._orbit.source}

    def plan(self, n_frames: int) -> Plan:
        """The pass schedule ``run`` will follow for ``n_frames`` frames."""
        s = self.config.sampling
        return make_plan(self.models.kind, n_frames, s.mode, s.num_steps)

    def read_frames(self, frames_or_path) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Validated model input ``[F, 3, S, S]`` float32 in [-1, 1] and foreground masks ``[F, S, S]`` (None
        for tensor input) from frames or a video / gif / image-folder path (``config.framing``)."""
        fr, size = self.config.framing, int(self.config.framing.image_size)
        check_image_size(size, self.models.levels)
        if isinstance(frames_or_path, (str, os.PathLike)):
            return load_input(frames_or_path, size, fr.image_frame_ratio, fr.max_frames, fr.remove_bg,
                              fr.official_preprocess)
        frames = to_model_frames(frames_or_path)
        if frames.shape[-1] != size:
            raise ValueError(f"frames are {frames.shape[-1]}x{frames.shape[-1]} but image_size={size}; resize them "
                             f"(sv4d_models.preprocess.preprocess_frames(frames, size={size})) or use "
                             f"pipe.configure(image_size={frames.shape[-1]})")
        check_image_size(frames.shape[-1], self.models.levels)
        return frames, None

    def run(self, frames_or_path, work_dir: str | os.PathLike | None = None, callback: Callable[[dict], None] | None = None,
            should_stop: StopCheck | None = None, reroll: dict[int, int] | None = None,
            reference_views=None, overwrite: bool = False) -> MultiViewResult:
        """Sample every novel view of every frame.

        Args:
            frames_or_path: ``[F, 3, S, S]`` in [-1, 1] or ``[F, S, S, 3]`` in [0, 1] (already preprocessed,
                S = ``config.framing.image_size``), a list of frames, or a video / gif / image-folder path.
            work_dir: folder for per-pass files; a rerun with the same work dir and config continues after the
                last finished pass (bit-identical on CPU). A different config / input raises ValueError.
            callback: a reporter (``sv4d_models.events``): ``sample_step`` events after every sampler step
                (``pass_index, pass_kind, step, total_steps, sigma, sigma_next, direction, global_step,
                global_total, denoised``; SV3D stage: pass_index -1, pass_kind "sv3d"; ``denoised``: current x0
                estimate, latents ``[T, V, 4, h, w]`` (SV3D ``[21, 4, h, w]``) on the device, for cheap previews;
                no copy is made) and ``pass_resumed`` for passes found done in the work dir.
            should_stop: polled between steps and passes; True -> ``JobInterrupted`` (an ``InterruptedError``)
                after saving finished passes.
            reroll: ``{pass_index: new_seed}``: re-sample those passes (-1 = SV3D stage) and every pass that
                takes reference views from them; all other passes are kept (needs the same work_dir).
            reference_views: sv4d only: 8 / 9 / 21 images of frame 0's orbit instead of the SV3D stage.
            overwrite: discard whatever the work dir holds.
        Returns:
            ``MultiViewResult`` (``images`` ``[F, V+1, S, S, 3]`` in [0, 1], ``cameras``, ``times``, ``plan``).
        """
        s = self.config.sampling
        cameras = matrix_cameras(self.models.kind, s.elevations_deg, s.azimuths_deg)
        conditioning_angles(self.models.kind, s.elevations_deg, s.azimuths_deg)  # validate early
        frames, masks = self.read_frames(frames_or_path)
        plan = self.plan(frames.shape[0])
        reference = None
        if reference_views is not None:
            if not plan.given_reference_row:
                raise ValueError(f"reference_views is only used by sv4d; {plan.model_kind} has no reference stage")
            reference = reference_row(reference_views, plan.n_views, frames.shape[-1])
        store = PassStore.open(work_dir, self.config.placement.offload)
        record = RunRecord.open(store, self.config.identity(), plan, frames, reference, self.checkpoint_ids(), overwrite)
        self._store_inputs(store, frames, masks)
        del frames, masks  # the store holds them (on disk, memory-mapped, with a work dir)
        if reroll:
            record.reroll(plan, reroll, user_reference=reference is not None)
        try:
            self._run_passes(plan, record, reference, callback, should_stop)
        except JobInterrupted as stop:
            where = (f"passes {record.manifest['done']} are saved in {store.folder}; run again with the same work_dir "
                     "and config to continue") if store.persistent else \
                "nothing was kept (no work_dir); pass work_dir= to make runs resumable"
            raise JobInterrupted("sampling", where, len(record.manifest["done"]), store.persistent) from stop
        return MultiViewResult(store, plan, cameras, frame_times(plan.n_frames), self.config.framing.image_size)

    def _store_inputs(self, store: PassStore, frames: torch.Tensor, masks: torch.Tensor | None) -> None:
        """Keep the inputs and their CLIP embeddings in the store (once per work dir)."""
        if not store.has_inputs():
            store.save_inputs(frames, masks)
        if not store.has_clip():
            store.save_clip(self.models.clip_embed(store.frames))  # chunked by the models (placement.encoding_t)

    def pass_settings(self, plan: Plan) -> PassSettings:
        """The loop's settings of this pipeline's config for ``plan``."""
        s = self.config.sampling
        per_view = s.encode_per_view if s.encode_per_view is not None else plan.mode == "official"
        return PassSettings(s.seed, None, s.cfg, s.min_cfg, s.elevations_deg, s.azimuths_deg, s.cond_aug, per_view)

    def _run_passes(self, plan: Plan, record: RunRecord, reference: torch.Tensor | None, callback,
                    should_stop: StopCheck | None) -> None:
        """The reference row (SV3D orbit or user views), then ``loop.run_plan`` over every pass not yet done."""
        s, store = self.config.sampling, record.store
        orbit_steps = s.sv3d_num_steps if plan.given_reference_row else 0
        total = plan.total_steps + (orbit_steps or 0)
        if plan.given_reference_row and not record.done(REFERENCE):
            if stop_requested(should_stop):
                raise JobInterrupted("sampling", "stopped before the reference stage")
            if reference is not None:
                store.save_pass(REFERENCE, reference.clone(), [(0, v) for v in range(1, plan.n_views + 1)], -1)
            else:
                seed = pass_seed(record.base_seed(REFERENCE, s.seed), REFERENCE)
                emit = callback or (lambda event: None)
                orbit = sample_reference_orbit(
                    self.sv3d_models(), store.frames[[0]], seed=seed, num_steps=orbit_steps,
                    elevations_deg=s.elevations_deg, azimuths_deg=s.azimuths_deg, cond_aug=s.cond_aug,
                    callback=lambda info: emit(events.sample_step(REFERENCE, "sv3d", info["step"], total, info)),
                    should_stop=should_stop)
                store.save_pass(REFERENCE, orbit.row, sorted(plan.reference_row()), seed, orbit.latents,
                                orbit.generator_state)
            record.mark_done(REFERENCE)
        run_plan(self.models, plan, store.frames, store.clip_embeds, record, self.pass_settings(plan),
                 on_event=callback, should_stop=should_stop, step_offset=orbit_steps or 0, total_steps=total)
