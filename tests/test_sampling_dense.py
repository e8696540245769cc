"""SV4D dense passes: per-step cond set, frame order, guider scale by model row, scatter back by (t, v)."""
from __future__ import annotations

import pytest
import torch

from sv4d_models.sampling import (SpatiotemporalPredictionGuider, build_sv4d_cond, get_sigmas_edm, make_plan, run_pass,
                                  sample_dense_alternating)
from sv4d_models.sampling.denoiser import VScalingWithEDMcNoise

T, V, C, H = 5, 8, 4, 2
REF = {"forward": 100.0, "backward": 200.0}


class RecordingUNet:
    """Output of the c half = 0.01 * (frame id) everywhere; records cond set and frame order per call."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, timesteps, context, y, cond_view=None, cond_motion=None, num_video_frames=None,
                 image_only_indicator=None):
        n = x.shape[0] // 2
        ref = float(cond_view[cond_view.shape[0] // 2:].mean())
        direction = {v: k for k, v in REF.items()}[ref]
        frames = x[n:, C, 0, 0].view(T, V)[:, 0].round().long().tolist()  # concat channel carries frame id
        assert torch.all(cond_view[: cond_view.shape[0] // 2] == 0)  # uc half first, zeroed
        assert num_video_frames == T * V and image_only_indicator.shape == (2, T * V)
        self.calls.append((direction, frames))
        out = torch.zeros(x.shape[0], C, H, H)
        out[n:] = 0.01 * x[n:, C:C + 1]
        return out


def _conds(p):
    conds = {}
    for d in p.directions:
        frame_lat = torch.tensor(d.cond_frames, dtype=torch.float32)[:, None, None, None].expand(T, C, H, H)
        ref = torch.full((V, C, H, H), REF[d.name])
        conds[d.name] = build_sv4d_cond("sv4d", torch.ones(T, 8), frame_lat.clone(), frame_lat.clone(), ref,
                                        [1.4] * V, [0.3 * k for k in range(V)], dims=(4, 4, 4))
    return conds


def _manual(x0, frames, orders, sigmas, step_dirs, scale):
    """Per-cell reference: guided = x c_skip + s[row] f(t) c_out with the row position of this direction."""
    x = x0.clone()
    for i, name in enumerate(step_dirs):
        s, s_next = sigmas[i], sigmas[i + 1]
        c_skip, c_out, _, _ = VScalingWithEDMcNoise()(s)
        new = x.clone()
        for row, fwd_row in enumerate(orders[name]):
            t = frames[fwd_row]
            for v in range(V):
                guided = x[fwd_row, v] * c_skip + scale[row * V + v] * 0.01 * t * c_out
                new[fwd_row, v] = x[fwd_row, v] + (s_next - s) * (x[fwd_row, v] - guided) / s
        x = new
    return x


def test_run_pass_dense_alternates_and_scatters():
    p = make_plan("sv4d", 21, num_steps=6).passes[2]  # dense window 4..8
    assert p.kind == "dense" and p.frames == (4, 5, 6, 7, 8)
    unet = RecordingUNet()
    guider = SpatiotemporalPredictionGuider(2.0, T * V, num_views=V)
    sigmas = get_sigmas_edm(6, sigma_max=10.0)
    x0 = torch.randn(T, V, C, H, H, generator=torch.Generator().manual_seed(0))
    seen = []
    out = run_pass(unet, p, _conds(p), sigmas, guider, (C, H, H), x_init=x0.clone(),
                   callback=lambda info: seen.append((info["i"], info["direction"])))
    expected_calls = [(d, list(p.direction(d).frames)) for d in p.step_directions]
    assert unet.calls == expected_calls
    assert unet.calls[0] == ("backward", [8, 7, 6, 5, 4]) and unet.calls[1] == ("forward", [4, 5, 6, 7, 8])
    assert seen == [(i, d) for i, d in enumerate(p.step_directions)]
    ref = _manual(x0, p.frames, p.orders(), sigmas, p.step_directions, guider.table())
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    # the guider scale follows the model row: using the forward scale for backward steps would differ
    wrong = _manual(x0, p.frames, {"forward": [0, 1, 2, 3, 4], "backward": [0, 1, 2, 3, 4]}, sigmas,
                    ("forward",) * 6, guider.table())
    assert not torch.allclose(out, wrong, atol=1e-3)


def test_run_pass_window_uses_forward_only_and_generator():
    p = make_plan("sv4d2_8views", 9, num_steps=3).passes[1]
    calls = []

    def unet(x, timesteps, context, y, cond_view=None, cond_motion=None, num_video_frames=None,
             image_only_indicator=None):
        calls.append(float(image_only_indicator[0, 0]))
        return torch.zeros(x.shape[0], C, H, H)

    frame_lat = torch.zeros(5, C, H, H)
    c, uc = build_sv4d_cond("sv4d2_8views", torch.ones(5, 8), frame_lat, frame_lat, torch.ones(8, C, H, H),
                            [1.5] * 8, [0.1] * 8, dims=(4, 4, 4))
    sig = get_sigmas_edm(3)
    a = run_pass(unet, p, {"forward": (c, uc)}, sig, None, (C, H, H), generator=torch.Generator().manual_seed(3))
    b = run_pass(unet, p, {"forward": (c, uc)}, sig, None, (C, H, H), generator=torch.Generator().manual_seed(3))
    assert a.shape == (5, 8, C, H, H) and torch.equal(a, b)
    assert calls == [1.0] * 6  # reference present -> image_only_indicator 1
    with pytest.raises(ValueError, match="num_steps"):
        run_pass(unet, p, {"forward": (c, uc)}, get_sigmas_edm(4), None, (C, H, H))
    with pytest.raises(ValueError, match="direction"):
        run_pass(unet, make_plan("sv4d", 21, num_steps=3).passes[1], {"forward": (c, uc)}, sig, None, (C, H, H))


def test_sample_dense_alternating_validates():
    x = torch.zeros(3, 1, 1)
    model = lambda x, s: x
    with pytest.raises(ValueError, match="permutation"):
        sample_dense_alternating({"forward": model, "backward": model}, x, get_sigmas_edm(2),
                                 orders={"forward": [0, 1, 1], "backward": [2, 1, 0]})
    with pytest.raises(ValueError, match="one per step"):
        sample_dense_alternating({"forward": model, "backward": model}, x, get_sigmas_edm(2), ["forward"])


@pytest.mark.parametrize("kind,n", [("sv4d", 9), ("sv4d", 3), ("sv4d2_8views", 7)])
def test_plan_drives_a_whole_video(kind, n):
    """A pipeline-shaped loop: every reference exists when read, every output cell ends up filled."""
    p = make_plan(kind, n, num_steps=2)
    n_t, n_v = p.frames_per_pass, p.n_views
    inputs = torch.randn(n, C, H, H, generator=torch.Generator().manual_seed(1))  # "VAE latents" of the video
    matrix = {(0, v): torch.zeros(C, H, H) for v in range(1, n_v + 1)} if p.given_reference_row else {}

    def unet(x, timesteps, context, y, cond_view=None, cond_motion=None, num_video_frames=None,
             image_only_indicator=None):
        return torch.zeros(x.shape[0], C, H, H)

    gen = torch.Generator().manual_seed(0)
    for q in p.passes:
        conds = {}
        for d in q.directions:
            ref = None if d.reference_frame is None else torch.stack(
                [matrix[(d.reference_frame, v)] for v in q.views])  # KeyError if not generated yet
            lat = inputs[list(d.cond_frames)]
            conds[d.name] = build_sv4d_cond(kind, torch.ones(n_t, 8), lat, lat, ref, [1.5] * n_v,
                                            [0.1 * k for k in range(n_v)], dims=(4, 4, 4), n_views=n_v)
        out = run_pass(unet, q, conds, get_sigmas_edm(2), None, (C, H, H), generator=gen)
        for t, v in q.writes:
            matrix[(t, v)] = out[q.row_of(t), q.views.index(v)]
    assert set(matrix) == {(t, v) for t in range(n) for v in range(1, n_v + 1)}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_dense_pass_on_cuda_matches_cpu():
    p = make_plan("sv4d", 21, num_steps=4).passes[1]
    sigmas = get_sigmas_edm(4, sigma_max=10.0)
    guider = SpatiotemporalPredictionGuider(2.0, T * V, num_views=V)
    x0 = torch.randn(T, V, C, H, H, generator=torch.Generator().manual_seed(0))
    outs = []
    for device in ("cpu", "cuda"):
        conds = {k: tuple({kk: vv.to(device) for kk, vv in d.items()} for d in cu) for k, cu in _conds(p).items()}
        unet = RecordingUNet()
        wrapped = lambda x, *a, **k: unet(x.cpu(), *[t.cpu() if torch.is_tensor(t) else t for t in a],
                                          **{kk: vv.cpu() if torch.is_tensor(vv) else vv for kk, vv in k.items()}
                                          ).to(x.device)
        outs.append(run_pass(wrapped, p, conds, sigmas.to(device), guider, (C, H, H), x_init=x0.to(device)).cpu())
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)
