"""Denoiser / CFG batching / guider / Euler step against the official fixtures a (SV4D), c (SV4D2), e (SV3D_p)."""
from __future__ import annotations

import json

import pytest
import torch

from sv4d_models.sampling import (CFGDenoiser, Denoiser, LinearPredictionGuider, SpatiotemporalPredictionGuider,
                                  TrianglePredictionGuider, default_guider, euler_edm_step, get_sigmas_edm,
                                  sample_euler_edm, stack_cfg_cond)
from sv4d_models.sampling.denoiser import VScalingWithEDMcNoise

from conftest import PARITY, require_shared

FIXTURES = {  # name -> (guider, image_only_indicator value, has reference views)
    "fixture_a": (lambda: SpatiotemporalPredictionGuider(2.0, 6, num_views=2, min_scale=1.0), 1.0, True),
    "fixture_c": (lambda: LinearPredictionGuider(2.0, 12), 1.0, True),
    "fixture_e": (lambda: TrianglePredictionGuider(2.5, 5), 0.0, False),
}


def _load(name: str):
    path = require_shared(PARITY / name)
    from safetensors.torch import load_file
    return load_file(str(path / "inputs.safetensors")), load_file(str(path / "expected_output.safetensors"))


def _dicts(d: dict) -> tuple[dict, dict]:
    keys = {k.split(".", 1)[1] for k in d if k.startswith("c.")}
    return {k: d[f"c.{k}"] for k in keys}, {k: d[f"uc.{k}"] for k in keys}


