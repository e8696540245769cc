"""``TrainConfig``: every setting of a training run, from YAML plus ``key=value`` overrides.

    cfg = load_config("train/configs/tiny_cpu.yaml", ["max_steps=2", "output_dir=/tmp/run", "optim.lr=1e-4"])

Groups: ``model`` (what is trained and from what), ``data`` (dataset and sampling), ``optim`` (optimiser and
schedule), ``diffusion`` (noise levels, loss weighting, dropout), ``run`` (steps, precision, checkpoints, logging,
validation). An override is ``group.key=value`` or just ``key=value`` when the key name is unique; values are parsed
as YAML (``1e-4``, ``true``, ``[1, 2]``). Unknown keys raise ValueError naming them.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from sv4d_models.config import ConfigGroups, check_all
from sv4d_models.validate import MAX_STEPS, RANGES, STEPS, check_fields, check_numbers
from sv4d_models.kinds import FOUR_D_KINDS


@dataclass(frozen=True)
class ModelConfig:
    """What is trained, at which size, initialised from which files."""

    kind: str = "sv4d"  # sv4d / sv4d2 / sv4d2_8views
    size: str = "official"  # "official" (full-size network) or "tiny" (tiny_checkpoint widths, CPU tests)
    init_sv3d: str = ""  # SV3D_p engine file: everything except the frame attention (paper 3.1); "" = random init
    init_svd: str = ""  # SVD-xt engine file: the frame attention's temporal layers (paper 3.1); "" = fresh init
    encoders: str = ""  # engine file whose CLIP / VAE copies / decoder are used for validation and export
    #                     ("" = init_sv3d); the trainer never updates them
    gradient_checkpointing: bool = False  # recompute UNet blocks in backward (less memory, ~30% slower)

    def __post_init__(self) -> None:
        check_fields(self, {}, "model")
        check_all([(self.kind in FOUR_D_KINDS, f"model.kind={self.kind!r}: use one of {list(FOUR_D_KINDS)}"),
                (self.size in ("official", "tiny"), f"model.size={self.size!r}: use 'official' or 'tiny'")])


@dataclass(frozen=True)
class DataConfig:
    """Where samples come from and how one is drawn from an object's 21 x 21 renders."""

    path: str = ""  # dataset folder written by ``python -m train.prepare_data`` (manifest.json + shards)
    max_stride: int = 4  # frames of a sample are t0 + s*k, s drawn from 1..max_stride (fits the orbit length)
    p_reference_before: float = 0.5  # reference views at t0 - s (anchor-like) instead of t0 (dense-like)
    p_no_reference: float = 0.0  # SV4D 2.0: drop the reference views (zero cond_view) with this probability
    skip_bad_shards: bool = False  # a corrupt / missing shard: False = error naming it, True = warn and skip

    def __post_init__(self) -> None:
        check_fields(self, {"max_stride": (1, 20, "frame stride within the 21-frame orbits"),
                            "p_reference_before": RANGES["fraction"], "p_no_reference": RANGES["fraction"]}, "data")
        check_all([(self.max_stride >= 1, f"data.max_stride={self.max_stride} must be >= 1"),
                (0 <= self.p_reference_before <= 1, f"data.p_reference_before={self.p_reference_before} not in [0, 1]"),
                (0 <= self.p_no_reference <= 1, f"data.p_no_reference={self.p_no_reference} not in [0, 1]")])


