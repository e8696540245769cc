"""Peak memory of this process, read one way for ``sv4d batch``'s report and the benchmarks.

CPU: the resident-set high-water mark ``VmHWM`` from ``/proc/self/status`` (Linux; unlike ``ru_maxrss`` it starts
afresh at exec, so a parent's memory does not leak into a child's measurement, and writing 5 to
``/proc/self/clear_refs`` resets it to the current RSS); elsewhere ``ru_maxrss`` (bytes on macOS, KiB on Linux).
CUDA: ``torch.cuda.max_memory_allocated`` (tensors only, not the caching allocator's reserve).
"""
from __future__ import annotations

import sys
from pathlib import Path


def peak_rss_bytes() -> int:
    """The process's peak resident memory in bytes (since exec, or since the last ``reset_peak_rss``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def reset_peak_rss() -> bool:
    """Restart the peak at the current RSS (Linux); False where the platform cannot (the peak then runs on)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """Peak memory over a stretch of work (``start`` ... ``peak``): CUDA allocations when ``device`` is a CUDA
    device (or None with CUDA present), else the process's resident set."""

    def __init__(self, device: str | None = None):
        import torch

        self.cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
        self.device = device

    def start(self) -> None:
        import torch

        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            reset_peak_rss()

    def peak(self) -> tuple[float, str]:
        """(MiB, what was measured: ``"cuda allocated"`` / ``"process peak RSS"``)."""
        import torch

        if self.cuda:
            return round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1), "cuda allocated"
        return round(peak_rss_bytes() / 2**20, 1), "process peak RSS"


__all__ = ["peak_rss_bytes", "reset_peak_rss", "PeakMemory"]
