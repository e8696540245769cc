"""Speed on a shared machine: each workload alone, then beside a busy copy of itself, as a slowdown ratio.

    python benchmarks/contention.py [--before WORKTREE] [--official GM] [--skip-demo] [--skip-unet]

Workloads (each measured in a fresh subprocess; "busy" is a second copy of the same command started 3 s earlier and
killed when the measured one ends):
  demo --fast (now)      ``sv4d demo --fast`` of this checkout: its thread policy (physical cores, idle OpenMP
                         threads sleep: OMP_WAIT_POLICY=PASSIVE; sv4d_models.threads)
  demo --fast (now, OMP_WAIT_POLICY=ACTIVE)   the same with idle threads spinning (what the policy avoids)
  demo --fast (before)   the same command from ``--before`` (a checkout of an earlier commit, e.g. a git worktree),
                         which had no thread policy: the comparison that shows what the policy changes
  UNet mid, ours / official   ``benchmarks/unet.py --config mid`` rows (ours and the official UNet, same weights),
                         with the OpenMP default and with OMP_WAIT_POLICY=PASSIVE (the CLI's policy)

Printed per workload: wall seconds alone and contended, the slowdown (contended / alone) and the CPU seconds of the
measured process (user + system), which grows when threads spin instead of working. Goal (issue 22): the project's
slowdown no worse than 2x and no worse than the official UNet's.
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measure(cmd: list[str], env: dict, busy: bool, cwd: Path) -> dict:
    """Wall and CPU seconds of ``cmd`` (alone, or beside a copy of itself); its stdout for parsing."""
    helper = None
    if busy:
        helper = subprocess.Popen(_with_out(cmd, "busy"), env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(3.0)
    cpu0, t0 = _cpu_children(), time.perf_counter()
    done = subprocess.run(_with_out(cmd, "measured"), env=env, cwd=cwd, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, _cpu_children() - cpu0
    if helper is not None:
        os.killpg(helper.pid, 9)
        helper.wait()
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return {"wall": wall, "cpu": cpu, "stdout": done.stdout}


def _with_out(cmd: list[str], tag: str) -> list[str]:
    return [c.replace("{tag}", tag) for c in cmd]


def report(name: str, alone: float, busy: float, cpu_alone: float | None = None, cpu_busy: float | None = None):
    cpu = f"   CPU {cpu_alone:6.1f} s -> {cpu_busy:6.1f} s" if cpu_alone is not None else ""
    print(f"{name:34} alone {alone:7.1f} s   beside a copy {busy:7.1f} s   slowdown {busy / alone:5.2f}x{cpu}",
          flush=True)


def demo_rows(a, tmp: Path) -> None:
    variants = [("now", ROOT, {}), ("now, OMP_WAIT_POLICY=ACTIVE", ROOT, {"OMP_WAIT_POLICY": "ACTIVE"})]
    variants += [("before", Path(a.before).resolve(), {})] if a.before else []
    for index, (slug, tree, extra) in enumerate(variants):
        name = f"demo --fast ({slug})"
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "SV4D_THREADS")}
        env.update(PYTHONPATH=str(tree), **extra)
        slug = f"v{index}"
        cmd = [sys.executable, "-m", "sv4d_models", "demo", "--fast", "--quiet", "--out", str(tmp / slug / "{tag}")]
        alone = measure(cmd, env, False, tmp)
        for tag in ("measured", "busy"):
            subprocess.run(["rm", "-rf", str(tmp / slug / tag)])
        busy = measure(cmd, env, True, tmp)
        report(name, alone["wall"], busy["wall"], alone["cpu"], busy["cpu"])


def unet_rows(a) -> None:
    for policy in ("default", "PASSIVE"):
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
        if policy == "PASSIVE":
            env["OMP_WAIT_POLICY"] = "PASSIVE"
        cmd = [sys.executable, str(ROOT / "benchmarks" / "unet.py"), "--config", "mid", "--repeat", str(a.repeat),
               "--no-naive", "--threads", str(a.threads)] + (["--official", a.official] if a.official else [])
        alone, busy = measure(cmd, env, False, ROOT), measure(cmd, env, True, ROOT)
        for row in ("official (peer)", "ours"):
            t_alone, t_busy = _best(alone["stdout"], row), _best(busy["stdout"], row)
            if t_alone is not None and t_busy is not None:
                report(f"UNet mid, {row.split()[0]}, OpenMP {policy}", t_alone, t_busy)


def _best(stdout: str, row: str) -> float | None:
    m = re.search(rf"^{re.escape(row)}\s+([\d.]+)", stdout, re.M)
    return float(m.group(1)) if m else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", help="a checkout of an earlier commit: its demo --fast is measured the same way")
    ap.add_argument("--official", help="Stability-AI/generative-models checkout for the official UNet rows")
    ap.add_argument("--threads", type=int, default=2, help="threads of the UNet rows (default 2)")
    ap.add_argument("--repeat", type=int, default=1, help="timed UNet forwards per row (default 1)")
    ap.add_argument("--skip-demo", action="store_true")
    ap.add_argument("--skip-unet", action="store_true")
    a = ap.parse_args()
    print(f"{os.cpu_count()} logical CPUs; load average before: {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="sv4d_contention_") as tmp:
        if not a.skip_demo:
            demo_rows(a, Path(tmp))
        if not a.skip_unet:
            unet_rows(a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
