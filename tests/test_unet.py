"""UNet parity with the official code (fixtures a, c, e), full-size key/shape/parameter equality, config errors."""
from __future__ import annotations

import json

import pytest
import torch
import yaml
from conftest import PARITY, REFERENCE, require_shared
from safetensors.torch import load_file

from sv4d_models import build_unet
from sv4d_models.attention import set_attention_backend
from sv4d_models.config import OFFICIAL_NETWORK_CONFIGS, UNetConfig

PREFIX = "model.diffusion_model."


def _fixture(name: str):
    d = require_shared(PARITY / name)
    cfg = yaml.safe_load((d / "tiny_config.yaml").read_text())["network_config"]
    weights = {k[len(PREFIX):]: v.float() for k, v in load_file(d / "weights.safetensors").items()}
    return cfg, weights, load_file(d / "inputs.safetensors"), load_file(d / "expected_output.safetensors")


def _call_kwargs(inp: dict) -> dict:
    kw = dict(x=inp["unet.x"], timesteps=inp["unet.timesteps"], context=inp["unet.context"], y=inp["unet.y"],
              num_video_frames=int(inp["unet.num_video_frames"][0]), image_only_indicator=inp["unet.image_only_indicator"])
    if "unet.cond_view" in inp:
        kw.update(cond_view=inp["unet.cond_view"], cond_motion=inp["unet.cond_motion"])
    return kw


@pytest.mark.parametrize("name", ["fixture_a", "fixture_c", "fixture_e"])
@pytest.mark.parametrize("backend", ["sdpa", "naive"])
def test_unet_matches_official_fixture(name, backend):
    cfg, weights, inp, exp = _fixture(name)
    model = build_unet(cfg).eval()
    model.load_state_dict(weights, strict=True)
    set_attention_backend(model, backend)
    with torch.no_grad():
        out = model(**_call_kwargs(inp))
    err = (out - exp["unet_out"]).abs().max().item()
    assert err <= 1e-4, f"{name}: unet_out max-abs error {err}"


def test_network_config_with_and_without_wrapper_is_identical():
    cfg, *_ = _fixture("fixture_c")
    assert UNetConfig.from_network_config(cfg) == UNetConfig.from_network_config(cfg["params"])
    c = UNetConfig.from_network_config(cfg)
    assert c.use_3d_attention and c.use_camera_emb and c.separate_motion_merge_factor


def test_3d_attention_grouping_is_what_the_fixture_needs():
    """Attending views 'properly' is a different network: fixture_c must fail without the released grouping."""
    cfg, weights, inp, exp = _fixture("fixture_c")
    params = dict(cfg["params"], use_3d_attention=False)
    model = build_unet(params).eval()
    model.load_state_dict(weights, strict=True)
    with torch.no_grad():
        err = (model(**_call_kwargs(inp)) - exp["unet_out"]).abs().max().item()
    assert err > 0.1


@pytest.mark.parametrize("kind", ["sv4d", "sv4d2", "sv4d2_8views", "sv3d_u", "sv3d_p"])
def test_full_size_meta_construction_matches_official_keys(kind):
    ref_name = "sv4d2" if kind == "sv4d2_8views" else kind
    ref = json.loads(require_shared(REFERENCE / f"{ref_name}_unet_keys.json").read_text())
    counts = json.loads((REFERENCE / "param_counts.json").read_text())["models"][kind]["counts"]["model"]
    model = build_unet(OFFICIAL_NETWORK_CONFIGS[kind], device="meta")
    ours = {PREFIX + k: list(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: v["shape"] for k, v in ref["keys"].items()}
    assert ours.keys() == theirs.keys()
    assert ours == theirs
    assert sum(p.numel() for p in model.parameters()) == counts["n_param_elements"] == ref["total_parameters"]
    assert len(ours) == counts["n_tensors"]


@pytest.mark.parametrize("key,value,needle", [
    ("use_fancy_attention", True, "'use_fancy_attention'"),
    ("time_mix_legacy", True, "time_mix_legacy=True is not supported"),
    ("num_classes", "timestep", "num_classes='timestep' is not supported"),
    ("use_scale_shift_norm", True, "use_scale_shift_norm=True"),
])
def test_unknown_or_unsupported_config_values_raise(key, value, needle):
    params = dict(OFFICIAL_NETWORK_CONFIGS["sv4d"]["params"], **{key: value})
    with pytest.raises(ValueError) as exc:
        build_unet(params, device="meta")
    assert needle in str(exc.value)


def test_unsupported_target_is_named():
    with pytest.raises(ValueError, match="sgm.modules.diffusionmodules.openaimodel.UNetModel"):
        build_unet({"target": "sgm.modules.diffusionmodules.openaimodel.UNetModel", "params": {}})


def test_operations_injection_builds_with_given_layer_classes():
    made = []

    class Ops:
        class Linear(torch.nn.Linear):
            def __init__(self, *a, **k):
                super().__init__(*a, **k)
                made.append("Linear")
        Conv2d, Conv3d, GroupNorm, LayerNorm = torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.GroupNorm, torch.nn.LayerNorm

    cfg, *_ = _fixture("fixture_a")
    model = build_unet(cfg, operations=Ops)
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert len(made) == n_linear > 0
    assert all(isinstance(m, Ops.Linear) for m in model.modules() if isinstance(m, torch.nn.Linear))


def test_bad_call_shapes_are_explained():
    cfg, weights, inp, _ = _fixture("fixture_a")
    model = build_unet(cfg).eval()
    kw = _call_kwargs(inp)
    with pytest.raises(ValueError, match="must be divisible by 2"):
        model(**dict(kw, x=kw["x"][..., :7, :7]))
    with pytest.raises(ValueError, match="num_video_frames=5"):
        model(**dict(kw, num_video_frames=5))
    with pytest.raises(ValueError, match="cond_view"):
        model(**dict(kw, cond_view=None))
