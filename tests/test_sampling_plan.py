"""Pass planner: official 21-frame traces reproduced exactly; invariants of the extended schedule."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from sv4d_models import camera
from sv4d_models.kinds import SV4D_ORBIT_VIEWS
from sv4d_models.sampling import Plan, default_guider, get_sigmas_edm, make_plan
from sv4d_models.sampling.plan import fit_rows, official_supported

from conftest import PARITY, require_shared

KINDS = ("sv4d", "sv4d2", "sv4d2_8views")
PASS_EVENTS = ("run_img2vid", "dense window")


@pytest.fixture(scope="module")
def trace():
    return json.loads(require_shared(PARITY / "schedule_trace_21frames.json").read_text())


def _writers_before(p: Plan, index: int) -> dict:
    out = {}
    for q in p.passes[:index]:
        for cell in q.writes:
            out[cell] = q.index
    return out


def _check_reference(p: Plan, pass_index: int, reference, views, positions, labels, pass_ids):
    """The trace's cond_view images must be the cells our plan says, written by the same earlier pass."""
    assert reference is not None
    assert positions == [[[reference, v]] for v in views]
    writers = _writers_before(p, pass_index)
    for v, label in zip(views, labels):
        m = re.match(r"pass#(\d+) (?:dense )?output \(t=(\d+), v=(\d+)\)", label)
        if m:
            assert (int(m[2]), int(m[3])) == (reference, v), label
            assert pass_ids[writers[(reference, v)]] == int(m[1]), label
        else:
            assert p.given_reference_row and reference == 0 and (0, v) not in writers, label
            k = SV4D_ORBIT_VIEWS[v] - 1  # the script rolls the SV3D orbit by one
            assert label == f"SV3D output frame {k} (before roll)"


def _check_cond_frames(cond_frames, positions, labels):
    assert positions == [[[t, 0]] for t in cond_frames]
    assert labels == [f"input video frame {t}" for t in cond_frames]


def _check_sampler(kind, sampler, num_steps):
    np.testing.assert_allclose(sampler["sigmas"], get_sigmas_edm(num_steps).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sampler["guider_scale"], default_guider(kind).table().numpy(), atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_official_trace_is_reproduced(trace, kind):
    events = trace[kind]["events"]
    passes = [e for e in events if e["event"].startswith(PASS_EVENTS)]
    p = make_plan(kind, trace["n_frames"], mode="official")
    assert p.mode == "official" and len(p.passes) == len(passes)
    pass_ids = {q.index: e["pass_id"] for q, e in zip(p.passes, passes)}
    polars, azims = camera.conditioning_angles(kind)
    for q, e in zip(p.passes, passes):
        if e["event"].startswith("run_img2vid"):
            assert q.kind == ("anchor" if kind == "sv4d" else "window")
            assert list(q.frames) == e["frame_indices (T rows, model order)"]
            assert list(q.views) == e["view_indices (V cols)"]
            _check_cond_frames(q.cond_frames, e["cond_motion_positions"], e["cond_motion_frames(CLIP tokens + concat)"])
            if e["cond_mv / image_only_indicator"]:
                assert not e["cond_view_latents_zeroed"]
                _check_reference(p, q.index, q.reference_frame, q.views, e["cond_view_positions"],
                                 e["cond_view(reference views -> frame-attn context)"], pass_ids)
            else:
                assert e["cond_view_latents_zeroed"] and q.reference_frame is None
            np.testing.assert_allclose(e["polars_deg_per_view"], np.rad2deg(polars), atol=1e-3)
            np.testing.assert_allclose(e["azimuths_deg_per_view"], np.rad2deg(azims), atol=1e-3)
            assert set(q.step_directions) == {"forward"}
        else:
            assert q.kind == "dense"
            assert list(q.frames) == e["frame_indices"] and list(q.views) == e["view_indices"]
            sigmas = get_sigmas_edm(p.num_steps).tolist()
            assert len(e["steps"]) == p.num_steps == len(q.step_directions)
            for s in e["steps"]:
                assert s["direction"] == q.step_directions[s["step"]]
                assert s["frame_order"] == list(q.direction(s["direction"]).frames)
                assert s["sigma"] == pytest.approx(sigmas[s["step"]], rel=1e-5, abs=1e-6)
                assert s["sigma_next"] == pytest.approx(sigmas[s["step"] + 1], rel=1e-5, abs=1e-6)
            for name in ("forward", "backward"):
                d, ed = q.direction(name), e[name]
                assert list(d.frames) == ed["frame_order"]
                _check_cond_frames(d.cond_frames, ed["cond_motion_positions"], ed["cond_motion_frames(CLIP tokens + concat)"])
                _check_reference(p, q.index, d.reference_frame, q.views, ed["cond_view_positions"],
                                 ed["cond_view(reference views -> frame-attn context)"], pass_ids)
                np.testing.assert_allclose(ed["azimuths_deg_first_row"], np.rad2deg(azims), atol=1e-3)
            assert [list(c) for c in q.writes] == e["decoded_and_overwritten (t,v)"]
        _check_sampler(kind, e["sampler"], p.num_steps)
    _check_outputs(p, events, pass_ids)


def _check_outputs(p: Plan, events, pass_ids):
    """Every frame of every saved view video comes from the pass our plan says writes it last."""
    final = p.final_writer()
    n_videos = 0
    for e in events:
        m = re.search(r"_v(\d{3})\.mp4$", e.get("file", ""))
        if e["event"] != "save_video" or not m or int(m[1]) == 0:
            continue
        v = int(m[1])
        assert len(e["frames"]) == p.n_frames
        for t, label in enumerate(e["frames"]):
            assert re.fullmatch(rf"pass#{pass_ids[final[(t, v)]]} (dense )?output \(t={t}, v={v}\)", label), label
        n_videos += 1
    assert n_videos == p.n_views


def test_official_mode_refuses_what_the_scripts_cannot_do():
    for kind, n in (("sv4d", 9), ("sv4d", 22), ("sv4d2", 9), ("sv4d2", 24), ("sv4d2_8views", 22)):
        assert not official_supported(kind, n)
        with pytest.raises(ValueError, match="extended"):
            make_plan(kind, n, mode="official")
        assert make_plan(kind, n).mode == "extended"
    assert make_plan("sv4d", 21).mode == "official" and make_plan("sv4d2", 13).mode == "official"
    assert make_plan("sv4d2_8views", 9).mode == "official"


@pytest.mark.parametrize("kind", KINDS)
def test_extended_equals_official_where_both_run(kind):
    for n in range(1, 40):
        if official_supported(kind, n):
            a, b = make_plan(kind, n, mode="official"), make_plan(kind, n, mode="extended")
            assert a.passes == b.passes, (kind, n)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [1, 2, 5, 9, 13, 21, 22, 50, 120])
