"""UNet configuration: the official yaml ``network_config`` as a strict, frozen dataclass.

``UNetConfig.from_network_config`` takes exactly the ``network_config`` section of the official
``scripts/sampling/configs/{sv4d,sv4d2,sv4d2_8views,sv3d_u,sv3d_p}.yaml`` (with or without its
``target``/``params`` wrapper). Unknown keys and values we do not implement raise ``ValueError``
naming the key, the value and what is supported: a silently different network is worse than an error.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, is_dataclass, replace
from typing import Any

from .kinds import get_kind


def check_known_keys(cls: type, d: dict[str, Any]) -> None:
    """Reject keys that are not fields of the dataclass ``cls`` (shared by every ``Config.from_dict``)."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} key {unknown[0]!r}" + (f" (and {unknown[1:]})" if unknown[1:] else "")
                         + f"; known keys: {sorted(names)}")


def known_fields(cls: type, d: dict[str, Any], nested: dict[str, type] | None = None) -> dict[str, Any]:
    """``d`` checked by ``check_known_keys`` and copied, each dict under a key of ``nested`` turned into that config
    (its own ``from_dict``): the common part of the nested configs' ``from_dict``."""
    check_known_keys(cls, d)
    d = dict(d)
    for key, typ in (nested or {}).items():
        if isinstance(d.get(key), dict):
            d[key] = typ.from_dict(d[key])
    return d


from .validate import MAX_SEED  # noqa: E402,F401 - re-exported (nodes, pipeline)


def check_all(checks: list[tuple[bool, str]]) -> None:
    """Raise ValueError with the message of the first failed ``(ok, message)`` check (config ``__post_init__``)."""
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