class StubUNet:
    """Returns the fixture's ``unet_out`` after checking it got exactly the recorded UNet arguments."""

    def __init__(self, inputs: dict, out: torch.Tensor, has_ref: bool):
        self.inputs, self.out, self.has_ref, self.calls = inputs, out, has_ref, 0

    def __call__(self, x, timesteps, context, y, cond_view=None, cond_motion=None, num_video_frames=None,
                 image_only_indicator=None):
        d = self.inputs
        torch.testing.assert_close(x, d["unet.x"], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(timesteps, d["unet.timesteps"], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(y, d["unet.y"], rtol=0, atol=0)
        torch.testing.assert_close(context, d["unet.context"], rtol=0, atol=0)
        if self.has_ref:
            torch.testing.assert_close(cond_view, d["unet.cond_view"], rtol=0, atol=0)
            torch.testing.assert_close(cond_motion, d["unet.cond_motion"], rtol=0, atol=0)
        else:
            assert cond_view is None and cond_motion is None
        assert num_video_frames == int(d["unet.num_video_frames"][0])
        torch.testing.assert_close(image_only_indicator, d["unet.image_only_indicator"], rtol=0, atol=0)
        self.calls += 1
        return self.out.clone()


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_fixture_denoiser_guider_euler(name):
    d, e = _load(name)
    make_guider, indicator, has_ref = FIXTURES[name]
    n = d["sampler.x"].shape[0]
    stub = StubUNet(d, e["unet_out"], has_ref)
    den = Denoiser(stub, num_video_frames=n, image_only_indicator=indicator)
    c, uc = _dicts(d)
    x, sigma = d["sampler.x"], d["sampler.sigma"]
    pair = den(torch.cat([x, x]), torch.cat([sigma, sigma]), stack_cfg_cond(c, uc))
    torch.testing.assert_close(pair, e["denoised_pair"], rtol=0, atol=1e-4)
    guider = make_guider()
    torch.testing.assert_close(guider.table(), d["sampler.guider_scale"], rtol=0, atol=1e-6)
    model = CFGDenoiser(den, c, uc, guider)
    guided = model(x, sigma)
    torch.testing.assert_close(guided, e["guided_denoised"], rtol=0, atol=1e-4)
    x_next, denoised = euler_edm_step(model, x, sigma[0], d["sampler.sigma_next"][0])
    torch.testing.assert_close(x_next, e["euler_x_next"], rtol=0, atol=1e-4)
    torch.testing.assert_close(denoised, e["guided_denoised"], rtol=0, atol=1e-4)
    assert stub.calls == 3


def test_stub_rejects_wrong_inputs():
    """The stub really checks its inputs: a cond dict in c-first order fails."""
    d, e = _load("fixture_a")
    stub = StubUNet(d, e["unet_out"], True)
    den = Denoiser(stub, num_video_frames=6, image_only_indicator=1.0)
    c, uc = _dicts(d)
    x, sigma = d["sampler.x"], d["sampler.sigma"]
    with pytest.raises(AssertionError):
        den(torch.cat([x, x]), torch.cat([sigma, sigma]), stack_cfg_cond(uc, c))


def test_scalings_values():
    s = torch.tensor([0.5, 2.0])
    c_skip, c_out, c_in, c_noise = VScalingWithEDMcNoise()(s)
    torch.testing.assert_close(c_skip, 1 / (s**2 + 1))
    torch.testing.assert_close(c_out, -s / (s**2 + 1).sqrt())
    torch.testing.assert_close(c_in, 1 / (s**2 + 1).sqrt())
    torch.testing.assert_close(c_noise, 0.25 * s.log())


@pytest.fixture(scope="module")
def tables():
    return json.loads(require_shared(PARITY / "sampler_tables.json").read_text())


@pytest.mark.parametrize("steps", [20, 50])
def test_sigma_tables(tables, steps):
    expected = tables["edm_sigmas (sigma_min 0.002, rho 7, trailing 0 appended)"][f"sigma_max 700.0, {steps} steps"]
    sig = get_sigmas_edm(steps)
    assert sig.dtype == torch.float32 and sig.shape == (steps + 1,) and sig[-1] == 0
    torch.testing.assert_close(sig, torch.tensor(expected, dtype=torch.float32), rtol=1e-6, atol=0)


def test_guider_tables(tables):
    t = tables["guider_scales (row = frame in model order, col = view)"]
    found = 0
    for key, table in t.items():
        kind = "sv3d_u" if key.startswith("sv3d") else key.split(":")[0]
        expected = torch.tensor(table, dtype=torch.float32).flatten()
        assert torch.equal(default_guider(kind).table(), expected), key
        found += 1
    assert found == 4


def test_guider_scale_follows_row_position():
    g = default_guider("sv4d")
    pair = torch.cat([torch.zeros(40, 1), torch.ones(40, 1)])
    out = g(pair, None)[:, 0]
    assert torch.equal(out, g.table())  # D_u = 0, D_c = 1 -> the scale itself, row by row


def test_sample_euler_edm_callback_and_interrupt():
    sigmas = get_sigmas_edm(4)
    seen = []

    def model(x, sigma):
        return 0.5 * x

    out = sample_euler_edm(model, torch.ones(3, 2), sigmas, callback=lambda info: seen.append(info["i"]))
    assert seen == [0, 1, 2, 3]
    assert torch.allclose(out, torch.full((3, 2), float(torch.prod(0.5 + 0.5 * sigmas[1:-1] / sigmas[:-2]) * 0.5)))

    class Stop(Exception):
        pass

    def stop(info):
        if info["i"] == 1:
            raise Stop

    with pytest.raises(Stop):
        sample_euler_edm(model, torch.ones(3, 2), sigmas, callback=stop)


def test_churn_uses_generator():
    sigmas = get_sigmas_edm(3)
    run = lambda seed: sample_euler_edm(lambda x, s: 0.5 * x, torch.ones(2, 2), sigmas,
                                        generator=torch.Generator().manual_seed(seed), s_churn=1.0)
    assert torch.equal(run(1), run(1)) and not torch.equal(run(1), run(2))


def test_half_precision_latents_do_not_overflow():
    def unet(x, timesteps, context, y, num_video_frames=None, image_only_indicator=None):
        assert x.dtype == torch.float32
        return torch.zeros(x.shape[0], 4, 2, 2)

    den = Denoiser(unet, num_video_frames=3)
    x = torch.ones(3, 4, 2, 2, dtype=torch.float16)
    out = den(x, torch.full((3,), 700.0), {"concat": torch.zeros(3, 4, 2, 2), "vector": torch.zeros(3, 8)})
    assert torch.isfinite(out).all() and out.dtype == torch.float32
    torch.testing.assert_close(out, torch.full_like(out, 1 / (700.0**2 + 1)))
