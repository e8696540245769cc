"""What the mid-frame times of the 4D-fit benchmark need: reference renders and one motion-interpolation experiment.

Issue 23 asks >= 24 dB at the held-out (mid-frame) times of ``benchmarks/nerf_quality.py``, where the fitted
K-Planes field scores 21.8-22.8 dB on moving scenes. This probe takes one benchmark cell (same scene, matrix,
anti-aliased ground truth and cpu-preset fit) and scores, at the 8 mid-frame times x 9 matrix views:

- ``crossfade``: the average of the two neighbouring frames (a field that blends frames);
- ``translate only``: every part moved halfway along its offset, pulse and bend, its rotation crossfaded (the two
  renders with the rotation of either neighbouring frame, averaged): what a flow that only follows translations
  can reach;
- ``midway``: every part moved halfway along all its motion parameters (``SyntheticScene.midway``);
- ``fit, no motion``: the fitted field read at the mid-frame times as it is (K-Planes blends its time rows);
- ``fit + part motion``: the fit as shipped (``benchmarks/nerf_quality.py``'s held-out times): the field read
  through the parts' motion the fit estimated (``sv4d_models.nerf.motion``);
- ``+ true ring turn``: the same, with the striped torus's step motions replaced by its true ones (the parts are
  matched to the scene's primitives by their centres at frame 0); the torus's four stripe pairs repeat every 90
  degrees and it turns about its own axis, so its frames are the same for a turn and that turn minus 90 degrees:
  what this column gains is what the frames cannot tell;
- ``+ true motion``: every part's step motions replaced by the true ones (the fitted field's own limit);
- ``fit + graph``: an experiment of issue 23's fourth session, not part of the library. Between each pair of fitted frames an embedded
  deformation graph (``--nodes`` nodes on frame i's occupied voxels, a rotation and a translation each, blended
  by Gaussian weights of the 4 nearest nodes, as-rigid-as-possible between neighbouring nodes) is fitted so that
  frame i's occupancy and colour voxels (``--grid``^3, read from the field) land on frame i+1's, coarse to fine
  (blurred volumes, then sharp). A mid-frame point is pulled back to frame i through the graph scaled to the
  fraction of the step (rotations and translations times s, inverted by fixed-point iterations), pushed to frame
  i+1 through the whole graph, and the field is read at both frames and blended: density ``(1 - s) a + s b``,
  colour weighted by density.

Usage:  python benchmarks/motion_probe.py [--kind rigid] [--seed 0] [--grid 48] [--nodes 64]
Prints one row per mid-frame time and the means. Measured (2 threads): see the README's 4D fit quality section.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kornia.filters import filter3d, get_gaussian_kernel3d  # noqa: E402
from kornia.geometry.conversions import axis_angle_to_rotation_matrix, rotation_matrix_to_axis_angle  # noqa: E402

from sv4d_models.images import psnr  # noqa: E402
from sv4d_models.nerf.renderer import render  # noqa: E402
from sv4d_models.synthetic import SyntheticScene  # noqa: E402

N_FRAMES, SIZE, SS = 9, 64, 4  # benchmarks/nerf_quality.py's matrix and ground truth
SIGMAS = (2.0, 1.0, 0.0)  # the graph fit's blur levels (voxels), coarse to fine


class DeformationGraph:
    """Nodes ``[J, 3]`` with a rotation (axis-angle) and a translation each; ``apply(x, s)`` moves points by the
    blend of the 4 nearest nodes' rigid motions, both scaled by ``s`` (s = 1: frame i -> frame i+1)."""

    def __init__(self, nodes: torch.Tensor, k: int = 4):
        self.p, self.k = nodes, k
        d = torch.cdist(nodes, nodes)
        self.neighbours = d.topk(k + 1, largest=False).indices[:, 1:]
        self.radius = d.topk(2, largest=False).values[:, 1].mean() * 2.0
        self.r = torch.zeros_like(nodes, requires_grad=True)
        self.t = torch.zeros_like(nodes, requires_grad=True)

    def weights(self, x: torch.Tensor):
        dk, idx = torch.cdist(x, self.p).topk(self.k, largest=False)
        w = torch.exp(-(dk / self.radius) ** 2) + 1e-6
        return idx, w / w.sum(-1, keepdim=True)

    def apply(self, x: torch.Tensor, s: float = 1.0, cached=None) -> torch.Tensor:
        idx, w = cached if cached is not None else self.weights(x)
        rot, p = axis_angle_to_rotation_matrix(self.r * s)[idx], self.p[idx]
        y = torch.einsum("nkij,nkj->nki", rot, x[:, None] - p) + p + s * self.t[idx]
        return (w[..., None] * y).sum(1)

    def rigidity(self) -> torch.Tensor:
        """As-rigid-as-possible: each node's motion applied to its neighbours should land where they move."""
        rot = axis_angle_to_rotation_matrix(self.r)
        pj, pk = self.p[:, None], self.p[self.neighbours]
        moved = torch.einsum("jab,jkb->jka", rot, pk - pj) + pj + self.t[:, None]
        return (moved - (pk + self.t[self.neighbours])).pow(2).sum(-1).mean()


