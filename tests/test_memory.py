"""sv4d_models.memory: the one reading of peak memory (sv4d batch's report, the benchmarks)."""
import subprocess
import sys

import pytest

SCRIPT = """
import json, torch
from sv4d_models.memory import PeakMemory, peak_rss_bytes, reset_peak_rss
m = PeakMemory("cpu")
m.start()
quiet = m.peak()[0]
x = torch.ones(64 << 20, dtype=torch.uint8) + 1  # touches 128 MiB (the ones and the sum)
big = m.peak()
del x
reset = reset_peak_rss()
after = peak_rss_bytes() / 2**20
print(json.dumps({"quiet": quiet, "big": big, "reset": reset, "after": after}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM and its reset are Linux's")
def test_peak_memory_sees_an_allocation_and_restarts_after_reset():
    import json

    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["big"][1] == "process peak RSS"
    assert r["big"][0] - r["quiet"] > 100, r  # the 128 MiB shows in the peak
    assert r["reset"] and r["after"] < r["big"][0] - 100, r  # after the reset the peak is the current RSS again