@dataclass(frozen=True)
class OptimConfig:
    """AdamW: linear warm-up, constant, then (``decay_steps`` > 0) a cosine from ``decay_start`` down to
    ``min_lr_ratio`` x lr over ``decay_steps`` steps (constant at that level afterwards)."""

    lr: float = 1e-5
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_steps: int = 0
    grad_clip: float = 1.0  # max global grad norm (0 = off)
    decay_start: int = 0  # step at which the cosine decay begins
    decay_steps: int = 0  # 0 = no decay
    min_lr_ratio: float = 0.0
    restart_steps: int = 0  # > 0: after the decay, cosine cycles (warm restarts) of this many steps each
    restart_lr_ratio: float = 0.5  # their starting lr, as a fraction of lr
    restart_cycles: int = 1  # how many restart cycles follow the decay (then constant at min_lr_ratio x lr)

    def lr_factor(self, step: int) -> float:
        """Learning-rate multiplier at optimizer step ``step`` (0-based)."""
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        if self.decay_steps <= 0 or step < self.decay_start:
            return warm
        end = self.decay_start + self.decay_steps
        top, start, length = 1.0, self.decay_start, self.decay_steps
        if self.restart_steps > 0 and step >= end:
            cycle = min((step - end) // self.restart_steps, self.restart_cycles - 1)
            top, start, length = self.restart_lr_ratio, end + cycle * self.restart_steps, self.restart_steps
        done = min(1.0, (step - start) / length)
        return warm * (self.min_lr_ratio + (top - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * done)))

    def __post_init__(self) -> None:
        check_fields(self, OPTIM_BOUNDS, "optim")
        if isinstance(self.betas, (str, bytes)) or not hasattr(self.betas, "__len__") or len(self.betas) != 2:
            raise ValueError(f"optim.betas={self.betas!r} needs two numbers, e.g. [0.9, 0.999]")
        object.__setattr__(self, "betas", check_numbers(self.betas, "optim.betas", 0.0, ("open", 1.0),
                                                        "Adam moment decay rates"))
        check_all([(self.decay_start >= 0 and self.decay_steps >= 0,
                 f"optim.decay_start={self.decay_start} / decay_steps={self.decay_steps} must be >= 0"),
                (0.0 <= self.min_lr_ratio <= 1.0, f"optim.min_lr_ratio={self.min_lr_ratio} must be in [0, 1]"),
                (self.restart_steps >= 0 and 0.0 <= self.restart_lr_ratio <= 1.0,
                 f"optim.restart_steps={self.restart_steps} must be >= 0 and restart_lr_ratio="
                 f"{self.restart_lr_ratio} in [0, 1]"),
                (self.restart_cycles >= 1, f"optim.restart_cycles={self.restart_cycles} must be >= 1")])
        check_all([(self.lr > 0, f"optim.lr={self.lr} must be > 0"), (self.warmup_steps >= 0, "optim.warmup_steps < 0"),
                (self.grad_clip >= 0, f"optim.grad_clip={self.grad_clip} must be >= 0"),
                (len(self.betas) == 2, f"optim.betas={self.betas} needs two values")])


OPTIM_BOUNDS = {"lr": (("open", 0.0), 1.0, "AdamW learning rate (fine-tuning uses 1e-5)"),
                "weight_decay": (0.0, 10.0, "AdamW weight decay"), "eps": (("open", 0.0), 1.0, "AdamW epsilon"),
                "warmup_steps": (0, MAX_STEPS, STEPS), "grad_clip": (0.0, 1e6, "max gradient norm; 0 = off"),
                "decay_start": (0, MAX_STEPS, STEPS), "decay_steps": (0, MAX_STEPS, STEPS),
                "min_lr_ratio": RANGES["fraction"], "restart_steps": (0, MAX_STEPS, STEPS),
                "restart_lr_ratio": RANGES["fraction"], "restart_cycles": (1, 100_000, "cycles")}


@dataclass(frozen=True)
class DiffusionConfig:
    """Noise levels and loss (EDM, v-scaling; see ``train.diffusion``)."""

    p_mean: float = 1.0  # log sigma ~ N(p_mean, p_std^2)
    p_std: float = 1.6
    p_uncond: float = 0.1  # train on the unconditional inputs (the sampler's uc) with this probability (CFG)
    late_from_step: int = 0  # > 0: from this optimiser step on, log sigma ~ N(late_p_mean, p_std^2) instead
    late_p_mean: float = 1.0

    def p_mean_at(self, step: int) -> float:
        """The mean of log sigma at optimiser step ``step`` (0-based)."""
        return self.late_p_mean if 0 < self.late_from_step <= step else self.p_mean

    def __post_init__(self) -> None:
        log_sigma = (-20.0, 20.0, "mean of log sigma; EDM uses -1.2, our recipe 1.0")
        check_fields(self, {"p_mean": log_sigma, "late_p_mean": log_sigma,
                            "p_std": (("open", 0.0), 20.0, "std of log sigma"), "p_uncond": RANGES["fraction"],
                            "late_from_step": (0, MAX_STEPS, STEPS)}, "diffusion")
        check_all([(self.p_std > 0, f"diffusion.p_std={self.p_std} must be > 0"),
                (0 <= self.p_uncond <= 1, f"diffusion.p_uncond={self.p_uncond} not in [0, 1]"),
                (self.late_from_step >= 0, f"diffusion.late_from_step={self.late_from_step} must be >= 0")])


