"""The UNet's eager inference path: the reference operations, in place, in cache-sized chunks, oneDNN fused linears.

Used only where ``eager_inference()`` holds (no autograd graph recorded: ``torch.no_grad`` / ``torch.inference_mode``;
not inside a ``torch.compile`` trace). Every helper here overwrites only tensors its caller created for the purpose,
and evaluates the same element-wise operations as the layers' reference ``forward`` in the same order; chunking is
along axes the operations are independent over (samples for GroupNorm / convolutions, tokens for LayerNorm /
feed-forward, sequences for attention). What differs is GEMM blocking (oneDNN instead of the BLAS ``addmm`` path),
i.e. float32 rounding well inside the parity tolerance.

The oneDNN path (``torch.ops.mkldnn._linear_pointwise``) is taken only for float32 on CPU, outside autocast, for
plain ``nn.Linear`` layers (casting layer classes such as ComfyUI's ops must run their own ``forward``), and only
after a one-off probe has checked that the op exists and computes what ``F.linear`` does.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

TOKENS_PER_CHUNK = 8192  # attention sub-blocks: tokens per chunk (an x chunk [8192, c] and its temporaries)
FF_CHUNK_ELEMENTS = 1 << 20  # feed-forward: GEGLU projection elements per row chunk (4 MB fp32)
CONV_CHUNK_ELEMENTS = 1 << 19  # ResBlock / Upsample: normalised-input elements per GroupNorm-SiLU-conv chunk (2 MB)


def eager_inference() -> bool:
    """Whether the eager inference path applies: no autograd graph is being recorded and no ``torch.compile`` trace
    is running (a compiled model traces the whole-tensor reference formulation; inductor plans its own buffers)."""
    return not torch.is_grad_enabled() and not torch.compiler.is_compiling()


# ---- samples: GroupNorm / SiLU / convolutions -------------------------------------------------------------------
def norm_silu_(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``silu(norm(x))`` with the SiLU applied in place on the (fresh) normalised tensor."""
    return F.silu(norm(x), inplace=True)


def empty_batch_like(part: torch.Tensor, n: int) -> torch.Tensor:
    """Uninitialised ``[n, *part.shape[1:]]`` with ``part``'s dtype, device and (channels-last or not) layout."""
    fmt = {4: torch.channels_last, 5: torch.channels_last_3d}.get(part.dim())
    if fmt is None or part.is_contiguous() or not part.is_contiguous(memory_format=fmt):
        fmt = torch.contiguous_format
    return torch.empty((n, *part.shape[1:]), dtype=part.dtype, device=part.device, memory_format=fmt)


