"""The UNet's inference path (no autograd: chunked, in place, channels-last, oneDNN) against its autograd path.

The autograd path is the reference formulation; `test_unet.py` checks both against the official fixtures. Here:
chunk boundaries that do not divide the work, input immutability, casting layer classes (ComfyUI ops), gradients
(plain, checkpointed, naive attention) and the optional torch.compile path.
"""
from __future__ import annotations

import pytest
import torch
import yaml
from conftest import PARITY, require_shared
from safetensors.torch import load_file

from sv4d_models import build_unet, fast_ops
from sv4d_models.attention import set_attention_backend

PREFIX = "model.diffusion_model."
FIXTURES = ["fixture_a", "fixture_c", "fixture_e"]  # SV4D, SV4D 2.0 (3D attention), SV3D_p


def _fixture(name: str):
    d = require_shared(PARITY / name)
    cfg = yaml.safe_load((d / "tiny_config.yaml").read_text())["network_config"]
    weights = {k[len(PREFIX):]: v.float() for k, v in load_file(d / "weights.safetensors").items()}
    inp = load_file(d / "inputs.safetensors")
    kw = dict(x=inp["unet.x"], timesteps=inp["unet.timesteps"], context=inp["unet.context"], y=inp["unet.y"],
              num_video_frames=int(inp["unet.num_video_frames"][0]), image_only_indicator=inp["unet.image_only_indicator"])
    if "unet.cond_view" in inp:
        kw.update(cond_view=inp["unet.cond_view"], cond_motion=inp["unet.cond_motion"])
    return cfg, weights, kw, load_file(d / "expected_output.safetensors")["unet_out"]


def _model(cfg, weights, operations=None, **overrides):
    params = dict(cfg["params"], **overrides)
    model = build_unet(params, operations=operations).eval()
    model.load_state_dict(weights, strict=True)
    return model


@pytest.mark.parametrize("name", FIXTURES)
@pytest.mark.parametrize("tokens,ff_elements,conv_elements", [(100, 8 * 32 * 7, 3000), (300, 8 * 64 * 5, 20000)])
def test_inference_path_with_ragged_chunks_matches_autograd_path(monkeypatch, name, tokens, ff_elements, conv_elements):
    """Chunk sizes that leave remainders everywhere: same output as the whole-tensor autograd path."""
    cfg, weights, kw, expected = _fixture(name)
    model = _model(cfg, weights)
    reference = model(**kw).detach()
    monkeypatch.setattr(fast_ops, "TOKENS_PER_CHUNK", tokens)
    monkeypatch.setattr(fast_ops, "FF_CHUNK_ELEMENTS", ff_elements)
    monkeypatch.setattr(fast_ops, "CONV_CHUNK_ELEMENTS", conv_elements)
    with torch.inference_mode():
        out = model(**kw)
    assert out.is_contiguous() and out.shape == reference.shape
    assert (out - reference).abs().max().item() <= 2e-5
    assert (out - expected).abs().max().item() <= 1e-4


@pytest.mark.parametrize("name", FIXTURES)
def test_inference_leaves_inputs_and_weights_untouched(name):
    cfg, weights, kw, _ = _fixture(name)
    model = _model(cfg, weights)
    before = {k: v.clone() for k, v in kw.items() if isinstance(v, torch.Tensor)}
    params = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        first = model(**kw)
        second = model(**kw)
    assert torch.equal(first, second)
    assert all(torch.equal(kw[k], v) for k, v in before.items())
    assert all(torch.equal(model.state_dict()[k], v) for k, v in params.items())


def _casting_ops(called: set):
    """ComfyUI-style layer classes: subclasses whose forward must run (they cast or patch weights there)."""

    def recording(base):
        class Recording(base):
            def forward(self, *args, **kwargs):
                called.add(id(self))
                return super().forward(*args, **kwargs)
        return Recording

    class Ops:
        Linear, Conv2d, Conv3d = recording(torch.nn.Linear), recording(torch.nn.Conv2d), recording(torch.nn.Conv3d)
        GroupNorm, LayerNorm = recording(torch.nn.GroupNorm), recording(torch.nn.LayerNorm)
    return Ops


