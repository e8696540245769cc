"""Standalone SV4D / SV4D 2.0 sampling: one input video -> a (frame x view) image matrix, bounded memory,
resumable, re-rollable. Spec: ``sv4d_reference.md`` sections 4-8.

    pipe = SV4DPipeline.from_checkpoints("sv4d.safetensors", "sv3d_u.safetensors")
    result = pipe.run("video.mp4", work_dir="runs/cat")      # [F, 9, 576, 576, 3] via result.images
    result.write_videos("runs/cat/videos")

* sv4d: SV3D orbit of frame 0 (the input replaces the last, azimuth-0 frame; rolled by +1; views
  [0,2,5,7,9,12,14,16,19]) -> anchor pass(es) -> dense passes (alternating backward / forward steps), each
  overwriting its cells exactly as ``plan(...).passes[k].writes`` says (row 0 views 1..8 come from SV3D and
  are overwritten by dense pass 0). ``reference_views=`` replaces the SV3D stage with the caller's orbit.
* sv4d2 / sv4d2_8views: autoregressive windows; the first has no reference (zero cond_view, indicator 0),
  later ones use the previous window's views at their first frame.

Differences from the official scripts (all deliberate, see ``pipeline_run``): one RNG per pass
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

import os
from typing import Callable

import torch

from .camera import conditioning_angles
from .pipeline_config import PipelineConfig
from .pipeline_inputs import check_image_size, frame_times, load_input, matrix_cameras, reference_row, to_model_frames
from .pipeline_models import Runner, StageModels, load_stage_models, peek_checkpoint
from .pipeline_run import Session, final_sources
from .pipeline_store import MultiViewResult, PassStore
from .sampling.plan import Plan, plan as make_plan

__all__ = ["PipelineConfig", "SV4DPipeline", "MultiViewResult", "StageModels"]


def _check_4d_kind(kind: str, source) -> None:
    if kind not in ("sv4d", "sv4d2", "sv4d2_8views"):
        raise ValueError(f"{source} is a {kind!r} checkpoint; SV4DPipeline needs sv4d / sv4d2 / sv4d2_8views weights "
                         "(pass SV3D files as sv3d_checkpoint_path=)")


class SV4DPipeline:
    """SV4D-family sampler over already-loaded networks (``from_checkpoints`` loads them from files).

    Args:
        models: the 4D model's ``StageModels`` (UNet, CLIP, VAE copies, decoder) on ``config.device``.
        config: ``PipelineConfig`` or dict (model kind / steps / device / dtype are resolved here).
        sv3d: SV3D ``StageModels``, or a zero-argument loader called on first need (sv4d only).
        sv3d_kind: kind of the SV3D loader's model (``sv3d_u`` / ``sv3d_p``) when ``sv3d`` is a loader.
        sv3d_source: checkpoint id of the SV3D file (recorded in work dirs).
    """

    def __init__(self, models: StageModels, config: PipelineConfig | dict | None = None,
                 sv3d: StageModels | Callable[[], StageModels] | None = None, sv3d_kind: str | None = None,
                 sv3d_source: str | None = None):
        config = PipelineConfig.from_dict(config) if isinstance(config, dict) else (config or PipelineConfig())
        _check_4d_kind(models.kind, models.source)
        if isinstance(sv3d, StageModels):
            sv3d_kind, sv3d_source = sv3d.kind, sv3d.source
        if models.kind != "sv4d":
            sv3d, sv3d_kind = None, None
        self.models, self._sv3d_source = models, sv3d_source
        if isinstance(sv3d, dict):  # shared with configure() copies
            self._sv3d = sv3d
        else:
            loaded = isinstance(sv3d, StageModels)
            self._sv3d = {"models": sv3d if loaded else None, "loader": None if loaded else sv3d}
        self._raw_config, self._sv3d_kind = config, sv3d_kind
        self.config = config.resolved(models.kind, sv3d_kind)
        self.runner = Runner(self.config.device, self.config.torch_dtype, self.config.encoding_t,
                             self.config.decoding_t)

    @classmethod
    def from_checkpoints(cls, checkpoint_path: str | os.PathLike, sv3d_checkpoint_path: str | os.PathLike | None = None,
                         config: PipelineConfig | dict | None = None, device: str | None = None,
                         dtype: str | None = None, model_kind: str | None = None) -> "SV4DPipeline":
        """Load a 4D checkpoint (and, for sv4d, an SV3D one: loaded lazily on first use).

        ``device`` / ``dtype`` / ``model_kind`` override the config's values. The UNet is loaded in the run
        dtype (float16 on CUDA by default), CLIP / VAE in float32, all under autocast when not float32.
        """
        config = PipelineConfig.from_dict(config) if isinstance(config, dict) else (config or PipelineConfig())
        changes = {k: v for k, v in (("device", device), ("dtype", dtype), ("model_kind", model_kind)) if v is not None}
        config = config.replace(**changes)
        kind, _, _ = peek_checkpoint(checkpoint_path, config.model_kind)
        _check_4d_kind(kind, checkpoint_path)
        resolved = config.resolved(kind)
        models = load_stage_models(checkpoint_path, kind, resolved.device, resolved.torch_dtype)
        sv3d = sv3d_kind = sv3d_source = None
        if kind == "sv4d" and sv3d_checkpoint_path is not None:
            sv3d_kind, _, sv3d_source = peek_checkpoint(sv3d_checkpoint_path, config.sv3d_kind)
            if not sv3d_kind.startswith("sv3d"):
                raise ValueError(f"sv3d_checkpoint_path {sv3d_checkpoint_path} is a {sv3d_kind!r} checkpoint; "
                                 "pass sv3d_u.safetensors or sv3d_p.safetensors")

            def sv3d(path=sv3d_checkpoint_path, k=sv3d_kind):
                return load_stage_models(path, k, resolved.device, resolved.torch_dtype)
        return cls(models, config, sv3d, sv3d_kind, sv3d_source)

    def configure(self, **changes) -> "SV4DPipeline":
        """A pipeline sharing these networks with other settings (seed, steps, mode, cfg, image_size, ...)."""
        fixed = {"model_kind", "device", "dtype", "sv3d_kind"} & set(changes)
        if fixed and any(changes[k] != getattr(self.config, k) for k in fixed):
            raise ValueError(f"{sorted(fixed)} need other weights / placement; load a new pipeline with "
                             "SV4DPipeline.from_checkpoints(...) instead")
        return SV4DPipeline(self.models, self._raw_config.replace(**changes), self._sv3d, self._sv3d_kind,
                            self._sv3d_source)

    def sv3d_models(self) -> StageModels:
        """The SV3D stage's networks (loaded now if a loader was given; kept for later runs)."""
        if self._sv3d["models"] is None and self._sv3d["loader"] is None:
            raise ValueError("sv4d needs reference views of frame 0: pass sv3d_checkpoint_path= "
                             "(sv3d_u.safetensors / sv3d_p.safetensors) to from_checkpoints, or "
                             "reference_views= (8, 9 or 21 images) to run()")
        if self._sv3d["models"] is None:
            self._sv3d["models"] = self._sv3d["loader"]()
        return self._sv3d["models"]

    def release_sv3d(self) -> None:
        """Drop loaded SV3D networks (frees their memory; a file-backed loader reloads them when needed)."""
        if self._sv3d["loader"] is not None:  # modules given directly are kept: nothing to reload them from
            self._sv3d["models"] = None

    def checkpoint_ids(self) -> dict:
        return {"model": self.models.source, "sv3d": self._sv3d_source}

    def plan(self, n_frames: int) -> Plan:
        """The pass schedule ``run`` will follow for ``n_frames`` frames."""
        return make_plan(self.models.kind, n_frames, self.config.mode, self.config.num_steps)

    def read_frames(self, frames_or_path) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Validated model input ``[F, 3, S, S]`` float32 in [-1, 1] and foreground masks ``[F, S, S]`` (None
        for tensor input) from frames or a video / gif / image-folder path (``config.max_frames`` etc.)."""
        cfg, size = self.config, int(self.config.image_size)
        check_image_size(size, self.models.levels)
        if isinstance(frames_or_path, (str, os.PathLike)):
            return load_input(frames_or_path, size, cfg.image_frame_ratio, cfg.max_frames, cfg.remove_bg,
                              cfg.official_preprocess)
        frames = to_model_frames(frames_or_path)
        if frames.shape[-1] != size:
            raise ValueError(f"frames are {frames.shape[-1]}x{frames.shape[-1]} but image_size={size}; resize them "
                             f"(sv4d_models.preprocess.preprocess_frames(frames, size={size})) or use "
                             f"pipe.configure(image_size={frames.shape[-1]})")
        check_image_size(frames.shape[-1], self.models.levels)
        return frames, None

    def run(self, frames_or_path, work_dir: str | os.PathLike | None = None, callback: Callable[[dict], None] | None = None,
            should_stop: Callable[[], bool] | None = None, reroll: dict[int, int] | None = None,
            reference_views=None, overwrite: bool = False) -> MultiViewResult:
        """Sample every novel view of every frame.

        Args:
            frames_or_path: ``[F, 3, S, S]`` in [-1, 1] or ``[F, S, S, 3]`` in [0, 1] (already preprocessed,
                S = ``config.image_size``), a list of frames, or a video / gif / image-folder path.
            work_dir: folder for per-pass files; a rerun with the same work dir and config continues after the
                last finished pass (bit-identical on CPU). A different config / input raises ValueError.
            callback: called after every sampler step with ``{pass_index, pass_kind, step, total_steps, sigma,
                sigma_next, direction, global_step, global_total, denoised}`` (SV3D stage: pass_index -1,
                pass_kind "sv3d"; ``denoised``: current x0 estimate, latents ``[T, V, 4, h, w]`` (SV3D
                ``[21, 4, h, w]``) on the device, for cheap previews; no copy is made).
            should_stop: polled between steps and passes; True -> InterruptedError after saving finished passes.
            reroll: ``{pass_index: new_seed}``: re-sample those passes (-1 = SV3D stage) and every pass that
                takes reference views from them; all other passes are kept (needs the same work_dir).
            reference_views: sv4d only: 8 / 9 / 21 images of frame 0's orbit instead of the SV3D stage.
            overwrite: discard whatever the work dir holds.
        Returns:
            ``MultiViewResult`` (``images`` ``[F, V+1, S, S, 3]`` in [0, 1], ``cameras``, ``times``, ``plan``).
        """
        cameras = matrix_cameras(self.models.kind, self.config.elevations_deg, self.config.azimuths_deg)
        conditioning_angles(self.models.kind, self.config.elevations_deg, self.config.azimuths_deg)  # validate early
        frames, masks = self.read_frames(frames_or_path)
        plan = self.plan(frames.shape[0])
        reference = None
        if reference_views is not None:
            if not plan.given_reference_row:
                raise ValueError(f"reference_views is only used by sv4d; {plan.model_kind} has no reference stage")
            reference = reference_row(reference_views, plan.n_views, frames.shape[-1])
        store = PassStore.open(work_dir, self.config.offload)
        session = Session(self, plan, store, callback, should_stop)
        session.open(frames, masks, reference, overwrite)
        del frames, masks  # the store holds them (on disk, memory-mapped, with a work dir)
        session.apply_reroll(reroll)
        session.run_all()
        return MultiViewResult(store, plan, final_sources(plan), cameras, frame_times(plan.n_frames),
                               self.config.image_size)
