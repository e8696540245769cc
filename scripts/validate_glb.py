"""Dev-only: validate exported GLBs with the Khronos glTF validator (npm ``gltf-validator``; needs node + npm).

    python scripts/validate_glb.py                 # builds switch + morph GLBs from the synthetic scene
    python scripts/validate_glb.py a.glb b.glb     # validates given files
    python scripts/validate_glb.py --playback      # also plays them with three.js' AnimationMixer (node)

The npm package is a library without a CLI, so it is installed once into ``--npm-prefix`` and driven by a small
inline node script. Exit status 1 if any file has validation errors. Not used by the test suite (needs network
once and node).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_NODE = r"""
const fs = require('fs'); const v = require('gltf-validator');
(async () => { const out = [];
  for (const p of process.argv.slice(1)) {
    const r = await v.validateBytes(new Uint8Array(fs.readFileSync(p)));
    out.push({file: p, errors: r.issues.numErrors, warnings: r.issues.numWarnings, infos: r.issues.numInfos,
              hints: r.issues.numHints, validator: r.validatorVersion,
              messages: r.issues.messages.slice(0, 10).map(m => `${m.code}: ${m.message} @ ${m.pointer}`)});
  }
  console.log(JSON.stringify(out)); })();
"""


def build_samples(folder: Path) -> list[Path]:
    import numpy as np

    from sv4d_models.export.glb import write_glb
    from sv4d_models.export.mesh import MeshConfig, MeshSequence, extract_mesh_sequence
    from sv4d_models.synthetic import SyntheticScene

    scene = SyntheticScene.make("nonrigid", seed=0)
    cfg = MeshConfig(resolution=64, threshold=scene.iso_density, aabb_half_size=0.62)
    seq = extract_mesh_sequence(scene.density_fn, scene.color_fn, np.linspace(0.0, 1.0, 5), cfg)
    switch = write_glb(seq, folder / "switch.glb", overwrite=True)
    base_v, base_f, base_c = seq.vertices[0], seq.faces[0], seq.colors[0]
    moving = [base_v + np.float32([0.0, 0.0, 0.05 * i]) for i in range(5)]
    morph_seq = MeshSequence(moving, [base_f] * 5, [base_c] * 5, seq.times)
    morph = write_glb(morph_seq, folder / "morph.glb", mode="morph", overwrite=True)
    return [switch, morph]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--playback", action="store_true", help="also play the clips with three.js in node")
    parser.add_argument("--npm-prefix", type=Path, default=Path.home() / ".cache" / "sv4d-gltf-validator")
    args = parser.parse_args()
    modules = args.npm_prefix / "node_modules"
    for package in ["gltf-validator"] + (["three"] if args.playback else []):
        if not (modules / package).exists():
            subprocess.run(["npm", "install", "--prefix", str(args.npm_prefix), package], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        files = args.files or build_samples(Path(tmp))
        res = subprocess.run(["node", "-e", _NODE, *map(str, files)], check=True, capture_output=True, text=True,
                             env={**os.environ, "NODE_PATH": str(modules)})
        if args.playback:  # ESM imports resolve from the script's folder, so run a copy inside the npm prefix
            player = args.npm_prefix / "glb_playback.mjs"
            player.write_text((Path(__file__).parent / "glb_playback.mjs").read_text())
            for f in files:
                play = subprocess.run(["node", str(player), str(f)], check=True, capture_output=True, text=True)
                print(f"three.js playback {Path(f).name}: {play.stdout.strip()}")
    reports = json.loads(res.stdout)
    for r in reports:
        print(f"{Path(r['file']).name}: {r['errors']} errors, {r['warnings']} warnings, {r['infos']} infos, "
              f"{r['hints']} hints (gltf-validator {r['validator']})")
        for m in r["messages"]:
            print("   ", m)
    return 1 if any(r["errors"] for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
