"""Render one animated Objaverse object for SV4D training, with the paper's curation rules (appendix A.1).

    blender -b -P train/blender/render_objaverse.py -- --input OBJ.glb --uid UID --out RENDERS \\
        [--annotations objaverse_annotations.json] [--size 576 --frames 21 --views 21]

Writes ``RENDERS/UID/{static,dynamic}/f{t:03d}_v{v:03d}.png`` (RGBA, transparent background) with ``cameras.json``
(per-view elevation / azimuth, camera distance, FoV) and ``RENDERS/UID/curation.json`` (every decision and its
numbers), or only ``curation.json`` with ``"accepted": false`` and the reason. Then encode the folder with
``python -m train.prepare_data --renders RENDERS --out DATA --encoders sv3d_p.safetensors``.

Curation (each threshold a flag):
  * licence: the annotation's licence must be in ``--licences`` (default: the CC licences that allow training);
  * too few frames: the animation must span at least ``--min-frames`` frames;
  * temporal step: starting from 1, the step between the F keyframes grows while consecutive keyframes of a small
    front render differ by less than ``--min-step-l1`` (mean L1 in [0, 1]) and F keyframes still fit;
  * motion: the largest L1 between any keyframe and the first must reach ``--min-motion`` (else: static object);
  * framing: the camera distance grows from 2.0 by 5 % until the object's bounding box fits inside the frame
    (with ``--margin``) in every keyframe from every orbit view.
Orbits: static = one elevation (uniform in [-5, 30] deg), evenly spaced azimuths from a random start; dynamic = the
same with smooth random offsets of elevation (+-10 deg) and azimuth (+-30 % of a step), as SV3D's dynamic orbits.
Camera convention = the library's (z up, looking at the origin, vertical FoV 33.9 deg).

Not run in this repository's CI (Blender is not installed there); ``tests/test_train.py`` checks that the file
compiles and that ``prepare_data --renders`` reads the layout it writes.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
from pathlib import Path

FOV_DEG = 33.9
ALLOWED_LICENCES = ("by", "by-sa", "cc0", "by-nd")  # Objaverse licence ids that allow training (not -nc)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="render_objaverse.py")
    p.add_argument("--input", required=True)
    p.add_argument("--uid", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--annotations", default=None, help="Objaverse annotations JSON (uid -> {license, ...})")
    p.add_argument("--licences", nargs="+", default=list(ALLOWED_LICENCES))
    p.add_argument("--size", type=int, default=576)
    p.add_argument("--frames", type=int, default=21)
    p.add_argument("--views", type=int, default=21)
    p.add_argument("--min-frames", type=int, default=21)
    p.add_argument("--min-step-l1", type=float, default=0.01)
    p.add_argument("--min-motion", type=float, default=0.02)
    p.add_argument("--margin", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--engine", default="BLENDER_EEVEE_NEXT", help="or CYCLES")
    return p.parse_args(argv)


def orbit_positions(distance: float, elevations, azimuths):
    return [(distance * math.cos(math.radians(e)) * math.cos(math.radians(a)),
             distance * math.cos(math.radians(e)) * math.sin(math.radians(a)),
             distance * math.sin(math.radians(e))) for e, a in zip(elevations, azimuths)]


def smooth_offsets(rng: random.Random, n: int, amplitude: float, width: float = 2.5) -> list[float]:
    """Periodic smooth random offsets (circular Gaussian blur of white noise), max |x| = amplitude."""
    noise = [rng.gauss(0.0, 1.0) for _ in range(n)]
    out = []
    for i in range(n):
        w = [math.exp(-0.5 * (min(abs(i - j), n - abs(i - j)) / width) ** 2) for j in range(n)]
        out.append(sum(a * b for a, b in zip(w, noise)))
    peak = max(abs(x) for x in out) or 1.0
    return [x / peak * amplitude for x in out]


def orbits(rng: random.Random, n_views: int) -> dict[str, tuple[list[float], list[float]]]:
    elev0, start = rng.uniform(-5.0, 30.0), rng.uniform(0.0, 360.0)
    azim = [(start + 360.0 * k / n_views) % 360.0 for k in range(n_views)]
    de, da = smooth_offsets(rng, n_views, 10.0), smooth_offsets(rng, n_views, 0.3 * 360.0 / n_views)
    return {"static": ([elev0] * n_views, azim),
            "dynamic": ([max(-10.0, min(40.0, elev0 + d)) for d in de], [(a + d) % 360.0 for a, d in zip(azim, da)])}


# ---- Blender ---------------------------------------------------------------------------------------------
def setup_scene(args, bpy):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=args.input)
    scene = bpy.context.scene
    scene.render.engine = args.engine
    scene.render.resolution_x = scene.render.resolution_y = args.size
    scene.render.film_transparent = True
    scene.render.image_settings.file_format, scene.render.image_settings.color_mode = "PNG", "RGBA"
    world = bpy.data.worlds.new("white")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs[0].default_value = (1, 1, 1, 1)
    scene.world = world
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    cam.data.sensor_fit, cam.data.angle = "VERTICAL", math.radians(FOV_DEG)
    scene.collection.objects.link(cam)
    scene.camera = cam
    track = cam.constraints.new("TRACK_TO")
    track.target = _origin_empty(bpy, scene)
    track.track_axis, track.up_axis = "TRACK_NEGATIVE_Z", "UP_Y"
    return scene, cam


def _origin_empty(bpy, scene):
    empty = bpy.data.objects.new("target", None)
    scene.collection.objects.link(empty)
    return empty


def animation_range(bpy) -> tuple[int, int]:
    ranges = [a.frame_range for a in bpy.data.actions]
    if not ranges:
        return 0, 0
    return int(min(r[0] for r in ranges)), int(max(r[1] for r in ranges))


def world_corners(bpy, scene, frame: int):
    from mathutils import Vector

    scene.frame_set(frame)
    pts = []
    for ob in scene.objects:
        if ob.type == "MESH":
            pts += [ob.matrix_world @ Vector(c) for c in ob.bound_box]
    return pts


def normalise(bpy, scene, frames: list[int]) -> None:
    """Centre the object at the origin and scale its bounding box over all keyframes to a unit-radius sphere."""
    from mathutils import Vector

    pts = [p for f in frames for p in world_corners(bpy, scene, f)]
    lo = Vector([min(p[i] for p in pts) for i in range(3)])
    hi = Vector([max(p[i] for p in pts) for i in range(3)])
    centre, radius = (lo + hi) / 2, max((hi - lo).length / 2, 1e-6)
    root = bpy.data.objects.new("root", None)
    scene.collection.objects.link(root)
    for ob in scene.objects:
        if ob.parent is None and ob.type not in ("CAMERA",) and ob.name not in ("root", "target"):
            ob.parent = root
    root.location, root.scale = -centre / radius, (1 / radius,) * 3


def fits(bpy, scene, cam, frames, positions, margin: float) -> bool:
    from bpy_extras.object_utils import world_to_camera_view

    for pos in positions:
        cam.location = pos
        for f in frames:
            for p in world_corners(bpy, scene, f):
                x, y, z = world_to_camera_view(scene, cam, p)
                if z <= 0 or not (margin <= x <= 1 - margin and margin <= y <= 1 - margin):
                    return False
    return True


def render_small(bpy, scene, cam, frame: int, path: Path):
    """A 64-px front render at ``frame`` -> flat list of RGB values in [0, 1] (composited on white)."""
    size = scene.render.resolution_x
    scene.render.resolution_x = scene.render.resolution_y = 64
    scene.frame_set(frame)
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    img = bpy.data.images.load(str(path))
    px = list(img.pixels)
    bpy.data.images.remove(img)
    scene.render.resolution_x = scene.render.resolution_y = size
    return [px[i + c] * px[i + 3] + (1 - px[i + 3]) for i in range(0, len(px), 4) for c in range(3)]


def l1(a, b) -> float:
    return sum(abs(x - y) for x, y in zip(a, b)) / max(1, len(a))


def curate(args, bpy, scene, cam, tmp: Path) -> dict:
    start, end = animation_range(bpy)
    info = {"frame_range": [start, end]}
    if end - start + 1 < args.min_frames:
        return {**info, "accepted": False, "reason": f"too few frames ({end - start + 1} < {args.min_frames})"}
    cam.location = orbit_positions(2.5, [0.0], [0.0])[0]
    max_step = max(1, (end - start) // max(1, args.frames - 1))
    step = 1
    while step < max_step:
        a, b = (render_small(bpy, scene, cam, start + k * step, tmp / f"s{k}.png") for k in (0, 1))
        if l1(a, b) >= args.min_step_l1:
            break
        step += 1
    keyframes = [start + k * step for k in range(args.frames)]
    first = render_small(bpy, scene, cam, keyframes[0], tmp / "k0.png")
    motion = max(l1(first, render_small(bpy, scene, cam, f, tmp / "k.png")) for f in keyframes[1::4] + keyframes[-1:])
    info.update(step=step, keyframes=keyframes, max_l1_to_first=motion)
    if motion < args.min_motion:
        return {**info, "accepted": False, "reason": f"too little motion (max L1 {motion:.4f} < {args.min_motion})"}
    return {**info, "accepted": True}


def main(argv: list[str]) -> int:
    args = parse(argv)
    import bpy  # noqa: PLC0415  (only inside Blender)

    out = Path(args.out) / args.uid
    out.mkdir(parents=True, exist_ok=True)
    if args.annotations:
        licence = json.loads(Path(args.annotations).read_text()).get(args.uid, {}).get("license", "unknown")
        if licence not in args.licences:
            (out / "curation.json").write_text(json.dumps({"accepted": False, "reason": f"licence {licence!r}"}))
            return 0
    scene, cam = setup_scene(args, bpy)
    start, end = animation_range(bpy)
    normalise(bpy, scene, list(range(start, end + 1, max(1, (end - start) // 20 or 1))))
    info = curate(args, bpy, scene, cam, out)
    rng = random.Random(f"{args.seed}:{args.uid}")
    if info["accepted"]:
        for name, (elev, azim) in orbits(rng, args.views).items():
            distance = 2.0
            while not fits(bpy, scene, cam, info["keyframes"], orbit_positions(distance, elev, azim), args.margin):
                distance *= 1.05
            folder = out / name
            folder.mkdir(exist_ok=True)
            for v, pos in enumerate(orbit_positions(distance, elev, azim)):
                cam.location = pos
                for t, frame in enumerate(info["keyframes"]):
                    scene.frame_set(frame)
                    scene.render.filepath = str(folder / f"f{t:03d}_v{v:03d}.png")
                    bpy.ops.render.render(write_still=True)
            (folder / "cameras.json").write_text(json.dumps({"elevation_deg": elev, "azimuth_deg": azim,
                                                             "distance": distance, "fov_deg": FOV_DEG,
                                                             "n_frames": args.frames, "size": args.size}))
            info[f"{name}_distance"] = distance
    (out / "curation.json").write_text(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []))