def sample_volume(vol: torch.Tensor, x: torch.Tensor, half: float) -> torch.Tensor:
    """``vol [C, D, H, W]`` over ``[-half, half]^3`` (z, y, x), points ``[N, 3]`` -> ``[N, C]`` (trilinear)."""
    grid = (x / half).view(1, -1, 1, 1, 3)
    return F.grid_sample(vol[None], grid, mode="bilinear", padding_mode="border", align_corners=True)[0, :, :, 0, 0].T


def pyramid(vol: torch.Tensor) -> list[torch.Tensor]:
    """``vol`` Gaussian-blurred at each of ``SIGMAS`` (voxels; 0 = sharp), coarse to fine: the stages of the graph fit.
    Computed once per frame (each frame is the second volume of one pair and the first of the next)."""
    out = []
    for sigma in SIGMAS:
        size = 2 * math.ceil(2.5 * sigma) + 1
        out.append(filter3d(vol[None], get_gaussian_kernel3d((size,) * 3, (sigma,) * 3), border_type="replicate")[0]
                   if sigma > 0 else vol)
    return out


@torch.no_grad()
def field_volumes(model, times, n: int, half: float):
    """Occupancy (1 - exp(-sigma * voxel)) and colour of the field on an n^3 grid at each time: ``[4, n, n, n]``."""
    lin = torch.linspace(-half, half, n)
    z, y, x = torch.meshgrid(lin, lin, lin, indexing="ij")
    pts = torch.stack([x, y, z], -1).reshape(-1, 3)
    vols = []
    for t in times:
        q = model.query(pts, float(t))
        occ = 1 - torch.exp(-q["sigma"] * (2 * half / n))
        vols.append(torch.cat([occ[:, None], q["rgb"]], -1).T.reshape(4, n, n, n))
    return vols, pts


def farthest_points(pts: torch.Tensor, n: int) -> torch.Tensor:
    idx = [0]
    d = (pts - pts[0]).norm(dim=-1)
    for _ in range(min(n, len(pts)) - 1):
        idx.append(int(d.argmax()))
        d = torch.minimum(d, (pts - pts[idx[-1]]).norm(dim=-1))
    return pts[idx]


