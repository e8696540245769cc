"""UNet forward on CPU against Stability's official SV4D UNet, its peer: time and working memory per forward.

    python benchmarks/unet.py --official GM [--config mid] [--repeat 3] [--threads 2] [--dtype fp32] [--compile]
    python benchmarks/unet.py [--config mid]   # no checkout: our rows only, no peer and no ratios

GM is a Stability-AI/generative-models checkout (its ``sgm`` package is imported; it needs omegaconf, einops and
pytorch_lightning). Config, weights and inputs come from the project's shared tool ``bench_vs_official.py``
(``../shared/tools/``, or ``--tool``), imported rather than duplicated: its size presets (``mid``: SV4D's structure
at model_channels 64, 80.9 M parameters, 8 views x 5 frames of 32x32 latents, CFG batch 2; ``fixture_a``: the parity
fixture's tiny size, a quick smoke test), its prep (the official UNet built by sgm's ``instantiate_from_config``,
every parameter re-randomised with a fixed seed, inputs in the official call layout) and its ``/proc`` helpers.
Without ``--official`` the same seeded draw is made on our model (the parameter names are the official ones).

Rows, each in its own subprocess on the same weights and inputs:
  official (peer)         ``sgm...SpatialUNetModelWithTime``; its CPU attention is already
                          ``scaled_dot_product_attention``: the row every ratio is against
  ours                    ``sv4d_models.build_unet`` as shipped
  ours, naive attention   secondary: our explicit softmax(QK^T)V reference formulation
  ours, torch.compile     only with ``--compile`` (first call, which compiles, reported on its own)

Time: best and median of ``--repeat`` forwards under ``torch.inference_mode`` after one warm-up forward.
Memory: with model and inputs loaded the heap is trimmed and the resident size read (the baseline); before every
forward (warm-up included) the kernel's RSS high-water mark is reset, so each figure is that forward's own peak above
the baseline. A flat series means nothing accumulates from forward to forward. The ratio uses the largest figure of
each side. bf16 (``--dtype bf16``): weights and inputs in bfloat16 under CPU autocast, GroupNorm parameters float32
(the tool's recipe). Exit status 1 when a row fails or a float32 output differs from the official one by > 1e-3.
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TOOL = ROOT.parent / "shared" / "tools" / "bench_vs_official.py"
ROWS = {"official": "official (peer)", "ours": "ours", "naive": "ours, naive attention",
        "compiled": "ours, torch.compile"}
FP32_TOLERANCE = 1e-3


def load_tool(path: str | Path):
    """The shared ``bench_vs_official.py`` as a module (its helpers need no torch at import)."""
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"{path} not found: pass --tool PATH/bench_vs_official.py (it lives in the shared folder's "
                         "tools/, beside the checkout)")
    spec = importlib.util.spec_from_file_location("bench_vs_official", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- subprocess side ------------------------------------------------------------------------------------------
def prep_ours(tool, spec: dict) -> None:
    """The tool's prep without an official checkout: the same seeded draw on our model, the same inputs."""
    import torch

    tool.set_threads(spec["threads"])
    model = tool.build_project(str(ROOT), spec["params"])
    tool.randomise(model, spec["layout"]["seed"])
    work = Path(spec["work"])
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, work / "weights.pt")
    torch.save(tool.make_inputs(spec["params"], spec["layout"]), work / "inputs.pt")
    info = {"weights": f"our model, tool's seeded draw (seed {spec['layout']['seed']}), no official checkout",
            "n_params": sum(p.numel() for p in model.parameters())}
    (work / "prep.json").write_text(json.dumps(info))


def build_row(tool, row: str, spec: dict):
    if row == "official":
        return tool.build_official(spec["official"], spec["params"])
    model = tool.build_project(str(ROOT), spec["params"])
    if row == "naive":
        from sv4d_models import set_attention_backend

        set_attention_backend(model, "naive")
    if row == "compiled":
        from sv4d_models.unet import compile_unet

        compile_unet(model)
    return model


