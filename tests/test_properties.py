"""Property-based tests (hypothesis): the planner for every length 1..200 and kind, the config parsers, the frame
converters."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sv4d_models.kinds import FOUR_D_KINDS
from sv4d_models.pipeline import PipelineConfig
from sv4d_models.pipeline.inputs import to_model_frames
from sv4d_models.sampling import REFERENCE, make_plan


@pytest.mark.parametrize("kind", FOUR_D_KINDS)
def test_planner_every_length_one_final_writer_and_reads_after_writes(kind):
    for n in range(1, 201):
        p = make_plan(kind, n, num_steps=2)
        cells = {(t, v) for t in range(n) for v in range(1, p.n_views + 1)}
        final = p.final_writer()
        assert set(final) == cells, (kind, n)  # every generated cell has exactly one final writer
        written = set(p.reference_row())
        for q in p.passes:  # every reference cell is written before a pass reads it
            for d in q.directions:
                if d.reference_frame is not None:
                    assert {(d.reference_frame, v) for v in q.views} <= written, (kind, n, q.index)
                assert set(d.frames) <= set(range(n)) and set(d.cond_frames) <= set(range(n))
            assert set(q.writes) <= cells
            written |= set(q.writes)
        sources = p.reference_sources()  # the same invariant through the public query
        assert all(src == REFERENCE or src < q for q, refs in sources.items() for src in refs.values())


flat_keys = st.fixed_dictionaries({}, optional={
    "seed": st.integers(0, 2**62), "num_steps": st.integers(1, 100), "mode": st.sampled_from(["auto", "official", "extended"]),
    "image_size": st.sampled_from([64, 128, 576]), "cfg": st.floats(0.5, 5.0), "encoding_t": st.integers(1, 16),
    "offload": st.sampled_from(["workdir", "cpu"]), "elevations_deg": st.one_of(st.none(), st.floats(-30, 60)),
    "max_frames": st.one_of(st.none(), st.integers(1, 100)), "dtype": st.sampled_from(["auto", "float32", "bfloat16"]),
})


@settings(max_examples=60, deadline=None)
@given(flat_keys)
def test_pipeline_config_round_trips_and_routes_flat_keys(d):
    cfg = PipelineConfig.from_dict(d)
    assert PipelineConfig.from_dict(cfg.to_dict()) == cfg
    flat = {**vars(cfg.sampling), **vars(cfg.framing), **vars(cfg.placement)}
    assert all(flat[k] == v for k, v in d.items())


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=12).filter(lambda k: k.isidentifier()))
def test_pipeline_config_refuses_unknown_keys_by_name(key):
    known = {f for g in (PipelineConfig().sampling, PipelineConfig().framing, PipelineConfig().placement)
             for f in vars(g)} | {"sampling", "framing", "placement"}
    if key in known:
        return
    with pytest.raises(ValueError, match=f"unknown PipelineConfig key '{key}'"):
        PipelineConfig.from_dict({key: 1})


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(4, 24), st.booleans(), st.integers(0, 2**31 - 1))
def test_frames_convert_to_model_input_in_range(n, size, uint8, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, size, size, 3, generator=g)
    x = (x * 255).round().to(torch.uint8) if uint8 else x
    out = to_model_frames(x)
    assert out.shape == (n, 3, size, size) and out.dtype == torch.float32
    assert float(out.min()) >= -1.0 and float(out.max()) <= 1.0
    ref = x.float() / 255.0 if uint8 else x
    torch.testing.assert_close(out, ref.permute(0, 3, 1, 2) * 2 - 1, rtol=0, atol=1e-6)
    assert torch.equal(to_model_frames(out), out)  # [F, 3, S, S] in [-1, 1] passes through


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["run.max_steps", "optim.lr", "run.seed", "max_steps", "seed"]),
                          st.integers(1, 1000)), min_size=1, max_size=4))
def test_train_overrides_parse_and_land_in_their_group(pairs):
    from train.config import TrainConfig

    pairs = [(k, v / 1000 if k == "optim.lr" else v) for k, v in pairs]  # learning rates live in (0, 1]
    cfg = TrainConfig().with_overrides([f"{k}={v}" for k, v in pairs])
    last = dict(pairs)
    for key, value in last.items():
        group, name = key.split(".") if "." in key else ({"max_steps": "run", "seed": "run"}[key], key)
        assert getattr(getattr(cfg, group), name) == value or \
            any(k != key and k.endswith(name) for k in last)


# ---- every settings class, arbitrary numbers (NaN and infinities included) -------------------------------------------
def _settings_classes() -> dict:
    """name -> (build(field, value), the dataclass whose numeric fields are fed)."""
    from nodes.runs import SamplingWidgets
    from sv4d_models.export.mesh import MeshConfig
    from sv4d_models.job import JobSettings
    from sv4d_models.nerf.fit_config import (DeformationConfig, FieldConfig, HashGridConfig, LossConfig,
                                             NeRFFitConfig, OccupancyConfig, tiny_preset)
    from sv4d_models.nerf.guard import GuardConfig
    from sv4d_models.pipeline.config import FramingConfig, PlacementConfig, SamplingConfig
    from sv4d_models.reconstruction import ExportSettings
    from train.config import DataConfig, DiffusionConfig, OptimConfig, RunConfig

    def direct(cls):
        return lambda field, value: cls(**{field: value}), cls

    out = {cls.__name__: direct(cls) for cls in (MeshConfig, ExportSettings, HashGridConfig, DeformationConfig,
                                                  FieldConfig, LossConfig, OccupancyConfig, GuardConfig, DataConfig,
                                                  OptimConfig, DiffusionConfig, RunConfig, SamplingWidgets)}
    for group in (SamplingConfig, FramingConfig, PlacementConfig):  # through the flat keys users pass
        out[f"PipelineConfig.{group.__name__}"] = (lambda field, value: PipelineConfig.from_dict({field: value}), group)
    out["JobSettings"] = (lambda field, value: JobSettings(video="v.mp4", out="o", **{field: value}), JobSettings)
    out["NeRFFitConfig"] = (lambda field, value: tiny_preset(**{field: value}), NeRFFitConfig)
    return out


SETTINGS = _settings_classes()
NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**70, 2**70), st.booleans(),
                    st.sampled_from([0, -1, 10**12, 1e30, -1e30, float("nan"), float("inf"), -float("inf")]))


def _numeric_fields(cls) -> list[str]:
    import dataclasses

    return [f.name for f in dataclasses.fields(cls) if any(t in str(f.type) for t in ("int", "float"))
            and "Tensor" not in str(f.type) and "tuple[int" not in str(f.type)]


def _value_of(obj, field: str):
    for holder in (obj, *(getattr(obj, g, None) for g in ("sampling", "framing", "placement"))):
        if holder is not None and hasattr(holder, field):
            return getattr(holder, field)
    raise AssertionError(f"{field} not found on {type(obj).__name__}")


@pytest.mark.parametrize("name", sorted(SETTINGS))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_every_settings_class_takes_finite_numbers_or_names_the_field(name, data):
    """Accepted: the stored value is a finite number (an int for int fields, never a bool). Refused: ValueError or
    TypeError whose message names the field. Nothing else (no OverflowError, no IndexError, no NaN stored)."""
    import math

    build, cls = SETTINGS[name]
    field = data.draw(st.sampled_from(_numeric_fields(cls)), label="field")
    value = data.draw(NUMBERS, label="value")
    try:
        obj = build(field, value)
    except (ValueError, TypeError) as exc:
        assert field in str(exc), str(exc)
        return
    got = _value_of(obj, field)
    items = got if isinstance(got, tuple) else (got,)
    for item in items:
        if item is None:
            continue
        assert not isinstance(item, bool) and math.isfinite(item), (field, value, got)
        if "int" in str(cls.__dataclass_fields__[field].type) and "float" not in str(cls.__dataclass_fields__[field].type):
            assert isinstance(item, int), (field, value, got)


def test_the_settings_table_covers_every_settings_class():
    assert len(SETTINGS) == 18 and all(_numeric_fields(cls) for _, cls in SETTINGS.values())