def map_samples(fn, x: torch.Tensor | list[torch.Tensor], budget: int | None = None):
    """``fn(x)`` for a per-sample ``fn``, evaluated a few samples at a time and assembled.

    Args:
        fn: maps ``[k, ...]`` to a tensor or a tuple of tensors with ``k`` rows (GroupNorm, SiLU, convolutions).
        x: the input, or channel-concatenation parts ``[a, b]`` (standing for ``cat([a, b], 1)``, which is only
            ever built a few samples at a time).
        budget: input elements per chunk (default ``CONV_CHUNK_ELEMENTS``).
    """
    parts = x if isinstance(x, list) else [x]
    n = parts[0].shape[0]
    budget = CONV_CHUNK_ELEMENTS if budget is None else budget
    step = max(1, budget // max(1, sum(p[0].numel() for p in parts)))
    outs, many = None, False
    for i in range(0, n, step):
        xi = parts[0][i:i + step] if len(parts) == 1 else torch.cat([p[i:i + step] for p in parts], dim=1)
        res = fn(xi)
        if step >= n:
            return res
        many = isinstance(res, tuple)
        outs = [empty_batch_like(r, n) for r in (res if many else (res,))] if outs is None else outs
        for out, r in zip(outs, res if many else (res,)):
            out[i:i + step] = r
    return tuple(outs) if many else outs[0]


def blend_(x_spatial: torch.Tensor, x_temporal: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``AlphaBlender.forward`` written into ``x_spatial`` (may be a strided view); ``x_temporal`` is scaled in place.

    Same rounding as the reference ``alpha * s + (1 - alpha) * t``: ``fl(fl(a * s) + fl((1 - a) * t))``. Both inputs
    must be tensors the caller owns. Mixed dtypes (autocast) take the out-of-place reference expression. ``alpha``
    is taken to the activations' device (a model manager may leave the one-element merge factor on the CPU).
    """
    alpha = alpha.to(device=x_spatial.device, dtype=x_spatial.dtype)
    if x_temporal.dtype != x_spatial.dtype:
        return x_spatial.copy_(alpha * x_spatial + (1.0 - alpha) * x_temporal)
    x_temporal.mul_(1.0 - alpha)
    return x_spatial.mul_(alpha).add_(x_temporal)


# ---- tokens: oneDNN fused linears, feed-forward -----------------------------------------------------------------
@functools.cache
def _linear_pointwise_works() -> bool:
    """One-off probe: oneDNN's fused linear exists and matches ``F.linear`` (plain, +gelu, *other, +other)."""
    try:
        if not torch.backends.mkldnn.is_available():
            return False
        lin = torch.ops.mkldnn._linear_pointwise
        with torch.no_grad():
            x = torch.linspace(-2, 2, 24).view(3, 8)
            w, b = torch.linspace(-1, 1, 48).view(6, 8).cos(), torch.linspace(-0.5, 0.5, 6)
            ref = F.linear(x, w, b)
            got = (lin(x, w, b, "none", [], ""), lin(x, w, b, "gelu", [], "none"),
                   lin.binary(x, ref, w, b, "mul"), lin.binary(x, ref, w, b, "add"))
            want = (ref, F.gelu(ref), ref * ref, ref + ref)
        return all(torch.allclose(g, e, rtol=1e-5, atol=1e-5) for g, e in zip(got, want))
    except (AttributeError, RuntimeError, TypeError):
        return False


def _autocast_on() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4 signature
        return torch.is_autocast_cpu_enabled()


def _onednn(module: nn.Module | None, x: torch.Tensor, weight: torch.Tensor | None = None) -> bool:
    """Whether ``module(x)`` (or ``F.linear(x, weight)``) may run as oneDNN's fused linear: a plain ``nn.Linear``,
    float32 on CPU, outside autocast, the op present and probed."""
    weight = module.weight if weight is None else weight
    return ((module is None or type(module) is nn.Linear) and x.device.type == "cpu" and x.dtype == torch.float32
            and weight.dtype == torch.float32 and not _autocast_on() and _linear_pointwise_works())


def dense(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for 2-D ``x``, through oneDNN where ``_onednn`` allows (no bias pre-fill pass)."""
    if _onednn(None, x, weight):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


def linear_add(module: nn.Module, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``module(x) + other`` for 2-D ``x``; one oneDNN GEMM with the add in its epilogue where ``_onednn`` allows."""
    if _onednn(module, x):
        return torch.ops.mkldnn._linear_pointwise.binary(x, other, module.weight, module.bias, "add")
    return module(x).add_(other)


def feed_forward_add(ff: nn.Module, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``ff(x) + other`` for a GEGLU ``FeedForward`` and 2-D ``x`` ``[rows, c]``.

    With plain ``nn.Linear`` layers: three oneDNN GEMMs with fused epilogues, ``gate = gelu(x Wg + bg)``,
    ``h = (x Wv + bv) * gate`` and ``h W2 + b2 + other`` (GEGLU's operations, no separate element-wise passes).
    """
    proj, out = ff.net[0].proj, ff.net[2]
    if not (_onednn(proj, x) and _onednn(out, x)):
        return ff(x).add_(other)
    inner, w, b = proj.out_features // 2, proj.weight, proj.bias
    lin = torch.ops.mkldnn._linear_pointwise
    gate = lin(x, w[inner:], None if b is None else b[inner:], "gelu", [], "none")
    h = lin.binary(x, gate, w[:inner], None if b is None else b[:inner], "mul")
    return lin.binary(h, other, out.weight, out.bias, "add")


def feed_forward_(ff: nn.Module, norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x += ff(norm(x))`` in place for a contiguous ``x`` ``[..., c]``, a cache-sized run of tokens at a time
    (LayerNorm and the feed-forward are token-wise, so the 8c-wide GEGLU intermediate never exists in full)."""
    flat = x.view(-1, x.shape[-1])
    rows = max(1, FF_CHUNK_ELEMENTS // (8 * x.shape[-1]))
    for start in range(0, flat.shape[0], rows):
        part = flat[start:start + rows]
        part.copy_(feed_forward_add(ff, norm(part), part))
    return x


# ---- sequences: transformer blocks ------------------------------------------------------------------------------
def attend_block_(block: nn.Module, x: torch.Tensor, context: torch.Tensor | None, term: torch.Tensor | None,
                  qkv: torch.Tensor | None) -> torch.Tensor:
    """attn1, attn2 and ff residuals of a transformer block on contiguous sequences ``x`` ``[..., L, c]``, in place.

    ``term``: attn2's output for a one-token context, precomputed and broadcastable to ``x`` (``[..., 1, c]``); else
    attn2 runs on ``context``. ``qkv``: attn1's fused q/k/v weight (``Attention.fused_qkv``) or None.
    """
    seqs = x.view(-1, *x.shape[-2:])  # [B, L, c]
    block.attn1.self_attend_add_(block.norm1(seqs), qkv, seqs)
    x.add_(term if term is not None else block.attn2(block.norm2(seqs), context).view_as(x))
    return feed_forward_(block.ff, block.norm3, x)


def mix_pass_(xg: torch.Tensor, block: nn.Module, emb: torch.Tensor, alpha: torch.Tensor, term_fn) -> None:
    """One time-mix sub-block along axis 1 of ``xg`` ``[G, A, R, c]``, in place and in chunks.

    For every (g, r) the sequence ``s = xg[g, :, r]`` becomes ``alpha * s + (1 - alpha) * block(s + emb[g])``
    (emb ``[G, A, c]``); ``term_fn(g0, g1, r0, r1)`` gives attn2's one-token-context output, broadcastable to
    ``[kg, kr, 1, c]``. Sequences are independent, so any split over (g, r) gives the same values.
    """
    g_all, a, r_all, c = xg.shape
    qkv = block.attn1.fused_qkv()
    per_g = max(1, TOKENS_PER_CHUNK // (a * r_all))  # whole groups per chunk when they are small
    per_r = r_all if per_g > 1 else max(1, TOKENS_PER_CHUNK // a)
    for g0 in range(0, g_all, per_g):
        g1 = min(g0 + per_g, g_all)
        for r0 in range(0, r_all, per_r):
            r1 = min(r0 + per_r, r_all)
            src = xg[g0:g1, :, r0:r1]  # [kg, A, kr, c] view into the buffer
            y = torch.empty((g1 - g0, r1 - r0, a, c), dtype=torch.result_type(src, emb), device=src.device)
            torch.add(src.transpose(1, 2), emb[g0:g1, None], out=y)  # sequences contiguous: [kg, kr, A, c]
            block.attend_(y, None, term_fn(g0, g1, r0, r1), qkv)
            blend_(src, y.transpose(1, 2), alpha)
