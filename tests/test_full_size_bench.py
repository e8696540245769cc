"""benchmarks/full_size.py keeps working on a CPU (the same code as the GPU run, at a reduced size)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("full_size", Path(__file__).resolve().parents[1] / "benchmarks" / "full_size.py")
full_size = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(full_size)


@pytest.mark.parametrize("kind", ["sv4d", pytest.param("sv4d2", marks=pytest.mark.slow)])
def test_reduced_run_is_finite_and_reports_everything(kind, tmp_path, capsys):
    r = full_size.main(["--reduced", "--device", "cpu", "--kind", kind, "--size", "64", "--frames", "5", "--steps", "2",
                        "--json", str(tmp_path / "r.json")])
    assert r["finite"] and r["passes"] >= 1 and r["step_s"] > 0 and r["tflop_per_step"] > 0
    assert r["peak_gb"] > 0 and (tmp_path / "r.json").is_file()
    assert "summary:" in capsys.readouterr().out