@dataclass(frozen=True)
class RunConfig:
    """Steps, batch, precision, checkpoints, logging and validation."""

    output_dir: str = "runs/train"
    seed: int = 0
    max_steps: int = 1000  # optimiser steps
    static_steps: int = 0  # curriculum: steps on static orbits before dynamic orbits start
    batch_size: int = 1  # samples per process per micro-batch
    grad_accum: int = 1  # micro-batches per optimiser step
    mixed_precision: str = "no"  # accelerate: "no" / "fp16" / "bf16"
    ema_decay: float = 0.0  # 0 = no EMA; else EMA of the UNet weights (exported when present)
    checkpoint_every: int = 500  # steps; checkpoint-{step} folders (accelerate save_state)
    checkpoints_total_limit: int = 3  # keep this many checkpoint folders (0 = all)
    resume: str = "latest"  # "latest" (newest checkpoint-* in output_dir, if any), "none", or a folder
    log_every: int = 10
    tracker: str = "auto"  # "auto" (tensorboard when installed, else csv), "tensorboard", "csv"
    validate_every: int = 0  # steps (0 = only at the end); validation loss at fixed sigmas + a sampled grid
    validate_at_start: bool = False  # also validate before the first step of a fresh run (a baseline)
    val_sigmas: tuple[float, ...] = (0.1, 1.0, 10.0)  # fixed noise levels of the validation loss
    val_samples: int = 4  # validation samples (fixed noise, fixed draw) per sigma
    val_sample_steps: int = 4  # sampler steps of the validation image grid (0 = no grid)
    export_on_end: bool = True  # write output_dir/export/<kind>.safetensors (official engine layout)
    record_weight_hashes: bool = False  # write logs/weights_rank<r>.sha256 at the end (data-parallel consistency)
    resume_with_changes: bool = False  # resume a checkpoint although settings that shape training changed (a
    #                                    deliberate schedule extension); they are listed in a warning. False: error

    def __post_init__(self) -> None:
        check_fields(self, RUN_BOUNDS, "run")
        if isinstance(self.val_sigmas, (str, bytes)) or not hasattr(self.val_sigmas, "__iter__"):
            raise ValueError(f"run.val_sigmas={self.val_sigmas!r} must be a list of noise levels, e.g. [0.1, 1.0, 10.0]")
        object.__setattr__(self, "val_sigmas", check_numbers(self.val_sigmas, "run.val_sigmas", ("open", 0.0), 1000.0,
                                                             "EDM noise levels (the sampler's largest is 700)"))
        check_all([(self.max_steps >= 1, f"run.max_steps={self.max_steps} must be >= 1"),
                (self.static_steps >= 0, f"run.static_steps={self.static_steps} must be >= 0"),
                (self.batch_size >= 1 and self.grad_accum >= 1, "run.batch_size and run.grad_accum must be >= 1"),
                (self.mixed_precision in ("no", "fp16", "bf16"),
                 f"run.mixed_precision={self.mixed_precision!r}: use 'no', 'fp16' or 'bf16'"),
                (0 <= self.ema_decay < 1, f"run.ema_decay={self.ema_decay} must be in [0, 1)"),
                (self.checkpoint_every >= 1 and self.log_every >= 1, "run.checkpoint_every / log_every must be >= 1"),
                (self.checkpoints_total_limit >= 0, "run.checkpoints_total_limit must be >= 0"),
                (self.tracker in ("auto", "tensorboard", "csv"), f"run.tracker={self.tracker!r}"),
                (all(s > 0 for s in self.val_sigmas), f"run.val_sigmas={self.val_sigmas} must be > 0")])


RUN_BOUNDS = {"seed": (0, 2**32 - 1, "numpy's and accelerate's seed range"), "max_steps": (1, MAX_STEPS, STEPS),
              "static_steps": (0, MAX_STEPS, STEPS), "batch_size": (1, 4096, "samples per micro-batch; memory"),
              "grad_accum": (1, 4096, "micro-batches per step"), "ema_decay": (0.0, ("open", 1.0), "EMA decay"),
              "checkpoint_every": (1, MAX_STEPS, STEPS), "checkpoints_total_limit": (0, 100_000, "folders kept"),
              "log_every": (1, MAX_STEPS, STEPS), "validate_every": (0, MAX_STEPS, "steps; 0 = only at the end"),
              "val_samples": (1, 10_000, "samples per sigma"),
              "val_sample_steps": (0, RANGES["sampler_steps"][1], "sampler steps of the grid; 0 = no grid")}


