"""The wrong-input catalogue, CLI part: every ``sv4d run`` option with NaN, inf, 0, negative, huge and wrong-type
values, the choice options, bad paths and ``--model demo`` refusals. Each exits 2 with one line on stderr naming the
option and value, and writes nothing (the world folder and the test's folder are unchanged)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from bad_inputs_world import case_name, snapshot


@pytest.fixture(scope="module")
def ctx(bad_inputs_world):
    return bad_inputs_world


INT_OPTIONS = {"--frames": (1, 100_000), "--steps": (1, 1000), "--seed": (0, 2**63 - 1), "--image-size": (16, 4096),
               "--fit-steps": (2, 10_000_000), "--turntable-frames": (1, 10_000), "--turntable-size": (8, 4096),
               "--mesh-resolution": (8, 1024)}
FLOAT_OPTIONS = {"--elevation": (-90.0, 90.0), "--mesh-threshold": (0.0, 1e10), "--mask-threshold": (0.0, 1.0)}


def _cli_cases() -> list:
    cases = []
    for flag, (lo, hi) in INT_OPTIONS.items():
        for value in ("nan", "inf", "1.5", "ten"):
            cases.append((f"{flag} {value}", [flag, value], rf"argument {flag}: invalid int value: '{value}'"))
        for value in sorted({lo - 1, -1, hi + 1, max(10**12, hi * 1000)}):
            cases.append((f"{flag} {value}", [flag, str(value)], rf"{flag} {value} must be >= {lo} and <= {hi}"))
    for flag, (lo, hi) in FLOAT_OPTIONS.items():
        for value in ("nan", "inf", "-inf"):  # "--elevation -inf" reads as an option to argparse: "=-inf" is the way
            cases.append((f"{flag} {value}", [f"{flag}={value}"], rf"{flag} {value} must be a finite number"))
        cases.append((f"{flag} abc", [flag, "abc"], rf"argument {flag}: invalid float value: 'abc'"))
        cases.append((f"{flag} 1e300", [flag, "1e300"], rf"{flag} 1e\+300 must be "))
        cases.append((f"{flag} -1000", [flag, "-1000"], rf"{flag} -1000.0 must be "))
    return cases + [
        ("--model foo", ["--model", "foo"], r"argument --model: invalid choice: 'foo'"),
        ("--model-kind sv5d", ["--model-kind", "sv5d"], r"argument --model-kind: invalid choice: 'sv5d'"),
        ("--mode fast", ["--mode", "fast"], r"argument --mode: invalid choice: 'fast'"),
        ("--dtype half", ["--dtype", "half"], r"argument --dtype: invalid choice: 'half'"),
        ("--preset huge", ["--preset", "huge"], r"argument --preset: invalid choice: 'huge'"),
        ("--device gpu", ["--device", "gpu"], r"--device 'gpu' is not a device name; use cpu, cuda or cuda:N"),
        ("--device cuda:x", ["--device", "cuda:x"], r"--device 'cuda:x' is not a device name"),
        pytest.param("--device cuda", ["--device", "cuda"], r"--device 'cuda': CUDA is not available on this machine",
                     marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
        ("--sv4d folder", ["--sv4d", "{dir}/empty_folder"], r"--sv4d .*empty_folder is a folder; pass the .safetensors file"),
        ("--sv4d missing", ["--sv4d", "{dir}/nope.safetensors"], r"nope.safetensors does not exist"),
        ("--sv4d text", ["--sv4d", "{dir}/text.safetensors"], r"text.safetensors.*not a readable safetensors"),
        ("--sv4d truncated", ["--sv4d", "{dir}/truncated.safetensors"], r"truncated.safetensors.*truncated or corrupt"),
        ("--sv3d missing", ["--sv4d", "{dir}/sv4d.safetensors", "--sv3d", "{dir}/nope3.safetensors"], r"nope3.safetensors does not exist"),
        ("--out is a file", ["--out", "{dir}/text.mp4"], r"text.mp4 .*is a file"),
        ("video missing", ["{dir}/nope.mp4"], r"nope.mp4 does not exist"),
        ("video truncated", ["{dir}/cut.mp4"], r"cut.mp4' is truncated"),
        ("--resume --overwrite", ["--resume", "--overwrite"], r"resume and overwrite exclude each other"),
        ("demo --image-size", ["--model", "demo", "--image-size", "32"], r"--image-size 32 cannot be used with --model demo"),
        ("demo --dtype", ["--model", "demo", "--dtype", "float16"], r"--dtype float16 cannot be used with --model demo"),
        ("demo --model-kind", ["--model", "demo", "--model-kind", "sv4d2"], r"--model-kind sv4d2 cannot be used with --model demo"),
        ("demo --sv3d", ["--model", "demo", "--sv3d", "x.safetensors"], r"--sv3d x.safetensors cannot be used with --model demo"),
        ("demo --elevation nan", ["--model", "demo", "--elevation", "nan"], r"--elevation nan must be a finite number"),
        ("demo unknown option", ["demo", "--foo"], r"unrecognized arguments: --foo"),
        ("run without --out", ["run", "{video}"], r"the following arguments are required: --out"),
    ]


CLI_CASES = _cli_cases()


def _argv(ctx, extra: list, out: Path) -> list[str]:
    values = {"dir": str(ctx["dir"]), "video": str(ctx["dir"] / "clip.gif")}
    if extra[:1] in (["demo"], ["run"]):
        return [a.format(**values) for a in extra]
    video = next((a for a in extra if a.startswith("{dir}/") and not a.endswith(".safetensors")
                  and a.rsplit("/", 1)[-1] in ("nope.mp4", "cut.mp4")), "{video}")
    rest = [a for a in extra if a != video]
    if "--sv4d" not in rest and "--model" not in rest:
        rest = ["--sv4d", str(ctx["files"]["sv4d2"]), *rest]
    if "--out" not in rest:
        rest = ["--out", str(out), *rest]
    return [a.format(**values) for a in ["run", video, *rest]]


@pytest.mark.parametrize("name,extra,pattern", CLI_CASES,
                         ids=[case_name(c) for c in CLI_CASES])
def test_cli_option_is_refused_in_one_line(ctx, tmp_path, monkeypatch, capsys, name, extra, pattern):
    from sv4d_models.cli import main

    monkeypatch.setenv("SV4D_MODELS", str(tmp_path / "no_models"))
    monkeypatch.chdir(tmp_path)
    before = snapshot(ctx["dir"])
    try:
        rc = main(_argv(ctx, extra, tmp_path / "out"))
    except SystemExit as exc:  # argparse
        rc = exc.code
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err and "usage:" not in err, err
    assert re.search(pattern, err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == [] and snapshot(ctx["dir"]) == before  # nothing written

