"""How many CPU threads the library's own work uses, and how idle threads wait.

The default is the number of physical cores this process may run on (its CPU affinity, SMT siblings counted once):
hyper-threads share one core's arithmetic units, and more threads than cores only adds synchronisation. ``--threads N``
or ``SV4D_THREADS=N`` choose another number. On a shared machine fewer threads than cores keep a job from stalling:
every parallel region waits for its slowest thread, and a thread descheduled by another process stalls the rest.

Idle OpenMP threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``, set before torch loads its OpenMP
runtime unless the user set it): spinning threads burn the CPU time other processes (and our own other threads)
need, which is what made a busy machine slow the demo down five-fold. ``benchmarks/contention.py`` measures it.
"""
from __future__ import annotations

import os
from pathlib import Path

ENV = "SV4D_THREADS"


def quiet_waiting() -> None:
    """Idle OpenMP threads sleep (only effective before torch is imported; a user's own setting is kept)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def usable_cpus() -> list[int]:
    """The logical CPUs this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        return list(range(os.cpu_count() or 1))


def physical_cores(cpus: list[int] | None = None) -> int:
    """Physical cores among ``cpus`` (Linux: SMT siblings read from sysfs; elsewhere every logical CPU counts)."""
    cpus = usable_cpus() if cpus is None else cpus
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topology / "physical_package_id").read_text().strip(), (topology / "core_id").read_text().strip()))
        except OSError:
            cores.add(("cpu", str(cpu)))
    return max(1, len(cores))


def resolve_threads(requested: int | None = None) -> tuple[int, str]:
    """(threads, where the number came from): ``requested``, else ``$SV4D_THREADS``, else the physical cores."""
    from .validate import check_number

    if requested is not None:
        return int(check_number(requested, "threads", 1, 1024, "CPU threads", integer=True)), "--threads"
    env = os.environ.get(ENV, "").strip()
    if env:
        try:
            value = int(env)
        except ValueError:
            raise ValueError(f"{ENV}={env!r} must be a whole number of threads, e.g. {ENV}=2") from None
        return int(check_number(value, ENV, 1, 1024, "CPU threads", integer=True)), ENV
    return physical_cores(), "physical cores"


def apply_threads(n: int) -> None:
    """Use ``n`` intra-op threads (torch's inter-op pool is left alone: our graphs run op after op)."""
    import torch

    torch.set_num_threads(n)


__all__ = ["ENV", "quiet_waiting", "usable_cpus", "physical_cores", "resolve_threads", "apply_threads"]
