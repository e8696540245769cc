"""``sv4d batch`` (issue 24): inputs and names, sharding, failure isolation, resume, interruption, the merged report.
Tiny checkpoint, 32 px, 2 sampler steps, no 4D fit: a video takes about 2 s."""
from __future__ import annotations

import csv
import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

import batch_workers

from sv4d_models import batch_cli
from sv4d_models.batch_inputs import BatchItem, read_inputs, safe_name, shard
from sv4d_models.batch_report import _locked, merge_report, read_row, write_row
from sv4d_models.cli import main
from sv4d_models.tiny_checkpoint import write_tiny_checkpoint


def write_clip(path: Path, seed: int, frames: int = 5) -> Path:
    from PIL import Image

    from sv4d_models.synthetic import SyntheticScene

    gt = SyntheticScene.make(kind="rigid", seed=seed).render_matrix(model_kind="sv4d2_8views", n_frames=frames, size=32)
    frames = [Image.fromarray((f * 255 + 0.5).clamp(0, 255).byte().numpy()) for f in gt["images"][:, 0]]
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny checkpoint and a folder of 4 clips: two ``cat.gif`` from different folders, a dog, a broken file."""
    d = tmp_path_factory.mktemp("batch")
    write_clip(d / "clips" / "a" / "cat.gif", 5)
    write_clip(d / "clips" / "b" / "cat.gif", 6)
    write_clip(d / "clips" / "dog.gif", 7, frames=9)  # two sampling passes: an interruption can fall between
    (d / "clips" / "broken.gif").write_bytes(b"GIF89a, then nothing")
    return {"sv4d": write_tiny_checkpoint(d / "sv4d2_8views.safetensors", "sv4d2_8views"), "clips": d / "clips"}


def batch(world, out, *inputs, extra=()):
    return main(["batch", *(str(i) for i in inputs or [world["clips"]]), "--out", str(out), "--sv4d",
                 str(world["sv4d"]), "--image-size", "32", "--steps", "2", "--device", "cpu", "--skip-nerf", "--quiet",
                 *extra])


def rows(out: Path) -> dict:
    report = json.loads((out / "batch.json").read_text())
    table = list(csv.DictReader((out / "batch.csv").open()))
    assert [r["name"] for r in table] == [r["name"] for r in report["rows"]]  # the two files agree
    return {r["name"]: r for r in report["rows"]}


# --- inputs, names, sharding --------------------------------------------------------------------------------------

def test_every_video_is_in_exactly_one_share_and_the_shares_never_change():
    items = [BatchItem(f"v{i}", f"/v{i}.mp4") for i in range(11)]
    for world in (1, 2, 3, 4, 11, 16):
        shares = [shard(items, r, world) for r in range(world)]
        names = [i.name for s in shares for i in s]
        assert sorted(names) == sorted(i.name for i in items) and len(names) == len(items)
        assert shares == [shard(items, r, world) for r in range(world)]  # deterministic: no talking needed
        assert max(map(len, shares)) - min(map(len, shares)) <= 1  # balanced
    assert [i.name for i in shard(items, 1, 4)] == ["v1", "v5", "v9"]
    with pytest.raises(ValueError, match="rank 2 is outside 0..1"):
        shard(items, 2, 2)


def test_names_cannot_collide_nor_leave_the_folder(world, tmp_path):
    items = read_inputs([str(world["clips"])])
    names = [i.name for i in items]
    assert len(set(n.lower() for n in names)) == len(names) == 4
    cats = [n for n in names if n.startswith("cat")]
    assert len(cats) == 2 and all(len(n) == len("cat-") + 8 for n in cats)  # both get a hash: order-independent
    assert "dog" in names and "broken" in names
    again = read_inputs([str(world["clips"] / "b" / "cat.gif"), str(world["clips"])])  # another order, a duplicate
    assert sorted(i.name for i in again) == sorted(names)
    for stem, expected in (("..", "video"), ("../../etc", "_.._etc"), (".hidden", "hidden"), ("a b/c", "a_b_c"),
                           ("batch.json", "batch.json_"), ("", "video")):
        name = safe_name(stem)
        assert name == expected and not name.startswith(".") and "/" not in name
        assert (tmp_path / name).resolve().parent == tmp_path.resolve()


def test_a_list_names_its_bad_lines_and_columns(world, tmp_path):
    cat = world["clips"] / "a" / "cat.gif"
    cases = [("name,video\n../up,a/cat.gif\n", r"line 2: name '../up' is not a folder name inside --out"),
             ("video,name\na/cat.gif,x\nb/cat.gif,X\n", r"line 3: name 'X' is also given at .* line 2"),
             ("video,speed\na/cat.gif,3\n", r"unknown \['speed'\]; use video \(required\), name and per-video"),
             ("video,seed\na/cat.gif,two\n", r"line 2: seed='two' must be a whole number"),
             ("video\nmissing.gif\n", r"line 2: video missing.gif does not exist")]
    for i, (text, pattern) in enumerate(cases):
        path = world["clips"] / f"list{i}.csv"
        path.write_text(text)
        try:
            with pytest.raises((ValueError, FileNotFoundError), match=pattern):
                read_inputs([str(path)])
        finally:
            path.unlink()
    txt = tmp_path / "list.txt"
    txt.write_text(f"# my clips\n{cat}\n\n{cat}\n")
    assert [i.video for i in read_inputs([str(txt)])] == [str(cat.resolve())]  # comments, blanks, duplicates
    with pytest.raises(ValueError, match=r"matches no video; check the pattern"):
        read_inputs([str(tmp_path / "*.mp4")])
    with pytest.raises(FileNotFoundError, match=r"INPUT .*nope does not exist; pass a video, a folder"):
        read_inputs([str(tmp_path / "nope")])


# --- the batch itself ---------------------------------------------------------------------------------------------

def test_one_broken_video_fails_alone_and_a_rerun_skips_the_rest(world, tmp_path, capsys, monkeypatch):
    from sv4d_models.pipeline import SV4DPipeline

    loads = []
    original = SV4DPipeline.from_checkpoints.__func__
    monkeypatch.setattr(SV4DPipeline, "from_checkpoints",
                        classmethod(lambda cls, *a, **kw: (loads.append(1), original(cls, *a, **kw))[1]))
    out = tmp_path / "out"
    assert batch(world, out) == 3
    err = capsys.readouterr().err
    assert "1 of 4 videos not done" in err and "broken: failed (input: could not read" in err
    r = rows(out)
    assert [r[n]["status"] for n in sorted(r)] == ["failed", "done", "done", "done"]  # broken, cat-.., cat-.., dog
    assert r["broken"]["kind"] == "input" and r["broken"]["exit_code"] == 2 and "broken.gif" in r["broken"]["message"]
    assert len(loads) == 1  # the networks are loaded once for the three videos
    for name, row in r.items():
        if row["status"] == "done":
            manifest = json.loads((out / name / "manifest.json").read_text())
            assert manifest["input"]["path"] == row["video"] and row["seconds"] > 0 and row["peak_memory_mb"] > 0
            assert (out / name / "grid.png").is_file() and Path(row["manifest"]) == out / name / "manifest.json"
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if "sampling" in p.parts or p.name == "manifest.json"}
    capsys.readouterr()
    assert batch(world, out) == 3  # nothing retried without --retry-failed
    assert "3 done (3 skipped: done before), 1 failed (1 of them before, not retried)" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in before} == before and rows(out)["broken"]["attempts"] == 1
    assert batch(world, out, extra=["--retry-failed"]) == 3
    assert rows(out)["broken"]["attempts"] == 2 and len(loads) == 1  # retried; nothing else was even loaded
    (world["clips"] / "broken.gif").rename(world["clips"] / "broken.gif.bak")
    try:
        assert batch(world, out) == 0  # the list changed: the broken one is gone, everything listed is done
        assert sorted(rows(out)) == sorted(n for n in r if n != "broken")
    finally:
        (world["clips"] / "broken.gif.bak").rename(world["clips"] / "broken.gif")


def test_a_csv_list_sets_options_per_video_and_bad_values_fail_only_their_video(world, tmp_path):
    clips = world["clips"]
    listing = tmp_path / "list.csv"
    listing.write_text(f"video,name,seed,elevation\n{clips / 'dog.gif'},dog_s1,1,\n{clips / 'dog.gif'},dog_s2,2,5\n"
                       f"{clips / 'dog.gif'},dog_bad,3,500\n")
    out = tmp_path / "out"
    assert batch(world, out, listing) == 3
    r = rows(out)
    seeds = {n: json.loads((out / n / "manifest.json").read_text())["settings"] for n in ("dog_s1", "dog_s2")}
    assert seeds["dog_s1"]["seed"] == 1 and seeds["dog_s2"]["seed"] == 2
    assert seeds["dog_s1"]["elevation"] is None and seeds["dog_s2"]["elevation"] == 5.0
    assert r["dog_bad"]["status"] == "failed" and r["dog_bad"]["kind"] == "input"
    assert "line 4" in r["dog_bad"]["message"] and "--elevation 500" in r["dog_bad"]["message"]
    assert r["dog_s1"]["options"] == {"seed": 1} and not (out / "dog_bad").exists()


def test_out_of_memory_and_bugs_are_recorded_and_the_batch_goes_on(world, tmp_path, monkeypatch):
    import torch

    from sv4d_models import batch as batch_module

    real = batch_module.run_job

    def flaky(settings, *a, **kw):
        if Path(settings.video).name == "dog.gif":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9 GiB")
        if "cat" in settings.out and settings.video.endswith(os.path.join("a", "cat.gif")):
            raise KeyError("a bug")
        return real(settings, *a, **kw)

    monkeypatch.setattr(batch_module, "run_job", flaky)
    out = tmp_path / "out"
    assert batch(world, out) == 3
    r = rows(out)
    kinds = sorted((row["status"], row["kind"]) for row in r.values())
    assert kinds == [("done", ""), ("failed", "error"), ("failed", "input"), ("failed", "out_of_memory")]
    bug = next(row for row in r.values() if row["kind"] == "error")
    assert "KeyError" in read_row(out, bug["name"])["traceback"] and bug["exit_code"] == 1


def test_sigterm_stops_after_the_step_and_a_rerun_finishes_with_the_same_outputs(world, tmp_path, monkeypatch, capsys):
    from sv4d_models import events

    steps = []

    class KillMidway(batch_cli.ConsoleReporter):
        def __call__(self, event):
            if event["type"] == events.SAMPLE_STEP:
                steps.append(1)
                if len(steps) == 3:  # in the dog's second pass (2 steps per pass), the first one saved
                    os.kill(os.getpid(), signal.SIGTERM)
            super().__call__(event)

    dog = world["clips"] / "dog.gif"
    monkeypatch.setattr(batch_cli, "ConsoleReporter", KillMidway)
    out = tmp_path / "out"
    assert batch(world, out, dog, world["clips"] / "b") == 130
    assert "SIGTERM: stopping after the current step" in capsys.readouterr().err
    r = rows(out)
    assert r["dog"]["status"] == "interrupted" and r["dog"]["exit_code"] == 130 and r["cat"]["status"] == "pending"
    assert (out / "dog" / "sampling").is_dir() and not (out / "dog" / "manifest.json").exists()
    assert "passes [0] are saved" in r["dog"]["message"]
    monkeypatch.setattr(batch_cli, "ConsoleReporter", batch_cli.ConsoleReporter)
    assert batch(world, out, dog, world["clips"] / "b") == 0
    assert {row["status"] for row in rows(out).values()} == {"done"} and rows(out)["dog"]["attempts"] == 2
    assert batch(world, tmp_path / "straight", dog) == 0
    assert (out / "dog" / "grid.png").read_bytes() == (tmp_path / "straight" / "dog" / "grid.png").read_bytes()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are put back


def test_batch_help_and_bad_input(world, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["batch", "--help"])
    text = capsys.readouterr().out
    assert info.value.code == 0 and "accelerate launch" in text and "exit codes:" in text and "batch.csv" in text
    assert "--resume" not in text and "--overwrite" not in text  # the batch resumes by itself and never overwrites
    assert batch(world, tmp_path / "out", tmp_path / "missing") == 2
    assert "sv4d: error: INPUT" in capsys.readouterr().err and not (tmp_path / "out").exists()


# --- the report ---------------------------------------------------------------------------------------------------

def test_rows_of_processes_finishing_at_once_are_never_lost(tmp_path):
    names = [f"v{i}" for i in range(8)]
    ctx = multiprocessing.get_context("spawn")
    for attempt in range(3):
        out = tmp_path / f"run{attempt}"
        start = ctx.Barrier(len(names))
        procs = [ctx.Process(target=batch_workers.finish, args=(str(out), names, start, i)) for i in range(len(names))]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert [p.exitcode for p in procs] == [0] * len(names)
        r = rows(out)
        assert sorted(r) == names and {row["status"] for row in r.values()} == {"done"}


def test_a_merge_waits_for_the_lock(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    write_row(tmp_path, {"name": "a", "status": "done"})
    done = ctx.Event()
    with _locked(tmp_path / ".batch" / "lock"):
        p = ctx.Process(target=batch_workers.merge_after, args=(str(tmp_path), done))
        p.start()
        assert not done.wait(3) and not (tmp_path / "batch.json").exists()  # held here: the other process waits
    assert done.wait(60)
    p.join(60)
    assert rows(tmp_path)["a"]["status"] == "done"


def test_rows_are_checked_and_written_atomically(tmp_path):
    with pytest.raises(ValueError, match="row status 'ok'"):
        write_row(tmp_path, {"name": "a", "status": "ok"})
    report = merge_report(tmp_path, [BatchItem("a", "/a.mp4"), BatchItem("b", "/b.mp4")])
    assert report["counts"] == {"done": 0, "failed": 0, "interrupted": 0, "pending": 2}
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
    time.sleep(0)
