"""Spatial, view ("camera"), frame ("motion") and orbit attention of the SV3D / SV4D UNets.

Tensor layouts and reshapes reproduce the released Stability code literally (spec sections 2.5 and 2.9),
including SV4D 2.0's ``use_3d_attention`` grouping, which attends over runs of V consecutive entries of the
flattened (batch, view, pixel) index rather than over views. Attention runs through
``torch.nn.functional.scaled_dot_product_attention``; ``backend="naive"`` computes softmax(QK^T)V explicitly
(the reference formulation, used by the benchmark). A callable backend ``fn(q, k, v, heads) -> out`` (q, k, v and
out ``[b, L, heads * dim_head]``, the signature of ComfyUI's ``optimized_attention``) lets a host application
choose the kernel.

Inference (no autograd graph recorded: ``torch.no_grad`` / ``torch.inference_mode``) takes a second path through the
same operations (``fast_ops``): residual adds overwrite tensors the layer itself created, and the SV4D transformer
runs its spatial, view and frame sub-blocks over cache-sized chunks of one ``[n, hw, c]`` buffer
(``fast_ops.TOKENS_PER_CHUNK``), so no full-size layout copy or feed-forward intermediate is ever allocated. The
operations (and their order per element) are the reference ones; only GEMM blocking and the short-sequence
attention kernel differ (float32 rounding).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import fast_ops
from .fast_ops import attend_block_, blend_, dense, eager_inference, feed_forward_, linear_add, mix_pass_
from .layers import AlphaBlender, FeedForward, IndexedSequential, mlp_embed, timestep_embedding

ATTENTION_BACKENDS = ("sdpa", "naive")
SHORT_SEQUENCE = 32  # up to this many keys, softmax(QK^T)V by batched matmul: SDPA's CPU kernel costs ~10 us/sequence


class Attention(nn.Module):
    """Multi-head (cross-)attention: ``to_q/to_k/to_v`` without bias, ``to_out.0`` with bias."""

    def __init__(self, query_dim: int, heads: int, dim_head: int, context_dim: int | None = None, ops=nn):
        super().__init__()
        inner = heads * dim_head
        context_dim = context_dim or query_dim
        self.heads, self.dim_head, self.backend = heads, dim_head, "sdpa"
        self.to_q = ops.Linear(query_dim, inner, bias=False)
        self.to_k = ops.Linear(context_dim, inner, bias=False)
        self.to_v = ops.Linear(context_dim, inner, bias=False)
        self.to_out = IndexedSequential({0: ops.Linear(inner, query_dim), 1: nn.Dropout(0.0)})

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        b, n, _ = x.shape
        if context.shape[1] == 1 and self.backend != "naive":
            # One key: softmax over a single score is exactly 1, so the output is to_out(to_v(ctx)) for every query.
            return self.context_term(context).expand(b, n, -1)
        if callable(self.backend):  # host kernel, e.g. ComfyUI's optimized_attention: [b, L, h*d] in and out
            return self.to_out(self.backend(*self._project(x, context), self.heads))
        return self._attend(*self._project(x, context), b, n)

    def self_attend_add_(self, x: torch.Tensor, qkv_weight: torch.Tensor | None, residual: torch.Tensor) -> None:
        """``residual += self(x)`` for ``x`` ``[B, L, c]``, with a q/k/v weight from ``fused_qkv()`` hoisted by the
        caller (None: three projections); the output projection carries the add (no-grad use only)."""
        if qkv_weight is None or self.backend != "sdpa":  # casting layers, naive or host (callable) backends
            residual.add_(self.forward(x))
            return
        b, n, _ = x.shape
        heads = self._heads(*dense(x.view(b * n, -1), qkv_weight).chunk(3, dim=-1), b, n)  # [b, n, h*d]
        res2d = residual.view(b * n, -1)
        res2d.copy_(linear_add(self.to_out[0], heads.view(b * n, -1), res2d))  # to_out.1 is Dropout(0.0)

    def context_term(self, context: torch.Tensor) -> torch.Tensor:
        """Output for a one-token context ``[B, 1, d]`` -> ``[B, 1, c]`` (the same for every query)."""
        return self.to_out(self.to_v(context))

    def fused_qkv(self) -> torch.Tensor | None:
        """``cat(W_q, W_k, W_v)`` for one self-attention GEMM; None for the reference backend and for casting layers
        (ComfyUI ops cast or patch weights in their forward, so only plain ``nn.Linear`` weights may be read)."""
        if self.backend == "naive" or any(type(m) is not nn.Linear for m in (self.to_q, self.to_k, self.to_v)):
            return None
        return torch.cat([self.to_q.weight, self.to_k.weight, self.to_v.weight], dim=0)

    def _project(self, x: torch.Tensor, context: torch.Tensor):
        weight = self.fused_qkv() if context is x else None
        if weight is None:
            return self.to_q(x), self.to_k(context), self.to_v(context)
        return F.linear(x, weight).chunk(3, dim=-1)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, b: int, n: int) -> torch.Tensor:
        return self.to_out(self._heads(q, k, v, b, n))

    def _heads(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, b: int, n: int) -> torch.Tensor:
        """softmax(q k^T / sqrt(d)) v per head, heads concatenated: ``[b, n, h*d]`` (before ``to_out``)."""
        q, k, v = (t.view(b, -1, self.heads, self.dim_head).transpose(1, 2) for t in (q, k, v))  # [b, h, L, d]
        if self.backend == "naive" or k.shape[-2] <= SHORT_SEQUENCE:
            out = (q @ k.transpose(-1, -2) * self.dim_head ** -0.5).softmax(dim=-1) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        return out.transpose(1, 2).reshape(b, n, self.heads * self.dim_head)


def _one_token_term(attn: Attention, context: torch.Tensor | None) -> torch.Tensor | None:
    """``attn(anything, context)`` when that does not depend on the queries (one context token), else None."""
    if context is None or context.shape[1] != 1 or attn.backend == "naive":
        return None
    return attn.context_term(context)


def set_attention_backend(module: nn.Module, backend) -> nn.Module:
    """Switch every attention layer of ``module`` to ``"sdpa"`` (default), ``"naive"`` or a callable
    ``fn(q, k, v, heads)`` with ComfyUI's ``optimized_attention`` signature (``[b, L, heads * dim_head]``)."""
    if not callable(backend) and backend not in ATTENTION_BACKENDS:
        raise ValueError(f"attention backend {backend!r} is not supported; use one of {ATTENTION_BACKENDS} or a "
                         "callable fn(q, k, v, heads)")
    for m in module.modules():
        if isinstance(m, Attention):
            m.backend = backend
    return module