_GROUPS = ConfigGroups("config", {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig,
                                  "diffusion": DiffusionConfig, "run": RunConfig})


# Settings a checkpoint may be resumed with other values of: they do not change what the steps so far computed
# (how long to train, where and how often to save / log / validate, memory-only switches). Every other setting is
# recorded in the checkpoint, and a resume under other values is refused (``train.checkpointing``).
RESUME_NEUTRAL = ("run.max_steps", "run.output_dir", "run.resume", "run.checkpoint_every",
                  "run.checkpoints_total_limit", "run.log_every", "run.tracker", "run.validate_every",
                  "run.validate_at_start", "run.val_sigmas", "run.val_samples", "run.val_sample_steps",
                  "run.export_on_end", "run.record_weight_hashes", "run.resume_with_changes",
                  "model.gradient_checkpointing", "model.encoders", "data.skip_bad_shards", "data.path")


@dataclass(frozen=True)
class TrainConfig:
    """All settings of a run (groups in the module docstring)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    run: RunConfig = field(default_factory=RunConfig)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "TrainConfig":
        """Nested ``{"run": {...}}`` and/or flat unique keys; unknown keys raise ValueError naming them."""
        groups = _GROUPS.split(d or {})
        return cls(**{g: _GROUPS.groups[g](**_coerce(_GROUPS.groups[g], v, g)) for g, v in groups.items()})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def identity(self) -> dict[str, Any]:
        """The settings that shape what training computes (``to_dict`` without ``RESUME_NEUTRAL``); the initial
        weight files by name and size (a moved file is the same file)."""
        d = self.to_dict()
        for dotted in RESUME_NEUTRAL:
            group, key = dotted.split(".")
            d[group].pop(key)
        for key in ("init_sv3d", "init_svd"):
            path = Path(d["model"][key]) if d["model"][key] else None
            d["model"][key] = [path.name, path.stat().st_size if path.is_file() else None] if path else ""
        return d

    def with_overrides(self, overrides: list[str]) -> "TrainConfig":
        """Apply ``["group.key=value" | "key=value", ...]`` (values parsed as YAML)."""
        d = self.to_dict()
        for item in overrides:
            if "=" not in item:
                raise ValueError(f"override {item!r} is not key=value (e.g. run.max_steps=2)")
            key, raw = item.split("=", 1)
            group, name = _GROUPS.route(key.strip())
            d[group][name] = yaml.safe_load(raw) if raw.strip() else ""
        return TrainConfig.from_dict(d)


def _coerce(cls: type, values: dict[str, Any], group: str) -> dict[str, Any]:
    """Convert YAML strings such as ``1e-4`` (YAML 1.1 reads it as text) to the field's type; ValueError if not."""
    types = {f.name: str(f.type) for f in fields(cls)}
    out = {}
    for key, value in values.items():
        kind = types[key]
        try:
            if kind == "float" and isinstance(value, (str, int)) and not isinstance(value, bool):
                value = float(value)
            elif kind == "int" and isinstance(value, str):
                value = int(value)
            elif kind == "int" and isinstance(value, float) and value.is_integer():
                value = int(value)
            elif kind == "bool" and isinstance(value, str):
                value = {"true": True, "false": False}[value.lower()]
        except (ValueError, KeyError):
            raise ValueError(f"{group}.{key}={value!r}: takes {'an' if kind == 'int' else 'a'} {kind}") from None
        if kind in ("float", "int", "bool") and (isinstance(value, bool) != (kind == "bool") or not isinstance(
                value, {"float": (float, int), "int": int, "bool": bool}[kind])):
            raise ValueError(f"{group}.{key}={value!r}: takes {'an' if kind == 'int' else 'a'} {kind}")
        if kind == "str" and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # a YAML number where text is expected (run.resume=500 is a folder named 500)
        elif kind == "str" and not isinstance(value, str):
            raise ValueError(f"{group}.{key}={value!r}: takes text (a path or a name)")
        out[key] = value
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """YAML file (optional) + overrides -> ``TrainConfig``; errors name the file and the key."""
    d: dict[str, Any] = {}
    if path:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist; see train/configs/ for examples")
        try:
            d = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"config file {path} is not valid YAML: {exc}") from None
        if not isinstance(d, dict):
            raise ValueError(f"config file {path} must hold a mapping of sections, got {type(d).__name__}")
    return TrainConfig.from_dict(d).with_overrides(list(overrides or []))