def worker(tool, spec: dict) -> dict:
    """One row in this process: build, load, cast, then warm-up + ``repeat`` forwards, each with its own RSS peak."""
    import torch

    tool.set_threads(spec["threads"])
    work, row = Path(spec["work"]), spec["row"]
    model = build_row(tool, row, spec)
    model.load_state_dict(torch.load(work / "weights.pt", weights_only=True), strict=True)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[spec["dtype"]]
    model = model.eval().to(dtype)
    autocast = dtype is torch.bfloat16
    if autocast:  # the official fp16 recipe evaluates GroupNorm in float32
        for m in model.modules():
            if isinstance(m, torch.nn.GroupNorm):
                m.float()
    inp = torch.load(work / "inputs.pt", weights_only=True)
    frames = int(inp.pop("num_video_frames").reshape(-1)[0])
    inp = {k: v.to(dtype) if k != "timesteps" and v.is_floating_point() else v for k, v in inp.items()}

    def forward():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            return model(inp["x"], inp["timesteps"], inp["context"], inp["y"], cond_view=inp["cond_view"],
                         cond_motion=inp["cond_motion"], num_video_frames=frames,
                         image_only_indicator=inp["image_only_indicator"])

    gc.collect()
    tool.malloc_trim()
    baseline = tool.proc_status()["VmRSS"]
    peaks, times = [], []
    for i in range(spec["repeat"] + 1):  # forward 0 is the warm-up (for ``compiled``: the compilation)
        hwm_reset = tool.reset_hwm()
        t0 = time.perf_counter()
        out = forward()
        times.append(time.perf_counter() - t0)
        peaks.append(tool.proc_status()["VmHWM"] - baseline)
        if i < spec["repeat"]:
            del out
    torch.save(out.float(), work / f"out_{row}.pt")
    return {"times": times, "peaks_mb": peaks, "baseline_mb": baseline, "hwm_reset": hwm_reset,
            "load": os.getloadavg()[0], "n_params": sum(p.numel() for p in model.parameters()),
            "finite": bool(torch.isfinite(out).all())}