def fit_graph(pyr_a: list, pyr_b: list, pts, half: float, n_nodes: int, steps: int = 80, colour: float = 1.0,
              rigidity: float = 10.0) -> DeformationGraph:
    """The graph moving frame a onto frame b: ``steps`` Adam steps on each level of their pyramids (``pyramid``)."""
    occ_a, occ_b = pyr_a[-1][0].reshape(-1), pyr_b[-1][0].reshape(-1)
    graph = DeformationGraph(farthest_points(pts[occ_a > 0.5], n_nodes))
    band = pts[(occ_a > 0.02) | (occ_b > 0.02)]
    cached = graph.weights(band)
    opt = torch.optim.Adam([graph.r, graph.t], lr=0.01)
    for va, vb in zip(pyr_a, pyr_b):
        fa = sample_volume(va, band, half)
        for _ in range(steps):
            fb = sample_volume(vb, graph.apply(band, 1.0, cached), half)
            w = (fa[:, 0] * fb[:, 0]).detach()
            loss = (fa[:, 0] - fb[:, 0]).pow(2).mean() + rigidity * graph.rigidity() + \
                colour * (w[:, None] * (fa[:, 1:] - fb[:, 1:]).pow(2)).sum() / w.sum().clamp(min=1)
            opt.zero_grad()
            loss.backward()
            opt.step()
    graph.r.requires_grad_(False)
    graph.t.requires_grad_(False)
    return graph


class GraphInterpolated(nn.Module):
    """The fitted field at its frames; between two frames, both frames read through the pair's graph and blended."""

    def __init__(self, model, times: list, graphs: list):
        super().__init__()
        self.model, self.cfg, self.times, self.graphs = model, model.cfg, times, graphs

    def query(self, x, t, normals=None, create_graph=False):
        tt = float(t.reshape(-1)[0]) if torch.is_tensor(t) else float(t)
        if any(abs(tt - f) < 1e-6 for f in self.times):
            return self.model.query(x, t)
        i = max(k for k in range(len(self.times) - 1) if self.times[k] <= tt)
        s = (tt - self.times[i]) / (self.times[i + 1] - self.times[i])
        graph, xa = self.graphs[i], x.clone()
        for _ in range(4):  # solve graph.apply(xa, s) = x
            xa = xa - (graph.apply(xa, s) - x)
        qa, qb = self.model.query(xa, self.times[i]), self.model.query(graph.apply(xa, 1.0), self.times[i + 1])
        wa, wb = (1 - s) * qa["sigma"] + 1e-6, s * qb["sigma"] + 1e-6
        return {"sigma": (1 - s) * qa["sigma"] + s * qb["sigma"],
                "rgb": (wa[:, None] * qa["rgb"] + wb[:, None] * qb["rgb"]) / (wa + wb)[:, None]}


def translate_only(scene: SyntheticScene, cameras, t0: float, t1: float) -> torch.Tensor:
    """Offsets, pulse and bend halfway; each part's rotation that of t0 or t1, the two renders averaged."""
    half, tm = scene.midway(t0, t1)
    renders = []
    for tf in (t0, t1):
        prims = []
        for p, q in zip(scene.primitives, half.primitives):
            wave_m, wave_f = (math.sin(2 * math.pi * (t + p.phase)) for t in (tm, tf))
            prims.append(replace(q, rotate_amp_deg=p.rotate_amp_deg * wave_f / wave_m if abs(wave_m) > 1e-6 else 0.0))
        renders.append(replace(half, primitives=tuple(prims)).render(cameras, tm, SIZE, supersample=SS)["rgb"])
    return (renders[0] + renders[1]) / 2