class ConfigGroups:
    """The keys of a config made of groups (``PipelineConfig``, the trainer's ``TrainConfig``): a key is
    ``group.key``, a key name unique among the groups, or a whole group as a mapping (``{"sampling": {...}}``).

    ``split(changes)`` -> ``{group: {key: value}}``; unknown, ambiguous or misplaced keys raise ValueError naming them.
    """

    def __init__(self, owner: str, groups: dict[str, type]):
        self.owner, self.groups = owner, groups
        self.group_of: dict[str, list[str]] = {}
        for group, cls in groups.items():
            for f in fields(cls):
                self.group_of.setdefault(f.name, []).append(group)

    def route(self, key: str) -> tuple[str, str]:
        """``group.key`` or a unique ``key`` -> ``(group, key)``."""
        if "." in key:
            group, name = key.split(".", 1)
            if group not in self.groups or name not in {f.name for f in fields(self.groups[group])}:
                known = sorted(f"{g}.{n}" for n, gs in self.group_of.items() for g in gs)
                raise ValueError(f"unknown {self.owner} key {key!r}; known: {known}")
            return group, name
        groups = self.group_of.get(key)
        if not groups:
            raise ValueError(f"unknown {self.owner} key {key!r}; known keys: {sorted(self.group_of)} (flat) or the "
                             f"groups {list(self.groups)}")
        if len(groups) > 1:
            raise ValueError(f"{self.owner} key {key!r} is ambiguous ({groups}); write group.key")
        return groups[0], key

    def split(self, changes: dict[str, Any]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {group: {} for group in self.groups}
        for key, value in changes.items():
            if key in self.groups:
                if is_dataclass(value):
                    value = asdict(value)
                if not isinstance(value, dict):
                    raise ValueError(f"{self.owner} section {key!r} must be a mapping, got {value!r}")
                check_known_keys(self.groups[key], value)
                out[key].update(value)
            else:
                group, name = self.route(key)
                out[group][name] = value
        return out


def config_identity(cfg) -> dict[str, Any]:
    """The settings that change a long job's results: ``asdict(cfg)`` without the fields named in the class
    attribute ``IDENTITY_NEUTRAL`` (dotted paths into nested configs; e.g. placement, logging, file paths).

    A work dir or checkpoint records this; a rerun with a different identity is refused instead of resumed.
    """
    out = asdict(cfg)
    for dotted in getattr(type(cfg), "IDENTITY_NEUTRAL", ()):
        *parents, leaf = dotted.split(".")
        node = out
        for key in parents:
            node = node[key]
        node.pop(leaf)
    return out


def identity_differences(recorded: Any, current: Any, where: str = "") -> list[str]:
    """``["seed: 1 (recorded) vs 0 (now)", ...]``: the dotted keys where two identities (nested dicts / lists of
    plain values, as ``config_identity`` and JSON give them) differ; [] when they are equal."""
    if isinstance(recorded, dict) and isinstance(current, dict):
        out = []
        for key in sorted(set(recorded) | set(current), key=str):
            name = f"{where}.{key}" if where else str(key)
            if key not in recorded or key not in current:
                out.append(f"{name}: {'missing' if key not in recorded else recorded[key]!r} (recorded) vs "
                           f"{'missing' if key not in current else current[key]!r} (now)")
            else:
                out += identity_differences(recorded[key], current[key], name)
        return out
    if isinstance(recorded, (list, tuple)) and isinstance(current, (list, tuple)) and len(recorded) == len(current):
        return [d for i, (a, b) in enumerate(zip(recorded, current))
                for d in identity_differences(a, b, f"{where}[{i}]")]
    return [] if recorded == current else [f"{where or 'value'}: {recorded!r} (recorded) vs {current!r} (now)"]


SV4D_TARGET = "sgm.modules.diffusionmodules.video_model.SpatialUNetModelWithTime"
SV3D_TARGET = "sgm.modules.diffusionmodules.video_model.VideoUNet"
ARCHITECTURES = {SV4D_TARGET: "spatial_unet_with_time", SV3D_TARGET: "video_unet"}


@dataclass(frozen=True)
class UNetConfig:
    """Hyper-parameters of SV4D's ``SpatialUNetModelWithTime`` and SV3D's ``VideoUNet``."""

    architecture: str = "spatial_unet_with_time"  # or "video_unet" (SV3D)
    in_channels: int = 8  # 4 noisy latent + 4 concat latent
    out_channels: int = 4
    model_channels: int = 320
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (4, 2, 1)  # downsampling factors with attention
    num_head_channels: int = 64  # -1: use num_heads
    num_heads: int = -1
    legacy: bool = False  # True: dim_head = ch // num_heads
    transformer_depth: tuple[int, ...] = (1,)  # per level (one value = all levels)
    transformer_depth_middle: int | None = None  # default: last level's depth
    context_dim: int = 1024  # CLIP image embedding width
    adm_in_channels: int = 1280  # "vector" width (256 sigma + 512 polar + 512 azimuth)
    motion_context_dim: int = 4  # SV4D frame-attention context: VAE latent channels
    extra_ff_mix_layer: bool = True  # temporal blocks get norm_in + ff_in
    use_spatial_context: bool = True  # temporal cross-attention context = CLIP token
    merge_strategy: str = "learned_with_images"  # AlphaBlender strategy
    merge_factor: float = 0.0  # initial mix_factor
    time_kernel_size: tuple[int, int, int] = (3, 1, 1)  # temporal ResBlock Conv3d kernel
    max_time_embed_period: int = 10000
    use_motion_attention: bool = True  # SV4D: view + frame attention per layer
    use_3d_attention: bool = False  # SV4D 2.0 4-view: the released code's view-attention grouping
    use_camera_emb: bool = False  # SV4D 2.0: view embedding from the 1280-d timestep+vector embedding
    separate_motion_merge_factor: bool = False  # SV4D 2.0: own mix factor for the frame attention
    use_checkpoint: bool = False  # gradient checkpointing (training only; no effect on outputs)

    @property
    def time_embed_dim(self) -> int:
        return 4 * self.model_channels

    def depth_at(self, level: int) -> int:
        d = self.transformer_depth
        return d[0] if len(d) == 1 else d[level]

    def heads_at(self, ch: int) -> tuple[int, int]:
        """(heads, dim_head) of an attention layer with ``ch`` channels, as the official code computes it."""
        if self.num_head_channels == -1:
            heads = self.num_heads
            dim_head = ch // heads
        else:
            heads, dim_head = ch // self.num_head_channels, self.num_head_channels
        if self.legacy:
            dim_head = ch // heads
        return heads, dim_head

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "UNetConfig":
        check_known_keys(cls, d)
        d = dict(d)
        for k in ("channel_mult", "attention_resolutions", "transformer_depth", "time_kernel_size"):
            if k in d and d[k] is not None:
                d[k] = tuple(int(v) for v in (d[k] if isinstance(d[k], (list, tuple)) else [d[k]]))
        return cls(**d)

    def replace(self, **changes) -> "UNetConfig":
        return replace(self, **changes)

    @classmethod
    def from_network_config(cls, network_config: dict[str, Any]) -> "UNetConfig":
        """Strictly translate an official yaml ``network_config`` (see module docstring)."""
        return _translate(network_config)


# --- translation of the official yaml ------------------------------------------------------------------

# official key -> (our field or None when the key is accepted but has no effect, allowed values or None)
_COMMON = {
    "in_channels": ("in_channels", None),
    "out_channels": ("out_channels", None),
    "model_channels": ("model_channels", None),
    "channel_mult": ("channel_mult", None),
    "num_res_blocks": ("num_res_blocks", None),
    "attention_resolutions": ("attention_resolutions", None),
    "num_head_channels": ("num_head_channels", None),
    "num_heads": ("num_heads", None),
    "transformer_depth": ("transformer_depth", None),
    "transformer_depth_middle": ("transformer_depth_middle", None),
    "context_dim": ("context_dim", None),
    "adm_in_channels": ("adm_in_channels", None),
    "extra_ff_mix_layer": ("extra_ff_mix_layer", None),
    "use_spatial_context": ("use_spatial_context", None),
    "use_checkpoint": ("use_checkpoint", None),
    "max_ddpm_temb_period": ("max_time_embed_period", None),
    "use_linear_in_transformer": (None, (True,)),
    "spatial_transformer_attn_type": (None, ("softmax", "softmax-xformers")),
    "num_classes": (None, ("sequential",)),
    "dropout": (None, (0, 0.0)),
    "conv_resample": (None, (True,)),
    "dims": (None, (2,)),
    "use_scale_shift_norm": (None, (False,)),
    "resblock_updown": (None, (False,)),
    "disable_temporal_crossattention": (None, (False,)),
    "time_downup": (None, (False,)),
    "num_heads_upsample": (None, None),
    "time_context_dim": (None, (None,)),
}
_SV4D_ONLY = {
    "legacy": ("legacy", None),
    "motion_context_dim": ("motion_context_dim", None),
    "time_block_merge_strategy": ("merge_strategy", ("learned_with_images", "learned", "fixed")),
    "time_block_merge_factor": ("merge_factor", None),
    "time_kernel_size": ("time_kernel_size", None),
    "use_motion_attention": ("use_motion_attention", (True,)),
    "use_3d_attention": ("use_3d_attention", None),
    "use_camera_emb": ("use_camera_emb", None),
    "separate_motion_merge_factor": ("separate_motion_merge_factor", None),
    "time_mix_legacy": (None, (False,)),
    "replicate_time_mix_bug": (None, None),  # the buggy blender is disabled in the released code
    "use_spatial_transformer": (None, (True,)),
    "use_temporal_resblock": (None, (True,)),
    "use_new_attention_order": (None, (False,)),
    "view_block_merge_factor": (None, None),
    "motion_block_merge_factor": (None, None),
    "view_context_dim": (None, (None,)),
}
_SV3D_ONLY = {
    "merge_strategy": ("merge_strategy", ("learned_with_images", "learned", "fixed")),
    "merge_factor": ("merge_factor", None),
    "video_kernel_size": ("time_kernel_size", None),
}


def _unwrap(network_config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if not isinstance(network_config, dict):
        raise TypeError(f"network_config must be a dict, got {type(network_config).__name__}")
    if "params" in network_config or "target" in network_config:
        extra = sorted(set(network_config) - {"target", "params"})
        if extra:
            raise ValueError(f"network_config has keys {extra} beside target/params; pass the yaml's network_config section")
        target = network_config.get("target", SV4D_TARGET)
        if target not in ARCHITECTURES:
            raise ValueError(f"network_config target {target!r} is not supported; supported: {sorted(ARCHITECTURES)}")
        return ARCHITECTURES[target], dict(network_config.get("params") or {})
    params = dict(network_config)
    # Without a target, SV3D's VideoUNet is recognised by its own key names.
    arch = "video_unet" if any(k in params for k in ("merge_strategy", "video_kernel_size")) else "spatial_unet_with_time"
    return arch, params


def _translate(network_config: dict[str, Any]) -> UNetConfig:
    arch, params = _unwrap(network_config)
    table = {**_COMMON, **(_SV4D_ONLY if arch == "spatial_unet_with_time" else _SV3D_ONLY)}
    values: dict[str, Any] = {"architecture": arch}
    if arch == "video_unet":
        values.update(use_motion_attention=False, legacy=False)
    for key, value in params.items():
        if key not in table:
            raise ValueError(
                f"network_config key {key!r} (value {value!r}) is not supported for {arch}; supported keys: {sorted(table)}"
            )
        ours, allowed = table[key]
        if allowed is not None and value not in allowed:
            raise ValueError(f"network_config {key}={value!r} is not supported; supported values: {list(allowed)}")
        if ours is not None:
            values[ours] = value
    if arch == "video_unet" and "legacy" in params:
        raise ValueError("network_config key 'legacy' is not a VideoUNet argument")
    if "num_classes" not in params:
        raise ValueError("network_config needs num_classes: sequential (the SV3D/SV4D vector conditioning)")
    return UNetConfig.from_dict(values)


# --- the official full-size configurations ---------------------------------------------------------------

_SV4D_BASE = dict(
    adm_in_channels=1280, attention_resolutions=[4, 2, 1], channel_mult=[1, 2, 4, 4], context_dim=1024,
    motion_context_dim=4, extra_ff_mix_layer=True, in_channels=8, legacy=False, model_channels=320,
    num_classes="sequential", num_head_channels=64, num_res_blocks=2, out_channels=4, replicate_time_mix_bug=True,
    spatial_transformer_attn_type="softmax-xformers", time_block_merge_factor=0.0,
    time_block_merge_strategy="learned_with_images", time_kernel_size=[3, 1, 1], time_mix_legacy=False,
    transformer_depth=1, use_checkpoint=False, use_linear_in_transformer=True, use_spatial_context=True,
    use_spatial_transformer=True, use_motion_attention=True,
)
_SV4D2_EXTRA = dict(separate_motion_merge_factor=True, use_camera_emb=True)
_SV3D_BASE = dict(
    num_classes="sequential", use_checkpoint=True, in_channels=8, out_channels=4, model_channels=320,
    attention_resolutions=[4, 2, 1], num_res_blocks=2, channel_mult=[1, 2, 4, 4], num_head_channels=64,
    use_linear_in_transformer=True, transformer_depth=1, context_dim=1024,
    spatial_transformer_attn_type="softmax-xformers", extra_ff_mix_layer=True, use_spatial_context=True,
    merge_strategy="learned_with_images", video_kernel_size=[3, 1, 1],
)
OFFICIAL_NETWORK_CONFIGS: dict[str, dict[str, Any]] = {
    "sv4d": {"target": SV4D_TARGET, "params": dict(_SV4D_BASE)},
    "sv4d2": {"target": SV4D_TARGET, "params": {**_SV4D_BASE, **_SV4D2_EXTRA, "use_3d_attention": True}},
    "sv4d2_8views": {"target": SV4D_TARGET, "params": {**_SV4D_BASE, **_SV4D2_EXTRA, "use_3d_attention": False}},
    "sv3d_u": {"target": SV3D_TARGET, "params": {**_SV3D_BASE, "adm_in_channels": 256}},
    "sv3d_p": {"target": SV3D_TARGET, "params": {**_SV3D_BASE, "adm_in_channels": 1280}},
}


def official_config(model_kind: str) -> UNetConfig:
    """Full-size UNet configuration of an official checkpoint kind."""
    get_kind(model_kind)
    return UNetConfig.from_network_config(OFFICIAL_NETWORK_CONFIGS[model_kind])


__all__ = ["UNetConfig", "OFFICIAL_NETWORK_CONFIGS", "official_config", "check_known_keys", "config_identity"]