# ---- parent ---------------------------------------------------------------------------------------------------
def run_worker(row: str, base: dict, a) -> dict:
    """Run one row in a fresh interpreter (its own RSS), with the thread count pinned in the environment too."""
    spec = dict(base, row=row)
    env = dict(os.environ, **{k: str(a.threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_worker", json.dumps(spec)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=a.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {a.timeout} s"}
    lines = p.stdout.strip().splitlines()
    if p.returncode or not lines:
        return {"error": f"exit {p.returncode}: {(p.stderr or p.stdout)[-1500:]}"}
    return json.loads(lines[-1])


def prepare(tool, base: dict, a) -> dict:
    work = Path(base["work"])
    if base["official"]:
        rc, log = tool.run_sub(sys.executable, base, "--_prep", a.timeout, False, a.threads)
    else:
        spec = dict(base, row="prep")
        env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
        p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--_prep", json.dumps(spec)],
                           capture_output=True, text=True, env=env, timeout=a.timeout)
        rc, log = p.returncode, p.stdout + p.stderr
    if rc or not (work / "prep.json").is_file():
        raise SystemExit(f"prep failed (exit {rc}):\n{log[-3000:]}")
    return json.loads((work / "prep.json").read_text())


def max_diff(work: Path, row: str) -> float | None:
    import torch

    ref, out = work / "out_official.pt", work / f"out_{row}.pt"
    if row == "official" or not ref.is_file() or not out.is_file():
        return None
    a, b = (torch.load(f, weights_only=True) for f in (ref, out))
    return float("inf") if a.shape != b.shape else (a - b).abs().max().item()


def table(results: dict, work: Path) -> list[str]:
    """Rows of the table; returns the failures."""
    failures = []
    print(f"{'':23} {'best s':>8} {'median s':>9} {'warm-up s':>10}   peak +MB per forward (warm-up, 1..N)"
          f"   {'max |diff|':>10}")
    for row, r in results.items():
        if "error" in r:
            print(f"{ROWS[row]:23} failed: {r['error']}")
            failures.append(f"{row} failed")
            continue
        timed = r["times"][1:] or r["times"]
        r["best_s"], r["median_s"], r["peak_mb"] = min(timed), statistics.median(timed), max(r["peaks_mb"])
        diff = r["max_diff"] = max_diff(work, row)
        if diff is not None and r["dtype"] == "fp32" and not diff <= FP32_TOLERANCE:
            failures.append(f"{row} differs from official by {diff:.1e} > {FP32_TOLERANCE:g}")
        if not r["finite"]:
            failures.append(f"{row} output not finite")
        peaks = " ".join(f"{m:.0f}" for m in r["peaks_mb"])
        print(f"{ROWS[row]:23} {r['best_s']:8.3f} {r['median_s']:9.3f} {r['times'][0]:10.3f}   {peaks:36}"
              f"   {'-' if diff is None else f'{diff:.1e}':>10}")
    return failures


def ratios(results: dict) -> None:
    peer = results.get("official")
    if not peer or "error" in peer:
        print("no official peer measured: pass --official <generative-models checkout> for the ratios")
        return
    for row in ("ours", "naive", "compiled"):
        r = results.get(row)
        if r and "error" not in r:
            print(f"{ROWS[row]} vs official: {peer['best_s'] / r['best_s']:.2f}x faster (best; median "
                  f"{peer['median_s'] / r['median_s']:.2f}x), {100 * r['peak_mb'] / peer['peak_mb']:.0f}% of its "
                  f"memory ({r['peak_mb']:.0f} vs {peer['peak_mb']:.0f} MB, largest per-forward peak)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", help="Stability-AI/generative-models checkout (its sgm/ is imported): the peer")
    ap.add_argument("--config", default="mid", help="the tool's preset (mid, fixture_a) or a yaml (default mid)")
    ap.add_argument("--repeat", type=int, default=3, help="timed forwards after the warm-up (default 3)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--no-naive", action="store_true", help="skip the naive-attention row")
    ap.add_argument("--compile", action="store_true", help="add a torch.compile row (needs a C++ compiler)")
    ap.add_argument("--tool", default=os.environ.get("SV4D_BENCH_TOOL", str(DEFAULT_TOOL)),
                    help=f"bench_vs_official.py (default {DEFAULT_TOOL}; env SV4D_BENCH_TOOL)")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per subprocess")
    a = ap.parse_args()
    if a.official and not (Path(a.official) / "sgm").is_dir():
        ap.error(f"--official {a.official!r} has no sgm/ folder")
    tool = load_tool(a.tool)
    official = str(Path(a.official).resolve()) if a.official else None
    params, layout, desc, notes = tool.resolve_config(a.config, official or str(ROOT / "no-official-checkout"))
    tool.check_config(params, layout)
    rows = (["official"] if official else []) + ["ours"] + ([] if a.no_naive else ["naive"])
    rows += ["compiled"] if a.compile else []
    with tempfile.TemporaryDirectory(prefix="sv4d_unet_bench_") as tmp:
        base = dict(official=official, project=str(ROOT), params=params, layout=layout, threads=a.threads,
                    repeat=a.repeat, work=tmp, dtype=a.dtype, tool=str(Path(a.tool).resolve()))
        print(f"config   {desc}")
        for n in notes:
            print(f"note     {n}")
        prep = prepare(tool, base, a)
        print(f"weights  {prep['weights']}; {prep['n_params'] / 1e6:.2f} M parameters; {a.dtype}, {a.threads} threads, "
              f"{a.repeat} timed forwards; load average {os.getloadavg()[0]:.1f}")
        results = {}
        for row in rows:
            results[row] = dict(run_worker(row, base, a), dtype=a.dtype)
        print()
        failures = table(results, Path(tmp))
        print("peak +MB: the forward's RSS high-water mark above the loaded process (weights and inputs excluded),"
              " reset before every forward")
        if any(r.get("hwm_reset") is False for r in results.values()):
            print("note     /proc/self/clear_refs not writable: peaks are cumulative over the forwards")
        print()
        ratios(results)
    if failures:
        print("FAIL: " + "; ".join(failures))
    return 1 if failures else 0


def _subprocess_entry(mode: str, spec: dict) -> None:
    tool = load_tool(spec["tool"])
    if mode == "--_prep":
        prep_ours(tool, spec)
    else:
        print(json.dumps(worker(tool, spec)))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in ("--_prep", "--_worker"):
        _subprocess_entry(sys.argv[1], json.loads(sys.argv[2]))
        sys.exit(0)
    sys.exit(main())
