"""Loading a full-size checkpoint: seconds and peak memory of the pack's loaders next to core ComfyUI's, on the CPU.

    python benchmarks/load.py [--dir /tmp/sv4d_load_bench] [--only node,library,library-unet,core-sv3d] [--repeat 3]

Writes (once; reused while the sizes match) full-size files in the official layout with random float16 values: every
key and shape of ``tests/data/reference/{sv4d,sv3d_p}_*_keys.json`` (``sv4d.safetensors`` ~5.6 GiB,
``sv3d_p.safetensors`` ~4.3 GiB; the VAE encoder copies of embedders 4 and 5 equal embedder 1's, as in a file whose
copies are the same network). Then measures, each in a fresh process, with the file in the page cache (read just
before; the other file dropped from it; the free memory written once, see ``touch_free_memory``), rows interleaved
``--repeat`` times, ComfyUI's default dtypes on a CPU (``--cpu``: UNet float32, CLIP vision float16, VAE float32):

* ``node``: the SV4D Checkpoint Loader (``nodes.loaders.load_checkpoint``: MODEL + CLIP_VISION + VAE) in ComfyUI;
* ``library``: ``load_engine_models`` (UNet + CLIP + VAE encoders + decoder, float32);
* ``library-unet``: ``load_unet`` alone (float32);
* ``core-sv3d``: core ``ImageOnlyCheckpointLoader`` (``comfy.sd.load_checkpoint_guess_config``) on the SV3D_p file.

Per row: seconds, peak RSS (``VmHWM``), the bytes of every parameter and buffer the loaded objects hold, the ratio
peak / loaded, peak RSS before loading (imports; open_clip's included for the library rows), and seconds per loaded GiB. ComfyUI comes from ``COMFYUI_PATH``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "tests" / "data" / "reference"
GIB = float(1 << 30)
ROWS = ("node", "library", "library-unet", "core-sv3d")
VAE_COPY, VAE_TWINS = "conditioner.embedders.1.encoder.", ("conditioner.embedders.4.encoder.", "conditioner.embedders.5.encoder.")


def official_keys(kind: str) -> dict[str, list[int]]:
    keys = {}
    for part in ("unet", "conditioner", "first_stage_model"):
        keys.update({k: v["shape"] for k, v in json.loads((REFERENCE / f"{kind}_{part}_keys.json").read_text())["keys"].items()})
    return keys


def write_random_file(kind: str, path: Path) -> Path:
    """The official key layout of ``kind`` with random float16 values, written tensor by tensor (safetensors format:
    8-byte little-endian header length, JSON header, then the data in header order)."""
    shapes = official_keys(kind)
    header, offset = {}, 0
    for key, shape in shapes.items():
        size = 2 * math.prod(shape)
        header[key] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    if path.is_file() and path.stat().st_size == 8 + len(blob) + offset:
        return path
    g = torch.Generator().manual_seed(0)
    tmp = path.with_suffix(".partial")
    copies: dict[str, torch.Tensor] = {}
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob)
        for key, shape in shapes.items():
            twin = next((VAE_COPY + key[len(t):] for t in VAE_TWINS if key.startswith(t)), None)
            if twin is not None and twin in copies:
                t = copies[twin]
            else:
                t = (torch.rand(shape, generator=g) * 0.04 - 0.02).half()
                if key.startswith(VAE_COPY):
                    copies[key] = t
            f.write(t.numpy().tobytes())
    os.replace(tmp, path)
    return path


def touch_free_memory(keep_gib: float = 3.0) -> None:
    """Write to all but ``keep_gib`` of the available memory once, in a child process that then exits.

    On a virtual machine, the first write to a guest page that was never used costs a trip to the hypervisor (seen
    here: 2-3 s per GiB, against ~0.1 s per GiB for memory used before), so whichever row first reaches memory no
    earlier row touched would pay for it. Doing it for every row before its measurement takes that out."""
    avail = next(int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                 if line.startswith("MemAvailable:"))
    chunks = max(0, int((avail - keep_gib * GIB) // (1 << 28)))
    subprocess.run([sys.executable, "-c", f"import torch; x = [torch.ones(1 << 26) for _ in range({chunks})]"],
                   check=True)


def nbytes(*modules) -> int:
    seen, total = set(), 0
    for m in modules:
        for t in [*m.parameters(), *m.buffers()]:
            if id(t) not in seen:
                seen.add(id(t))
                total += t.numel() * t.element_size()
    return total


def comfy_cpu():
    """ComfyUI in this process on the CPU (``tests/comfyui_env.py``, the one place that sets it up)."""
    if not os.environ.get("COMFYUI_PATH"):
        raise SystemExit("set COMFYUI_PATH to a ComfyUI checkout (bash ../shared/comfyui/install.sh .comfyui)")
    import comfyui_env

    comfyui_env.comfy_in_process()
    return comfyui_env


def measure(row: str, path: Path) -> dict:
    """Load in this process; the row's numbers."""
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "tests"))
    from sv4d_models.memory import peak_rss_bytes

    if row in ("node", "core-sv3d"):
        env = comfy_cpu()
    if row == "node":
        loaders = env.pack_module("nodes.loaders")
        env.add_checkpoint_folder(path.parent)
    elif row not in ("node", "core-sv3d"):
        import open_clip  # noqa: F401  (imported before the clock starts, as ComfyUI's modules are for the others)

        from sv4d_models import load_unet
        from sv4d_models.pipeline import Placement, load_engine_models
    before = peak_rss_bytes()
    t = time.perf_counter()
    if row == "node":
        model, clip, vae = loaders.load_checkpoint(path.name)[:3]
        held = nbytes(model.model.diffusion_model, clip.model, vae.first_stage_model,
                      *(v.first_stage_model for v in getattr(vae, "sv4d_role_vaes", {}).values() if v is not vae))
    elif row == "core-sv3d":
        model, clip, vae = env.core_image_only_checkpoint(path)
        held = nbytes(model.model.diffusion_model, clip.model, vae.first_stage_model)
    elif row == "library":
        m = load_engine_models(path, placement=Placement(torch.device("cpu"), torch.float32))
        held = nbytes(m.unet, m.clip, *m.vae.values(), m.decoder)
    else:
        held = nbytes(load_unet(path, dtype=torch.float32))
    seconds = time.perf_counter() - t
    peak = peak_rss_bytes()
    return {"row": row, "file": path.name, "seconds": round(seconds, 2), "peak_rss_gib": round(peak / GIB, 2),
            "loaded_gib": round(held / GIB, 2), "peak_over_loaded": round(peak / held, 3),
            "rss_before_gib": round(before / GIB, 2), "s_per_gib": round(seconds / (held / GIB), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/sv4d_load_bench"))
    parser.add_argument("--only", default=",".join(ROWS), help="comma-separated rows: " + ", ".join(ROWS))
    parser.add_argument("--repeat", type=int, default=3, help="runs per row (the table shows medians)")
    parser.add_argument("--measure", choices=ROWS, help=argparse.SUPPRESS)  # one row, in this process
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.measure:
        print(json.dumps(measure(a.measure, a.file)))
        return
    a.dir.mkdir(parents=True, exist_ok=True)
    rows = [r for r in a.only.split(",") if r]
    files = {}
    for kind in sorted({"sv3d_p" if r == "core-sv3d" else "sv4d" for r in rows}):
        t = time.perf_counter()
        files[kind] = write_random_file(kind, a.dir / f"{kind}.safetensors")
        print(f"{files[kind]}: {files[kind].stat().st_size / GIB:.2f} GiB ({time.perf_counter() - t:.0f} s)", flush=True)
    runs: dict[str, list[dict]] = {row: [] for row in rows}
    for _ in range(a.repeat):  # rows interleaved, so a slow spell of the machine hits every row alike
        for row in rows:
            path = files["sv3d_p" if row == "core-sv3d" else "sv4d"]
            touch_free_memory()
            for other in files.values():  # the other file out of the page cache, this one in
                if other != path:
                    fd = os.open(other, os.O_RDONLY)
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    os.close(fd)
            with open(path, "rb") as f:
                while f.read(1 << 26):
                    pass
            env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
            out = subprocess.run([sys.executable, __file__, "--measure", row, "--file", str(path)], env=env,
                                 capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"{row} failed:\n{out.stderr[-3000:]}")
            runs[row].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(runs[row][-1]), flush=True)
    print(f"\nmedian of {a.repeat} runs per row (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '2')}, file in "
          "the page cache):")
    print(f"{'row':14} {'file':18} {'seconds':>8} {'peak RSS GiB':>13} {'loaded GiB':>11} {'peak/loaded':>12} "
          f"{'s per GiB':>10} {'RSS before':>11}")
    for row, results in runs.items():
        r = {k: statistics.median(x[k] for x in results) for k in ("seconds", "peak_rss_gib", "loaded_gib",
                                                                     "peak_over_loaded", "s_per_gib", "rss_before_gib")}
        print(f"{row:14} {results[0]['file']:18} {r['seconds']:8.1f} {r['peak_rss_gib']:13.2f} {r['loaded_gib']:11.2f} "
              f"{r['peak_over_loaded']:11.2f}x {r['s_per_gib']:10.2f} {r['rss_before_gib']:11.2f}")


if __name__ == "__main__":
    main()