class BasicTransformerBlock(nn.Module):
    """Spatial block: self-attention, cross-attention to the CLIP token, GEGLU FF; pre-LayerNorm residuals."""

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int, ops=nn):
        super().__init__()
        self.attn1 = Attention(dim, heads, dim_head, ops=ops)
        self.ff = FeedForward(dim, ops=ops)
        self.attn2 = Attention(dim, heads, dim_head, context_dim, ops=ops)
        self.norm1, self.norm2, self.norm3 = (ops.LayerNorm(dim) for _ in range(3))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x

    def attend_(self, x: torch.Tensor, context=None, term=None, qkv=None) -> torch.Tensor:
        """``forward`` on a contiguous ``x`` that is overwritten with the result (no-grad use only)."""
        return attend_block_(self, x, context, term, qkv)


class TimeMixBlock(nn.Module):
    """``BasicTransformerTimeMixBlock`` / ``VideoTransformerBlock``: attention along a regrouped axis.

    Input ``[(b*t), s, c]`` is regrouped ``(b t) s c -> (b s) t c`` with ``t = seq_len`` innermost, attended
    along t, and regrouped back.
    """

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int, ff_in: bool, ops=nn):
        super().__init__()
        self.has_ff_in = ff_in
        if ff_in:
            self.norm_in = ops.LayerNorm(dim)
            self.ff_in = FeedForward(dim, dim, ops=ops)
        self.attn1 = Attention(dim, heads, dim_head, ops=ops)
        self.ff = FeedForward(dim, dim, ops=ops)
        self.norm2 = ops.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, dim_head, context_dim, ops=ops)
        self.norm1, self.norm3 = ops.LayerNorm(dim), ops.LayerNorm(dim)

    def attend(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """The block on sequences already laid out ``[batch, L, c]`` (context ``[batch, 1, d]``)."""
        if self.has_ff_in:
            x = self.ff_in(self.norm_in(x)) + x
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x

    def attend_(self, x: torch.Tensor, context=None, term=None, qkv=None) -> torch.Tensor:
        """``attend`` on a contiguous ``x`` that is overwritten with the result (no-grad use only)."""
        if self.has_ff_in:
            feed_forward_(self.ff_in, self.norm_in, x)
        return attend_block_(self, x, context, term, qkv)

    def forward(self, x: torch.Tensor, context: torch.Tensor, seq_len: int) -> torch.Tensor:
        bt, s, c = x.shape
        x = x.view(bt // seq_len, seq_len, s, c).transpose(1, 2)  # [b, s, t, c]
        if not eager_inference():
            x = self.attend(x.reshape(-1, seq_len, c), context)
        else:  # a copy of x in the [(b s), t, c] layout, overwritten in place
            x = self.attend_(x.clone(memory_format=torch.contiguous_format).view(-1, seq_len, c), context)
        return x.view(bt // seq_len, s, seq_len, c).transpose(1, 2).reshape(bt, s, c)


class _SpatialTransformer(nn.Module):
    """Shared part: GroupNorm(eps 1e-6) -> Linear proj_in -> blocks -> Linear proj_out -> residual."""

    def __init__(self, ch: int, heads: int, dim_head: int, depth: int, context_dim: int, ops=nn):
        super().__init__()
        inner = heads * dim_head
        self.in_channels = ch
        self.norm = ops.GroupNorm(32, ch, eps=1e-6)
        self.proj_in = ops.Linear(ch, inner)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(inner, heads, dim_head, context_dim, ops) for _ in range(depth)]
        )
        self.proj_out = ops.Linear(inner, ch)

    def _leave(self, x: torch.Tensor, x_in: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x_in.shape
        return self.proj_out(x).transpose(1, 2).reshape(n, c, h, w) + x_in

    def _enter_chunked(self, x_in: torch.Tensor) -> torch.Tensor:
        """``_enter`` a few images at a time into one ``[n, hw, c]`` buffer (GroupNorm statistics are per image)."""
        n, _, h, w = x_in.shape
        step, x = max(1, fast_ops.TOKENS_PER_CHUNK // (h * w)), None
        for i in range(0, n, step):
            part = self._enter(x_in[i:i + step])
            x = part.new_empty((n, *part.shape[1:])) if x is None else x
            x[i:i + step] = part
        return x

    def _enter(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        x = self.norm(x).view(n, c, h * w).transpose(1, 2)  # [n, hw, c]; contiguous when x is channels-last
        if x.is_contiguous() and eager_inference() and type(self.proj_in) is nn.Linear:
            return dense(x.reshape(n * h * w, c), self.proj_in.weight, self.proj_in.bias).view(n, h * w, -1)
        return self.proj_in(x)

    def _leave_chunked(self, x: torch.Tensor, x_in: torch.Tensor) -> torch.Tensor:
        """``_leave`` a few images at a time: ``proj_out(x)`` laid out ``[n, c, h, w]`` plus the residual ``x_in``."""
        n, c, h, w = x_in.shape
        step, out = max(1, fast_ops.TOKENS_PER_CHUNK // (h * w)), None
        for i in range(0, n, step):
            res, k = x_in[i:i + step], min(step, n - i)
            if res.is_contiguous(memory_format=torch.channels_last):  # [k, c, h, w] is [k*hw, c] in memory
                flat = res.permute(0, 2, 3, 1).reshape(k * h * w, c)
                part = linear_add(self.proj_out, x[i:i + step].reshape(k * h * w, -1), flat).view(k, h, w, c)
                part = part.permute(0, 3, 1, 2)
            else:
                part = self.proj_out(x[i:i + step]).transpose(1, 2).unflatten(2, (h, w)) + res  # [k, c, h, w]
            out = torch.empty_like(x_in, dtype=part.dtype) if out is None else out
            out[i:i + step] = part
        return out

    @staticmethod
    def _spatial_pass_(block: BasicTransformerBlock, x: torch.Tensor, context=None, term=None) -> torch.Tensor:
        """``block`` over a few whole images of ``x`` ``[n, hw, c]`` at a time, in place; ``context``/``term`` per image."""
        qkv, step = block.attn1.fused_qkv(), max(1, fast_ops.TOKENS_PER_CHUNK // x.shape[1])
        for i in range(0, x.shape[0], step):
            block.attend_(x[i:i + step], None if context is None else context[i:i + step],
                          None if term is None else term[i:i + step], qkv)
        return x

    def _index_embedding(self, n: int, repeats: int, like: torch.Tensor) -> torch.Tensor:
        """Sinusoid of indices 0..n-1 tiled ``repeats`` times -> ``[repeats*n, C]`` (dtype of ``like``)."""
        idx = torch.arange(n, device=like.device).repeat(repeats)
        return timestep_embedding(idx, self.in_channels, self.max_period).to(like.dtype)


class MotionTransformer(_SpatialTransformer):
    """SV4D ``PostHocSpatialTransformerWithTimeMixingAndMotion``: spatial, view, then frame attention."""

    def __init__(self, ch: int, heads: int, dim_head: int, depth: int, cfg, ops=nn):
        super().__init__(ch, heads, dim_head, depth, cfg.context_dim, ops)
        inner = heads * dim_head
        self.max_period = cfg.max_time_embed_period
        self.use_camera_emb, self.use_3d_attention = cfg.use_camera_emb, cfg.use_3d_attention
        ctx = cfg.context_dim if cfg.use_spatial_context else None
        self.time_mix_blocks = nn.ModuleList([TimeMixBlock(inner, heads, dim_head, ctx, cfg.extra_ff_mix_layer, ops) for _ in range(depth)])
        self.motion_blocks = nn.ModuleList(
            [TimeMixBlock(inner, heads, dim_head, cfg.motion_context_dim, cfg.extra_ff_mix_layer, ops) for _ in range(depth)]
        )
        view_in = cfg.adm_in_channels if cfg.use_camera_emb else ch
        self.time_mix_time_embed = mlp_embed(view_in, 4 * ch, ch, ops)
        self.time_mix_motion_embed = mlp_embed(ch, 4 * ch, ch, ops)
        self.time_mixer = AlphaBlender(cfg.merge_strategy, cfg.merge_factor)
        if cfg.separate_motion_merge_factor:
            self.time_mixer_motion = AlphaBlender(cfg.merge_strategy, cfg.merge_factor)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor, cond_view: torch.Tensor) -> torch.Tensor:
        """x ``[(b t v), c, h, w]``, emb ``[(b t v), E]``, context ``[b, t, d1]``, cond_view ``[(b v), d2, h', w']``."""
        attns = (m for m in self.modules() if isinstance(m, Attention))
        if not eager_inference() or self.use_3d_attention or any(a.backend != "sdpa" for a in attns):
            return self._forward_reference(x, emb, context, cond_view)
        return self._forward_chunked(x, emb, context, cond_view)

    def _embeddings(self, emb: torch.Tensor, b: int, t: int, v: int, like: torch.Tensor):
        """Frame embedding ``[(b t), 1, c]`` and view embedding ``[(b v), 1, c]``."""
        emb_time = self.time_mix_motion_embed(self._index_embedding(t, b, like))[:, None]
        if self.use_camera_emb:
            emb_view = self.time_mix_time_embed(emb.view(b, t, v, -1)[:, 0].reshape(b * v, -1))[:, None]
        else:
            emb_view = self.time_mix_time_embed(self._index_embedding(v, b, like))[:, None]
        return emb_time, emb_view

    def _alphas(self):
        alpha_view = self.time_mixer.alpha()
        return alpha_view, (self.time_mixer_motion.alpha() if hasattr(self, "time_mixer_motion") else alpha_view)

    def _forward_reference(self, x, emb, context, cond_view) -> torch.Tensor:
        """The released layer's reshapes, whole tensors at a time (autograd, SV4D 2.0 3D attention, naive backend)."""
        b, t, d1 = context.shape  # CLIP tokens per frame
        v, d2 = cond_view.shape[0] // b, cond_view.shape[1]
        n, c, h, w = x.shape
        hw = h * w
        cond_view = F.interpolate(cond_view, size=(h, w), mode="bilinear")
        spatial_ctx = context[:, :, None].expand(b, t, v, d1).reshape(-1, 1, d1)  # [(b t v), 1, d1]
        camera_ctx = context[:, :, None].expand(b, t, hw, d1).reshape(-1, 1, d1)  # [(b t hw), 1, d1]
        motion_ctx = cond_view.permute(0, 2, 3, 1).reshape(-1, 1, d2)  # [(b v hw), 1, d2]
        x_in, x = x, self._enter(x)
        emb_time, emb_view = self._embeddings(emb, b, t, v, x)
        if self.use_3d_attention:
            emb_view = emb_view.repeat(1, hw, 1).view(-1, 1, c)  # [(b v hw), 1, c]
        alpha_view, alpha_motion = self._alphas()
        for block, view_block, motion_block in zip(self.transformer_blocks, self.time_mix_blocks, self.motion_blocks):
            x = block(x, spatial_ctx)
            if self.use_3d_attention:
                x = self._mix_literal(x, (b, t, v, hw, c), view_block, motion_block, camera_ctx, motion_ctx,
                                      emb_view, emb_time, alpha_view, alpha_motion)
                continue
            # View attention over the V views of each (b, frame, pixel); rows ordered like camera_ctx (b, t, hw).
            xs = x.view(b, t, v, hw, c).permute(0, 1, 3, 2, 4).contiguous().view(b, t * hw, v, c)
            y = view_block.attend((xs + emb_view.view(b, 1, v, c)).view(-1, v, c), camera_ctx)
            xs = self.time_mixer(xs.view(-1, v, c), y, alpha_view)
            # Frame attention over the T frames of each (b, view, pixel); rows ordered like motion_ctx (b, v, hw).
            xm = xs.view(b, t, hw, v, c).permute(0, 3, 2, 1, 4).contiguous().view(b, v * hw, t, c)
            y = motion_block.attend((xm + emb_time.view(b, 1, t, c)).view(-1, t, c), motion_ctx)
            xm = self.time_mixer(xm.view(-1, t, c), y, alpha_motion)
            x = xm.view(b, v, hw, t, c).permute(0, 3, 1, 2, 4).reshape(n, hw, c)  # (b t v) order restored
        return self._leave(x, x_in)

    def _forward_chunked(self, x_in, emb, context, cond_view) -> torch.Tensor:
        """Inference: the reference operations on one ``[(b t v), hw, c]`` buffer, sub-block by sub-block in chunks.

        The view and frame sub-blocks read their sequences straight out of the buffer (view: axis v of
        ``[(b t), v, hw, c]``; frame: axis t of ``[b, t, (v hw), c]``) and blend the result back in place. One-token
        cross-attention contexts are evaluated once per distinct token rather than once per pixel.
        """
        b, t, d1 = context.shape
        v, (n, _, h, w) = cond_view.shape[0] // b, x_in.shape
        hw = h * w
        motion_ctx = F.interpolate(cond_view, size=(h, w), mode="bilinear").permute(0, 2, 3, 1).reshape(b, v * hw, 1, -1)
        frame_ctx = context.reshape(b * t, 1, d1)  # the CLIP token of each (b, t): spatial and view context
        x = self._enter_chunked(x_in)  # [n, hw, c]
        c = x.shape[-1]
        emb_time, emb_view = self._embeddings(emb, b, t, v, x)
        emb_view = emb_view.view(b, 1, v, c).expand(b, t, v, c).reshape(b * t, v, c)
        alpha_view, alpha_motion = self._alphas()
        for block, view_block, motion_block in zip(self.transformer_blocks, self.time_mix_blocks, self.motion_blocks):
            term = block.attn2.context_term(frame_ctx)  # [(b t), 1, c] -> one row per image (b t v)
            self._spatial_pass_(block, x, term=term[:, None].expand(b * t, v, 1, c).reshape(n, 1, c))
            view_term = view_block.attn2.context_term(frame_ctx)  # [(b t), 1, c]
            mix_pass_(x.view(b * t, v, hw, c), view_block, emb_view, alpha_view,
                       lambda g0, g1, r0, r1: view_term[g0:g1, None])
            mix_pass_(x.view(b, t, v * hw, c), motion_block, emb_time.view(b, t, c), alpha_motion,
                       lambda g0, g1, r0, r1: motion_block.attn2.context_term(motion_ctx[g0:g1, r0:r1]))
        return self._leave_chunked(x, x_in)

    def _mix_literal(self, x, dims, view_block, motion_block, camera_ctx, motion_ctx, emb_view, emb_time,
                     alpha_view, alpha_motion):
        """SV4D 2.0 ``use_3d_attention``: the released code's reshapes, reproduced step by step (spec 2.5)."""
        b, t, v, hw, c = dims
        x = x.view(b, t, v, hw, c).permute(0, 2, 3, 1, 4).reshape(-1, t, c)  # [(b v hw), t, c]
        x = self.time_mixer(x, view_block(x + emb_view, camera_ctx, v), alpha_view)  # regroups (b v hw) by V
        x = x.view(b, v, hw, t, c).permute(0, 3, 1, 2, 4).reshape(b * t, -1, c)  # [(b t), (v hw), c]
        x = self.time_mixer(x, motion_block(x + emb_time, motion_ctx, t), alpha_motion)
        return x.reshape(b * t * v, hw, c)


class VideoTransformer(_SpatialTransformer):
    """SV3D ``SpatialVideoTransformer``: spatial attention, then attention over the F orbit frames."""

    def __init__(self, ch: int, heads: int, dim_head: int, depth: int, cfg, ops=nn):
        super().__init__(ch, heads, dim_head, depth, cfg.context_dim, ops)
        inner = heads * dim_head
        self.max_period = cfg.max_time_embed_period
        ctx = cfg.context_dim if cfg.use_spatial_context else None
        self.time_stack = nn.ModuleList([TimeMixBlock(inner, heads, dim_head, ctx, cfg.extra_ff_mix_layer, ops) for _ in range(depth)])
        self.time_pos_embed = mlp_embed(ch, 4 * ch, ch, ops)
        self.time_mixer = AlphaBlender(cfg.merge_strategy, cfg.merge_factor)

    def forward(self, x: torch.Tensor, context: torch.Tensor, num_frames: int, image_only_indicator=None) -> torch.Tensor:
        n, c, h, w = x.shape
        time_ctx = context[::num_frames].repeat_interleave(h * w, dim=0)  # first frame's token, per pixel
        inference = eager_inference()  # then: one [n, hw, c] buffer updated in place, spatial blocks in chunks
        x_in, x = x, (self._enter_chunked(x) if inference else self._enter(x))
        emb = self.time_pos_embed(self._index_embedding(num_frames, n // num_frames, x))[:, None]
        alpha = self.time_mixer.alpha(image_only_indicator)
        if alpha.dim() == 2:  # [b, F] -> [(b F), 1, 1]
            alpha = alpha.reshape(-1, 1, 1)
        if inference:
            for block, time_block in zip(self.transformer_blocks, self.time_stack):
                term = _one_token_term(block.attn2, context)
                self._spatial_pass_(block, x, None if term is not None else context, term)
                blend_(x, time_block(x + emb, time_ctx, num_frames), alpha)
            return self._leave_chunked(x, x_in)
        for block, time_block in zip(self.transformer_blocks, self.time_stack):
            x = block(x, context)
            x = self.time_mixer(x, time_block(x + emb, time_ctx, num_frames), alpha)
        return self._leave(x, x_in)