def true_steps(motion, scene: SyntheticScene, times: list, primitives: set):
    """A copy of a ``PartMotion`` whose parts that are the scene's ``primitives`` (indices; parts matched to the
    primitive whose centre at frame 0 is nearest) move between the frames as those primitives do."""
    import copy

    out = copy.deepcopy(motion)
    for p in range(motion.n_parts):
        j = min(range(len(scene.primitives)),
                key=lambda i: float((scene.primitives[i].pose(times[0])[0] - motion.step_c[p, 0]).norm()))
        if j not in primitives:
            continue
        prim = scene.primitives[j]
        for k in range(len(times) - 1):
            (c0, r0, s0, _), (c1, r1, s1, _) = prim.pose(times[k]), prim.pose(times[k + 1])
            out.step_w[p, k] = rotation_matrix_to_axis_angle((r1 @ r0.T)[None])[0]
            out.step_d[p, k], out.step_c[p, k] = c1 - c0, c0
            out.step_log_s[p, k], out.ambiguous[p, k] = math.log(s1 / s0), False
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", default="rigid", choices=["rigid", "nonrigid"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--grid", type=int, default=48, help="voxels per side of the volumes the graphs align")
    ap.add_argument("--nodes", type=int, default=64, help="deformation-graph nodes per frame pair")
    a = ap.parse_args(argv)
    from sv4d_models.nerf.fit import fit_dynamic_nerf
    from sv4d_models.presets import get_preset

    torch.manual_seed(a.seed)
    scene = SyntheticScene.make(kind=a.kind, seed=a.seed)
    gt = scene.render_matrix(model_kind="sv4d", n_frames=N_FRAMES, size=SIZE, supersample=SS)
    cams, times = gt["cameras"], gt["times"].tolist()
    t0 = time.perf_counter()
    fit = fit_dynamic_nerf(gt["images"], gt["masks"], cams, gt["times"], get_preset("cpu").fit_config())
    t1 = time.perf_counter()
    model, half = fit.model.eval(), fit.model.cfg.aabb_half_size
    vols, pts = field_volumes(model, times, a.grid, half)
    pyramids = [pyramid(v) for v in vols]
    graphs = [fit_graph(pyramids[i], pyramids[i + 1], pts, half, a.nodes) for i in range(len(times) - 1)]
    t2 = time.perf_counter()
    print(f"{a.kind} seed {a.seed}: cpu-preset fit {t1 - t0:.0f} s, volumes + {len(graphs)} graphs {t2 - t1:.0f} s")
    interp = GraphInterpolated(model, times, graphs)
    from sv4d_models.nerf.motion import MotionField

    if fit.motion is None:
        raise SystemExit("the cpu preset estimates no part motion (config.motion.enabled); nothing to probe")
    ring = [i for i, p in enumerate(scene.primitives) if p.shape == "torus"]
    true_ring = MotionField(model, true_steps(fit.motion, scene, times, set(ring)))
    true_all = MotionField(model, true_steps(fit.motion, scene, times, set(range(len(scene.primitives)))))
    cols = ("crossfade", "translate only", "midway", "fit, no motion", "fit + part motion", "+ true ring turn",
            "+ true motion", "fit + graph")
    rows = []
    print("| mid-frame | " + " | ".join(cols) + " |\n" + "|---" * (len(cols) + 1) + "|")
    for f in range(len(times) - 1):
        tm = (times[f] + times[f + 1]) / 2
        truth = scene.render(cams, tm, SIZE, supersample=SS)["rgb"]
        mid_scene, _ = scene.midway(times[f], times[f + 1])
        with torch.no_grad():
            renders = [(gt["images"][f] + gt["images"][f + 1]) / 2, translate_only(scene, cams, times[f], times[f + 1]),
                       mid_scene.render(cams, tm, SIZE, supersample=SS)["rgb"],
                       *[render(m, cams, tm, SIZE, n_samples=fit.config.n_samples, occupancy=fit.occupancy,
                                normals=None)["rgb"].clamp(0, 1) for m in (model, fit.render_field(), true_ring,
                                                                            true_all)],
                       render(interp, cams, tm, SIZE, n_samples=fit.config.n_samples, normals=None)["rgb"].clamp(0, 1)]
        rows.append([psnr(r, truth) for r in renders])
        print(f"| {f} | " + " | ".join(f"{v:.2f}" for v in rows[-1]) + " |", flush=True)
    print("| mean | " + " | ".join(f"**{sum(c) / len(c):.2f}**" for c in zip(*rows)) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
