"""``sv4d`` / ``python -m sv4d_models``: the main job end to end on tiny checkpoints, exit codes and one-line errors,
never clobbering an earlier run, --resume and --overwrite."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sv4d_models.cli import main
from sv4d_models.tiny_checkpoint import write_tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Tiny sv4d2_8views + sv4d + sv3d_u checkpoints and a 5-frame 32 px clip (the synthetic object's input view)."""
    from PIL import Image

    from sv4d_models.synthetic import SyntheticScene

    d = tmp_path_factory.mktemp("cli")
    out = {k: write_tiny_checkpoint(d / f"{k}.safetensors", k) for k in ("sv4d2_8views", "sv4d", "sv3d_u")}
    gt = SyntheticScene.make(kind="rigid", seed=5).render_matrix(model_kind="sv4d2_8views", n_frames=5, size=32)
    frames = [Image.fromarray((f * 255 + 0.5).clamp(0, 255).byte().numpy()) for f in gt["images"][:, 0]]
    frames[0].save(d / "clip.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    out["video"] = d / "clip.gif"
    return out


def run(files, out, *extra):
    return main(["run", str(files["video"]), "--out", str(out), "--sv4d", str(files["sv4d2_8views"]),
                 "--model-kind", "sv4d2_8views", "--image-size", "32", "--steps", "2", "--device", "cpu", "--quiet",
                 *extra])


def test_run_writes_the_job_outputs_and_manifest_then_refuses_to_clobber(files, tmp_path, capsys):
    out = tmp_path / "job"
    assert run(files, out, "--skip-nerf") == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["models"]["sv4d"]["sha256"] and manifest["input"]["frames"] == 5
    assert set(manifest["timings_s"]) == {"input", "models", "sampling", "videos"} and manifest["library_version"]
    assert manifest["settings"]["pipeline"]["sampling"]["num_steps"] == 2 and manifest["seeds"]["passes"]
    assert len(list((out / "videos").glob("v*.mp4"))) == 9 and (out / "grid.png").is_file()
    capsys.readouterr()
    assert run(files, out, "--skip-nerf") == 2
    err = capsys.readouterr().err
    assert "holds an earlier run" in err and "--resume" in err and len(err.strip().splitlines()) == 1
    before = (out / "grid.png").read_bytes()
    assert run(files, out, "--skip-nerf", "--resume") == 0  # every pass already done: nothing is sampled again
    assert (out / "grid.png").read_bytes() == before
    assert run(files, out, "--skip-nerf", "--overwrite", "--seed", "7") == 0
    assert json.loads((out / "manifest.json").read_text())["settings"]["seed"] == 7


def test_an_empty_reconstruction_is_reported_not_exported(files, tmp_path, capsys):
    """Random tiny weights sample noise: the fit renders (nearly) nothing and the job says so (exit 3)."""
    out = tmp_path / "job"
    rc = run(files, out, "--preset", "tiny", "--fit-steps", "6")
    assert rc == 3 and "the job failed" in capsys.readouterr().err
    assert (out / "reconstruction" / "metrics.json").is_file() and not (out / "reconstruction" / "animated.glb").exists()


@pytest.mark.parametrize("args,message", [
    (["run", "/nope.mp4", "--out", "{tmp}/o", "--sv4d", "{sv4d}"], "video /nope.mp4 does not exist"),
    (["run", "{video}", "--out", "{tmp}/o", "--sv4d", "{tmp}"], "is a folder"),
    (["run", "{video}", "--out", "{tmp}/o", "--sv4d", "{tmp}/missing.safetensors"], "does not exist"),
    (["run", "{video}", "--out", "{tmp}/o", "--sv4d", "{sv3d}"], "is an sv3d_u checkpoint"),
    (["run", "{video}", "--out", "{tmp}/o", "--sv4d", "{sv4d}", "--device", "cudax"], "not a device name"),
    (["run", "{video}", "--out", "{tmp}/o", "--sv4d", "{sv4d}", "--image-size", "40"], "image size 40"),
    (["run", "{video}", "--out", "{tmp}/o", "--sv4d", "{sv4d}", "--steps", "0"], "--steps 0 must be >= 1"),
    (["run", "{video}", "--out", "{tmp}/o", "--sv4d", "{sv4d}", "--seed", "-1"], "--seed -1 must be >= 0"),
    (["run", "{video}", "--out", "{file}", "--sv4d", "{sv4d}"], "is a file"),
    (["run", "{bad}", "--out", "{tmp}/o", "--sv4d", "{sv4d}", "--image-size", "32"], "could not read"),
    (["run", "{video}", "--out", "{tmp}/o", "--sv4d", "{sv4d4}", "--image-size", "32"], "SV3D (sv4d needs a reference"),
])
def test_user_errors_exit_2_with_one_line_and_write_nothing(files, tmp_path, capsys, args, message, monkeypatch):
    monkeypatch.setenv("SV4D_MODELS", str(tmp_path / "empty"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "bad.gif").write_text("not a gif")
    values = {"tmp": str(tmp_path), "video": str(files["video"]), "sv4d": str(files["sv4d2_8views"]),
              "sv3d": str(files["sv3d_u"]), "file": str(tmp_path / "a_file"), "bad": str(tmp_path / "bad.gif"),
              "sv4d4": str(files["sv4d"])}
    assert main([a.format(**values) for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_console_script_and_help_show_defaults():
    r = subprocess.run([sys.executable, "-m", "sv4d_models", "run", "--help"], capture_output=True, text=True, cwd=REPO)
    text = " ".join(r.stdout.split())
    assert r.returncode == 0 and "derived from it) (default: 23)" in text and "--resume" in text
    assert "sv4d = \"sv4d_models.cli:entry\"" in (REPO / "pyproject.toml").read_text()
    assert torch.__version__


def test_run_with_the_demo_model_and_fast_settings(files, tmp_path):
    out = tmp_path / "demo_model_run"
    assert main(["run", str(files["video"]), "--out", str(out), "--model", "demo", "--fast", "--skip-nerf",
                 "--quiet"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["preset"] == "tiny" and manifest["settings"]["image_size"] == 64
    assert manifest["models"]["sv4d"]["path"].endswith("sv4d2_8views_demo.safetensors")
    assert len(list((out / "videos").glob("v*.mp4"))) == 9