@pytest.mark.parametrize("name", FIXTURES)
def test_casting_operations_run_their_own_forward(name):
    cfg, weights, kw, expected = _fixture(name)
    called: set = set()
    model = _model(cfg, weights, operations=_casting_ops(called))
    with torch.inference_mode():
        out = model(**kw)
    assert (out - expected).abs().max().item() <= 1e-4
    skipped = [n for n, m in model.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.Conv3d,
                                                                        torch.nn.GroupNorm, torch.nn.LayerNorm))
               and id(m) not in called]
    # A one-token cross-attention never needs its queries or keys (softmax over one score is 1); its LayerNorm is
    # unused too. Everything else must have gone through the layer's own forward.
    assert all(n.endswith(("attn2.to_q", "attn2.to_k", "norm2")) for n in skipped), skipped


@pytest.mark.parametrize("name", FIXTURES)
def test_callable_backend_sees_every_attention_call_in_inference(name):
    """A host kernel (ComfyUI's optimized_attention signature) is called as often without autograd as with it."""
    cfg, weights, kw, expected = _fixture(name)
    calls = []

    def host(q, k, v, heads):
        calls.append(q.shape)
        b, n, hd = q.shape
        q, k, v = (t.view(b, -1, heads, hd // heads).transpose(1, 2) for t in (q, k, v))
        return torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, hd)

    model = set_attention_backend(_model(cfg, weights), host)
    with torch.inference_mode():
        out = model(**kw)
    inference_calls, calls[:] = len(calls), []
    model(**kw)
    assert inference_calls == len(calls) > 0
    assert (out - expected).abs().max().item() <= 1e-4


@pytest.mark.parametrize("name", FIXTURES)
def test_inference_without_onednn_and_under_bf16_autocast(monkeypatch, name):
    """The fallbacks: no oneDNN fused linear (plain F.linear), and CPU bfloat16 autocast (as the benchmark runs)."""
    cfg, weights, kw, expected = _fixture(name)
    model = _model(cfg, weights)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reference_bf16 = model(**kw).detach().float()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        out_bf16 = model(**kw).float()
    scale = (reference_bf16 - expected).abs().max().item()  # bfloat16 rounding of the reference path itself
    assert torch.isfinite(out_bf16).all() and (out_bf16 - expected).abs().max().item() <= 2 * scale
    monkeypatch.setattr(fast_ops, "_linear_pointwise_works", lambda: False)
    with torch.inference_mode():
        out = model(**kw)
    assert (out - expected).abs().max().item() <= 1e-4


def _gradients(model, kw, weight):
    model.zero_grad(set_to_none=True)
    out = model(**kw)
    (out * weight).sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", FIXTURES)
def test_gradients_agree_plain_checkpointed_and_naive(name):
    """Training is untouched by the inference path: the autograd forward and backward of the default model equal
    those of the trainer's gradient-checkpointed model (blocks re-run in backward) and of the naive reference."""
    from train.model import enable_gradient_checkpointing

    cfg, weights, kw, expected = _fixture(name)
    model = _model(cfg, weights).train()
    weight = torch.randn(expected.shape, generator=torch.Generator().manual_seed(0))
    out, grads = _gradients(model, kw, weight)
    assert (out - expected).abs().max().item() <= 1e-4
    assert len(grads) > 0.9 * sum(1 for _ in model.parameters())
    scale = max(g.abs().max().item() for g in grads.values())  # float noise of near-zero gradients is relative to it
    checkpointed = enable_gradient_checkpointing(_model(cfg, weights).train())
    naive = set_attention_backend(_model(cfg, weights).train(), "naive")
    for other in (checkpointed, naive):
        out2, grads2 = _gradients(other, kw, weight)
        assert (out2 - out).abs().max().item() <= 2e-5
        assert grads.keys() <= grads2.keys()
        for n, g in grads2.items():  # the naive softmax over one key also reaches attn2's q/k (with gradient 0)
            torch.testing.assert_close(g, grads.get(n, torch.zeros_like(g)), rtol=1e-4, atol=1e-5 * scale, msg=n)


@pytest.mark.slow
def test_compiled_unet_matches_fixture():
    from sv4d_models.unet import compile_unet

    cfg, weights, kw, expected = _fixture("fixture_a")
    model = compile_unet(_model(cfg, weights))
    with torch.inference_mode():
        out = model(**kw)
    assert (out - expected).abs().max().item() <= 1e-4
