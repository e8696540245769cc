"""The two library hooks the node pack uses, without ComfyUI: a callable attention backend (ComfyUI's
``optimized_attention`` signature) and ``clip_pixels`` (the official CLIP preprocessing as a function)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sv4d_models.attention import set_attention_backend
from sv4d_models.encoders import clip_pixels, resize
from sv4d_models.tiny_checkpoint import tiny_network_config
from sv4d_models.unet import build_unet


def comfy_style_sdpa(q, k, v, heads):
    """What ComfyUI's attention_pytorch computes: [b, L, h*d] in, SDPA over heads, [b, L, h*d] out."""
    b, _, inner = q.shape
    q, k, v = (t.view(b, -1, heads, inner // heads).transpose(1, 2) for t in (q, k, v))
    return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, -1, inner)


@pytest.mark.parametrize("kind", ["sv4d", "sv4d2", "sv3d_p"])
def test_callable_backend_matches_the_builtin_attention(kind):
    torch.manual_seed(0)
    unet = build_unet(tiny_network_config(kind))
    for p in unet.parameters():
        torch.nn.init.normal_(p, std=0.05)
    n, ctx = (40, 5) if kind == "sv4d" else (48, 12) if kind == "sv4d2" else (21, 21)
    kw = dict(context=torch.randn(1 if kind != "sv3d_p" else n, ctx if kind != "sv3d_p" else 1, 64),
              y=torch.randn(n, unet.config.adm_in_channels), num_video_frames=n,
              image_only_indicator=torch.ones(1, n))
    if kind != "sv3d_p":
        kw["cond_view"] = torch.randn(n // ctx, 4, 2, 2)
    x, t = torch.randn(n, 8, 4, 4), torch.randn(n)
    with torch.no_grad():
        reference = unet(x, t, **kw)
        calls = []
        set_attention_backend(unet, lambda q, k, v, heads: calls.append(heads) or comfy_style_sdpa(q, k, v, heads))
        out = unet(x, t, **kw)
    assert calls and torch.allclose(out, reference, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="or a callable"):
        set_attention_backend(unet, "flash")


def test_clip_pixels_is_the_official_preprocessing():
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    expected = (resize(x, (224, 224), interpolation="bicubic", align_corners=True, antialias=True) + 1) / 2
    mean = torch.tensor((0.48145466, 0.4578275, 0.40821073)).view(1, 3, 1, 1)
    std = torch.tensor((0.26862954, 0.26130258, 0.27577711)).view(1, 3, 1, 1)
    assert torch.equal(clip_pixels(x), (expected - mean) / std)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        clip_pixels(torch.rand(3, 64, 64))
