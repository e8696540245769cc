"""A new user's first hour (issue 22): the CLI's own words everywhere it can end, help with examples and exit codes,
--version, the thread policy, a finished run resumed is left alone, the demo model's warning on other input, and a
broken torch / torchvision pair named with its fix."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from sv4d_models.cli import main
from sv4d_models.tiny_checkpoint import write_tiny_checkpoint


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from PIL import Image

    from sv4d_models.synthetic import SyntheticScene

    d = tmp_path_factory.mktemp("first_hour")
    ckpt = write_tiny_checkpoint(d / "sv4d2_8views.safetensors", "sv4d2_8views")
    gt = SyntheticScene.make(kind="rigid", seed=5).render_matrix(model_kind="sv4d2_8views", n_frames=5, size=32)
    frames = [Image.fromarray((f * 255 + 0.5).clamp(0, 255).byte().numpy()) for f in gt["images"][:, 0]]
    frames[0].save(d / "clip.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return {"sv4d": ckpt, "video": d / "clip.gif"}


def run(files, out, *extra):
    return main(["run", str(files["video"]), "--out", str(out), "--sv4d", str(files["sv4d"]), "--image-size", "32",
                 "--steps", "2", "--device", "cpu", "--quiet", "--skip-nerf", *extra])


def _tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_no_command_prints_the_short_help_with_examples_and_exit_codes(capsys):
    assert main([]) == 0
    text = capsys.readouterr().out
    assert "usage: sv4d" in text and "examples:" in text and "sv4d demo --fast" in text and "130  interrupted" in text
    assert "``" not in text  # no reStructuredText in the help


@pytest.mark.parametrize("command", ["run", "demo"])
def test_each_command_has_a_description_examples_and_exit_codes(capsys, command):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    text = capsys.readouterr().out
    assert info.value.code == 0 and "examples:" in text and "exit codes:" in text and "``" not in text
    if command == "run":
        assert "output (in --out):" in text and "animated.glb" in text and "runs at 64 px" in " ".join(text.split())


def test_version(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("sv4d 0.1.0 (torch ")


def test_an_unknown_option_is_reported_by_its_command(capsys):
    with pytest.raises(SystemExit) as info:
        main(["demo", "--foo"])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and err == "sv4d demo: error: unrecognized arguments: --foo (see sv4d demo --help)"


def test_threads_option_environment_and_the_first_line(files, tmp_path, capsys, monkeypatch):
    import torch

    from sv4d_models import job

    before, seen, original = torch.get_num_threads(), [], job.write_grid
    monkeypatch.setattr(job, "write_grid", lambda *a, **kw: (seen.append(torch.get_num_threads()), original(*a, **kw))[1])
    try:
        assert main(["run", str(files["video"]), "--out", str(tmp_path / "a"), "--sv4d", str(files["sv4d"]),
                     "--image-size", "32", "--steps", "2", "--skip-nerf", "--threads", "1"]) == 0
        assert capsys.readouterr().out.splitlines()[0] == ("sv4d: 1 CPU threads (--threads; --threads N or "
                                                           "SV4D_THREADS to change)")
        assert seen == [1] and torch.get_num_threads() == before  # used during the job, restored after it
        monkeypatch.setenv("SV4D_THREADS", "two")
        assert run(files, tmp_path / "b") == 2
        assert "SV4D_THREADS='two' must be a whole number of threads" in capsys.readouterr().err
        assert not (tmp_path / "b").exists()
    finally:
        torch.set_num_threads(before)
    with pytest.raises(SystemExit):
        main(["run", "x.mp4", "--out", str(tmp_path / "c"), "--threads", "1.5"])
    assert "argument --threads: invalid int value: '1.5'" in capsys.readouterr().err


def test_threads_default_to_the_physical_cores_this_process_may_use(monkeypatch):
    from sv4d_models import threads

    monkeypatch.delenv("SV4D_THREADS", raising=False)
    n, source = threads.resolve_threads()
    assert source == "physical cores" and 1 <= n <= len(threads.usable_cpus())
    with pytest.raises(ValueError, match=r"threads=0 must be >= 1"):
        threads.resolve_threads(0)


def test_a_finished_run_resumed_changes_nothing_and_says_so(files, tmp_path, capsys):
    out = tmp_path / "job"
    assert run(files, out) == 0
    before = _tree(out)
    capsys.readouterr()
    assert main(["run", str(files["video"]), "--out", str(out), "--sv4d", str(files["sv4d"]), "--image-size", "32",
                 "--steps", "2", "--device", "cpu", "--skip-nerf", "--resume"]) == 0
    assert "holds this run, finished: nothing to do, nothing was changed (--overwrite redoes it)" in \
        capsys.readouterr().out
    assert _tree(out) == before


def test_a_resume_with_other_options_names_the_flags(files, tmp_path, capsys):
    out = tmp_path / "job"
    assert run(files, out) == 0
    before = _tree(out)
    capsys.readouterr()
    assert run(files, out, "--resume", "--seed", "5") == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"sv4d: error: --resume: --out {out} was started with other options (--seed 23 (recorded) vs 5 "
                   "(now)); rerun with the recorded options to continue it, or pass --overwrite to start over")
    assert _tree(out) == before


def test_resuming_a_fast_run_without_fast_says_add_fast(files, tmp_path, capsys):
    out = tmp_path / "demo_model"
    argv = ["run", str(files["video"]), "--out", str(out), "--model", "demo", "--skip-nerf", "--quiet"]
    assert main([*argv, "--fast"]) == 0
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "(it was started with --fast: add --fast)" in err and "--preset tiny (recorded) vs cpu (now)" in err
    assert main([*argv, "--resume", "--fast"]) == 0  # the same options: finished, nothing to do


def test_library_wording_is_translated_into_flags(files, tmp_path, capsys):
    out = tmp_path / "job"
    assert run(files, out) == 0
    sampling = json.loads((out / "sampling" / "manifest.json").read_text())
    sampling["config"]["sampling"]["seed"] = 99  # a work dir of another run under the same job record
    (out / "sampling" / "manifest.json").write_text(json.dumps(sampling))
    (out / "manifest.json").unlink()
    capsys.readouterr()
    assert run(files, out, "--resume") == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "overwrite=True" not in err


def test_the_demo_model_on_another_video_warns_once(files, tmp_path, capsys):
    assert main(["run", str(files["video"]), "--out", str(tmp_path / "d"), "--model", "demo", "--fast",
                 "--skip-nerf", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("the demo model knows only the synthetic toy scenes") == 1 and "Official checkpoints" in err


def test_a_mismatched_torch_torchvision_pair_is_named_with_its_fix(files, tmp_path, capsys, monkeypatch):
    import torchvision

    monkeypatch.setattr(torchvision, "__version__", "0.28.0")
    assert run(files, tmp_path / "o") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "and torchvision 0.28.0 are not a pair" in err
    assert "pip install --force-reinstall torch==" in err and "torchvision==0." in err and not (tmp_path / "o").exists()


def test_a_video_that_is_not_one_is_refused_before_any_model_loads(files, tmp_path, capsys, monkeypatch):
    from sv4d_models import job

    def no_load(*a, **kw):
        raise AssertionError("the model was loaded before the video was checked")

    monkeypatch.setattr(job, "_load_pipeline", no_load)
    fake = tmp_path / "clip.mp4"
    fake.write_text("this is a text file, not a video")
    assert main(["run", str(fake), "--out", str(tmp_path / "o"), "--sv4d", str(files["sv4d"]), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "could not decode video" in err and "clip.mp4" in err
    assert not (tmp_path / "o").exists()


def test_the_sleeping_policy_is_set_before_torch_loads_openmp():
    """OpenMP reads OMP_WAIT_POLICY once, when torch loads it: the console script must set it before any import of
    torch (a later setting silently does nothing)."""
    import os
    import subprocess
    import sys

    probe = ("import sys\nfrom sv4d_models import cli, threads\nreal = threads.quiet_waiting\n"
             "def check():\n    print('torch loaded' if 'torch' in sys.modules else 'before torch')\n    real()\n"
             "threads.quiet_waiting = check\nraise SystemExit(cli.main(['--version']))\n")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert r.stdout.splitlines()[0] == "before torch", r.stdout + r.stderr
