"""Configuration of ``fit_dynamic_nerf``: GPU defaults (SV4D recipe), ``cpu_preset()`` and ``tiny_preset()`` (the fit
half of the presets table, ``sv4d_models.presets``)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..config import known_fields
from ..validate import MAX_STEPS, RANGES, STEPS, check_fields, check_number, check_numbers
from .deformation import DeformationConfig
from .field import FieldConfig
from .guard import GuardConfig
from .hashgrid import HashGridConfig
from .kplanes import KPlanesConfig
from .losses import LossConfig
from .motion import MotionConfig
from .renderer import OccupancyConfig


@dataclass(frozen=True)
class NeRFFitConfig:
    """Static-to-dynamic, coarse-to-fine fit of a ``DynamicNeRF`` to an F x V image matrix (SV4D section 3.2).

    Defaults are the paper's GPU recipe (nerf4d.md section 6.2): static stage on frame 0's views with the render
    resolution growing 128 -> 512, then a dynamic stage sampling 4 frames x 4 views per step, Adam lr 0.01.
    """

    field: FieldConfig = dataclasses.field(default_factory=FieldConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    occupancy: OccupancyConfig = dataclasses.field(default_factory=OccupancyConfig)
    guard: GuardConfig = dataclasses.field(default_factory=GuardConfig)  # loss-spike rollback (nerf/guard.py)
    # after the fit: the parts' motion between the frames, for renders at in-between times (nerf/motion.py)
    motion: MotionConfig = dataclasses.field(default_factory=MotionConfig)
    seed: int = 0  # all randomness (init, batches, pixel offsets, stratification) comes from this seed
    n_samples: int = 256  # stratified samples per ray over the ray's AABB segment
    static_steps: int = 600  # stage 1: frame 0 only, deformation off
    dynamic_steps: int = 2000  # stage 2: random frames x views, deformation on
    static_views_per_step: int = 0  # 0 = all views of frame 0
    dynamic_frames_per_step: int = 4
    dynamic_views_per_step: int = 4
    # (stage step, render resolution) pairs, applied in each stage: coarse-to-fine 128 -> 256 -> 512
    resolution_schedule: tuple = ((0, 128), (200, 256), (400, 512))
    max_render_size: int = 128  # above this, render every k-th pixel with a random offset (rays divisor)
    lr: float = 0.01  # Adam lr for hash grid and MLPs
    lr_deformation: float = 0.005
    dynamic_canonical_lr_scale: float = 1.0  # multiply grid/MLP lr in the dynamic stage (4D-fy uses 0.01-0.1)
    dynamic_lr_warmup: int = 30  # deformation lr ramps linearly over the first dynamic steps (fresh Adam state)
    adam_betas: tuple = (0.9, 0.99)
    adam_eps: float = 1e-15
    time_anneal_fraction: float = 0.5  # cosine time-frequency window fully open after this part of stage 2
    normals: str = "analytic"  # "analytic" | "finite_difference" (used only when a loss needs normals)
    checkpoint_dir: str = ""  # "" = no checkpoints; else save/resume here
    checkpoint_every: int = 200  # steps
    preview_every: int = 0  # 0 = no preview image in the callback
    preview_size: int = 64
    render_chunk: int = 65536  # rays per chunk in render()

    # not part of a checkpoint's identity: a fit may be resumed with other values
    IDENTITY_NEUTRAL = ("checkpoint_dir", "checkpoint_every", "preview_every", "preview_size", "render_chunk", "guard")

    @classmethod
    def from_dict(cls, d: dict) -> "NeRFFitConfig":
        """Strict constructor: unknown keys raise ValueError; nested dicts become nested configs."""
        d = known_fields(cls, d, {"field": FieldConfig, "loss": LossConfig, "occupancy": OccupancyConfig,
                                  "guard": GuardConfig, "motion": MotionConfig})
        for key in ("resolution_schedule", "adam_betas"):
            if key in d:
                d[key] = tuple(tuple(v) if isinstance(v, list) else v for v in d[key])
        return cls(**d)

    def __post_init__(self) -> None:
        self.validate()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        check_fields(self, FIT_BOUNDS, "fit")
        if not (isinstance(self.adam_betas, tuple) and len(self.adam_betas) == 2):
            raise ValueError(f"fit.adam_betas={self.adam_betas!r} must be two numbers, e.g. (0.9, 0.99)")
        check_numbers(self.adam_betas, "fit.adam_betas", 0.0, ("open", 1.0), "Adam moment decay rates")
        schedule = self.resolution_schedule
        if not isinstance(schedule, tuple) or not all(isinstance(p, tuple) and len(p) == 2 for p in schedule):
            raise ValueError(f"fit.resolution_schedule={schedule!r} must be (step, resolution) pairs, e.g. "
                             "((0, 128), (200, 256))")
        for i, (step, size) in enumerate(schedule):
            check_number(step, f"fit.resolution_schedule[{i}] step", 0, MAX_STEPS, integer=True)
            check_number(size, f"fit.resolution_schedule[{i}] resolution", *FIT_RENDER_SIZE, integer=True)
        if self.normals not in ("analytic", "finite_difference"):
            raise ValueError(f"normals={self.normals!r}; use 'analytic' or 'finite_difference'")
        if self.static_steps < 0 or self.dynamic_steps < 0 or self.static_steps + self.dynamic_steps == 0:
            raise ValueError(f"static_steps={self.static_steps}, dynamic_steps={self.dynamic_steps}: need >= 0 "
                             "and at least one step in total")
        if not self.resolution_schedule or self.resolution_schedule[0][0] != 0:
            raise ValueError(f"resolution_schedule={self.resolution_schedule} must start with (0, resolution)")
        if self.n_samples < 1:
            raise ValueError(f"n_samples={self.n_samples} must be >= 1")

    @property
    def total_steps(self) -> int:
        return self.static_steps + self.dynamic_steps


FIT_RENDER_SIZE = (1, RANGES["render_size"][1], RANGES["render_size"][2])
# The fit's numbers and their ranges (sv4d_models.validate.RANGES has the shared ones and their reasons)
FIT_BOUNDS = {"seed": RANGES["seed"], "n_samples": (1, 4096, "samples per ray; memory and time grow with it"),
              "static_steps": (0, MAX_STEPS, STEPS), "dynamic_steps": (0, MAX_STEPS, STEPS),
              "static_views_per_step": (0, 1000, "views per step; 0 = all of frame 0's"),
              "dynamic_frames_per_step": (1, 1000, "frames per step; memory grows with it"),
              "dynamic_views_per_step": (1, 1000, "views per step; memory grows with it"),
              "max_render_size": FIT_RENDER_SIZE, "lr": (("open", 0.0), 10.0, "Adam learning rate"),
              "lr_deformation": (0.0, 10.0, "Adam learning rate; 0 freezes the deformation"),
              "dynamic_canonical_lr_scale": (0.0, 100.0, "multiplier of lr"),
              "dynamic_lr_warmup": (0, MAX_STEPS, STEPS), "adam_eps": (("open", 0.0), 1.0, "Adam's epsilon"),
              "time_anneal_fraction": RANGES["fraction"], "checkpoint_every": (1, MAX_STEPS, STEPS),
              "preview_every": (0, MAX_STEPS, "steps; 0 = no previews"), "preview_size": FIT_RENDER_SIZE,
              "render_chunk": (1, 2**24, "rays per render call; memory grows with it")}


# Field designs compared by ``benchmarks/nerf_quality.py --designs`` (issue 23). A design sets what moves the field
# and the regularisers that design needs; sizes (hash grid, planes, MLPs) stay the preset's.
DESIGN_REGULARISERS = {"plane_tv": 0.1, "time_smooth": 1.0, "time_l1": 0.1, "distortion": 1.0, "floater": 10.0}
DESIGNS = {
    # hash grid + D-NeRF deformation MLP (frequency-encoded x and t): the design before issue 23
    "hash_mlp": {"field": {"encoding": "hash", "motion": "warp", "deformation": {"encoding": "frequency"}},
                 "loss": {k: 0.0 for k in DESIGN_REGULARISERS}},
    # K-Planes: three space planes x three space-time planes per scale, no warp
    "kplanes": {"field": {"encoding": "kplanes", "motion": "planes"}, "loss": DESIGN_REGULARISERS},
    # K-Planes space planes as the canonical field + the deformation MLP
    "kplanes_warp": {"field": {"encoding": "kplanes", "motion": "warp", "deformation": {"encoding": "frequency"}},
                     "loss": {**DESIGN_REGULARISERS, "time_smooth": 0.0, "time_l1": 0.0}},
}


def with_design(cfg: NeRFFitConfig, design: str) -> NeRFFitConfig:
    """``cfg`` with the field design ``design`` (a key of ``DESIGNS``); sizes unchanged."""
    if design not in DESIGNS:
        raise ValueError(f"design={design!r}; use one of {', '.join(DESIGNS)}")
    spec = DESIGNS[design]
    deformation = dataclasses.replace(cfg.field.deformation, **spec["field"].get("deformation", {}))
    field_cfg = dataclasses.replace(cfg.field, **{k: v for k, v in spec["field"].items() if k != "deformation"},
                                    deformation=deformation)
    return dataclasses.replace(cfg, field=field_cfg, loss=dataclasses.replace(cfg.loss, **spec["loss"]))


def cpu_preset(**overrides) -> NeRFFitConfig:
    """Preview quality on a CPU, chosen on ``benchmarks/nerf_quality.py`` (issue 23): K-Planes (64 px finest plane, 3
    scales, 8 channels, a row per frame) with 32-wide MLPs (64 were 20 % slower for -0.5..+0.4 dB on held-out views)
    and the sparse-view regularisers, then the parts' motion between the frames (``motion.py``: +0.8 to +1.5 dB at
    held-out times of moving scenes, 6-8 s), 48 samples, 2 frames x 2 views per step, 150 + 500 steps at Adam lr
    0.03 (time planes 0.015; the GPU recipe's 0.01 / 0.005 left this short fit 1.3-2.0 dB lower on every moving
    cell's held-out views); coarse to fine within each stage: 32 px renders for the first 150 steps of a
    stage (the whole static stage), then 64 px (a 32 px step costs about a quarter of a 64 px one: the time goes to
    the dynamic stage's fine steps, which the held-out views gain most from). The hash-grid + deformation-MLP design
    (``with_design(cfg, "hash_mlp")``) keeps its sizes here: L8 T2^15 grid (N_max 256), deformation 2x64."""
    cfg = NeRFFitConfig(
        field=FieldConfig(encoding="kplanes", motion="planes",
                          kplanes=KPlanesConfig(resolution=64, n_scales=3, time_resolution=0, features=8),
                          grid=HashGridConfig(n_levels=8, log2_hashmap_size=15, base_resolution=16,
                                              per_level_scale=2 ** (4 / 7)),
                          deformation=DeformationConfig(n_freq_x=4, n_freq_t=4, hidden=64, n_hidden_layers=2),
                          hidden=32),
        loss=LossConfig(lpips=0.0, bilateral_normal=0.0, bilateral_depth=10.0, **DESIGN_REGULARISERS),
        occupancy=OccupancyConfig(resolution=32, warmup_steps=32, update_every=16),
        motion=MotionConfig(enabled=True),
        n_samples=48, static_steps=150, dynamic_steps=500, static_views_per_step=4,
        dynamic_frames_per_step=2, dynamic_views_per_step=2, resolution_schedule=((0, 32), (150, 64)),
        max_render_size=64, lr=0.03, lr_deformation=0.015, checkpoint_every=50)
    return dataclasses.replace(cfg, **overrides)


def tiny_preset(**overrides) -> NeRFFitConfig:
    """Tiny CI configuration (nerf4d.md 6.4): L6 T2^12 N_max 64, MLP 32, deformation 2x32, 24 samples, 24 px."""
    cfg = NeRFFitConfig(
        field=FieldConfig(grid=HashGridConfig(n_levels=6, log2_hashmap_size=12, base_resolution=8,
                                              per_level_scale=2 ** (3 / 5)),
                          deformation=DeformationConfig(n_freq_x=4, n_freq_t=4, hidden=32, n_hidden_layers=2),
                          hidden=32, backend="torch"),
        loss=LossConfig(lpips=0.0, bilateral_normal=0.0, bilateral_depth=0.0),
        occupancy=OccupancyConfig(resolution=16, warmup_steps=16, update_every=8),
        n_samples=24, static_steps=40, dynamic_steps=40, static_views_per_step=0, dynamic_frames_per_step=2,
        dynamic_views_per_step=2, resolution_schedule=((0, 24),), max_render_size=24, checkpoint_every=20,
        dynamic_lr_warmup=0)
    return dataclasses.replace(cfg, **overrides)