def test_extended_invariants(kind, n):
    p = make_plan(kind, n, mode="extended")
    views = tuple(range(1, p.n_views + 1))
    written = {(0, v) for v in views} if kind == "sv4d" else set()
    for q in p.passes:
        assert q.kind in ("anchor", "dense", "window") and q.views == views
        assert len(q.frames) == p.frames_per_pass
        for d in q.directions:
            assert len(d.frames) == p.frames_per_pass and sorted(d.frames) == sorted(q.frames)
            assert d.cond_frames == d.frames
            assert all(0 <= t < n for t in d.frames)
            if d.reference_frame is not None:  # reference views generated (or given) before use
                assert all((d.reference_frame, v) in written for v in views), (q.index, d)
            else:
                assert kind != "sv4d" and q.index == 0
        if q.kind == "dense":
            assert [d.name for d in q.directions] == ["forward", "backward"]
            assert q.direction("backward").frames == q.frames[::-1]
            assert q.step_directions[0] == "backward" and q.step_directions[1] == "forward"
            assert q.direction("backward").reference_frame == q.frames[-1]
            assert q.direction("forward").reference_frame == q.frames[0]
        else:
            assert set(q.step_directions) == {"forward"}
        assert len(q.step_directions) == p.num_steps
        assert all(t in q.frames and v in views for t, v in q.writes)
        written.update(q.writes)
    assert set(p.final_writer()) == {(t, v) for t in range(n) for v in views}
    assert Plan.from_json(json.loads(json.dumps(p.to_json()))) == p
    js = p.to_json()
    assert all({"kind", "frames", "views", "cond_frames", "reference_frame", "directions"} <= set(x) for x in js["passes"])


def test_sv4d_long_video_chains_anchor_runs():
    p = make_plan("sv4d", 50)
    anchors = [q for q in p.passes if q.kind == "anchor"]
    assert [q.frames for q in anchors] == [(4, 8, 12, 16, 20), (24, 28, 32, 36, 40), (36, 40, 44, 48, 49)]
    assert [q.reference_frame for q in anchors] == [0, 20, 32]
    assert {t for t, _ in anchors[2].writes} == {44, 48, 49}  # already generated anchors are kept
    dense = [q.frames[0] for q in p.passes if q.kind == "dense"]
    assert dense == list(range(0, 45, 4)) + [45]


def test_short_videos_are_padded():
    assert fit_rows([4, 8], 5) == [4, 8, 4, 8, 4]
    assert fit_rows([0, 1, 2], 5) == [0, 1, 2, 1, 0]
    assert fit_rows([0, 1], 5, pad="repeat") == [0, 1, 1, 1, 1]
    assert fit_rows([3], 4) == [3, 3, 3, 3]
    q = make_plan("sv4d2", 9).passes
    assert len(q) == 1 and q[0].frames == (0, 1, 2, 3, 4, 5, 6, 7, 8, 7, 6, 5) and q[0].reference_frame is None
    assert q[0].row_of(7) == 7
    one = make_plan("sv4d", 1).passes
    assert len(one) == 1 and one[0].kind == "window" and one[0].writes == tuple((0, v) for v in range(1, 9))
    with pytest.raises(ValueError, match="pad"):
        fit_rows([0], 3, pad="mirror")
    with pytest.raises(ValueError, match="n_frames"):
        make_plan("sv4d", 0)
    with pytest.raises(ValueError, match="model_kind"):
        make_plan("sv3d_u", 21)


def test_docstring_examples():
    p = make_plan("sv4d", 23)
    anchors = [(q.frames, q.reference_frame, sorted({t for t, _ in q.writes})) for q in p.passes if q.kind == "anchor"]
    assert anchors == [((4, 8, 12, 16, 20), 0, [4, 8, 12, 16, 20]), ((8, 12, 16, 20, 22), 4, [22])]
    assert [q.frames[0] for q in p.passes if q.kind == "dense"] == [0, 4, 8, 12, 16, 18]
    p = make_plan("sv4d", 9)
    assert [(q.kind, q.frames) for q in p.passes] == [("anchor", (4, 8, 4, 8, 4)), ("dense", (0, 1, 2, 3, 4)),
                                                      ("dense", (4, 5, 6, 7, 8))]
    assert p.total_steps == 3 * 20
