"""The wrong-input catalogue, resume part: every resume path (sampling work dir, node pass store, fit checkpoint in
tests/test_bad_inputs.py, trainer checkpoint, the job's --resume) given a file of another run or a damaged one. Each
is refused naming the file and the differing setting, and the folder is left exactly as it was."""
from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import pytest
import torch

from bad_inputs_world import SIZE, snapshot, train_cfg
from video_files import truncate


@pytest.fixture(scope="module")
def ctx(bad_inputs_world):
    return bad_inputs_world


def _sampled(ctx, folder: Path, seed: int = 0, video=None) -> Path:
    ctx["pipe"].configure(seed=seed).run(ctx["video"] if video is None else video, work_dir=folder)
    return folder


def _rerun(ctx, folder: Path, **config):
    """The seed-0 run resumed in ``folder`` (with ``config`` changed)."""
    return lambda: ctx["pipe"].configure(seed=0, **config).run(ctx["video"], work_dir=folder)


def _copied_pass(ctx, tmp, seed: int = 0, flipped: bool = False):
    """pass_000.pt of another run (another seed, or the video flipped) copied into a finished seed-0 work dir."""
    _sampled(ctx, tmp / "other", seed=seed, video=ctx["video"].flip(1) if flipped else None)
    shutil.copy(tmp / "other" / "pass_000.pt", _sampled(ctx, tmp / "mine") / "pass_000.pt")
    return _rerun(ctx, tmp / "mine")


def _damaged(ctx, tmp, name: str, keep: float):
    """A finished seed-0 work dir whose ``name`` lost its end (an interrupted copy)."""
    folder = _sampled(ctx, tmp / "w")
    truncate(folder / name, keep)
    return _rerun(ctx, folder)


def _resume_unrecorded(ctx, tmp):
    folder = _sampled(ctx, tmp / "w")
    record = torch.load(folder / "pass_000.pt", weights_only=True)
    record.pop("run")
    torch.save(record, folder / "pass_000.pt")  # as an older version wrote it
    return _rerun(ctx, folder)


def _resume_changed_steps(ctx, tmp):
    return _rerun(ctx, _sampled(ctx, tmp / "w"), num_steps=3)


def _node_store(ctx, tmp):
    from sv4d_models.pipeline.store import PassStore

    PassStore(tmp / "node", run={"kind": "sv4d", "seed": 0, "steps": 2}).save_pass(0, torch.zeros(1, 3, 2, 2), [(0, 1)], 0)
    return lambda: PassStore(tmp / "node", run={"kind": "sv4d", "seed": 0, "steps": 20}).load_pass(0)


def _trainer_state(tmp) -> Path:
    """checkpoint-1 of a default-settings run on dataset "abc123" (its trainer_state.json only)."""
    from train.config import TrainConfig

    folder = tmp / "run" / "checkpoint-1"
    folder.mkdir(parents=True)
    state = {"step": 1, "identity": TrainConfig().identity(), "dataset": "abc123"}
    (folder / "trainer_state.json").write_text(json.dumps(state))
    return folder


def _trainer(ctx, tmp, overrides=(), dataset: str = "abc123", damage=None):
    """That checkpoint resumed under ``overrides`` / ``dataset``; ``damage(trainer_state.json)`` changes it first."""
    from train.checkpointing import check_resumable

    folder = _trainer_state(tmp)
    if damage is not None:
        damage(folder / "trainer_state.json")
    return lambda: check_resumable(folder, train_cfg(*overrides).identity(), dataset, allow_changes=False)


def _forget_identity(path: Path) -> None:
    state = json.loads(path.read_text())
    state.pop("identity")
    path.write_text(json.dumps(state))


def _job_other_seed(ctx, tmp):
    from sv4d_models.job import JobSettings, run_job

    settings = dict(video=str(ctx["dir"] / "clip.gif"), out=str(tmp / "job"), sv4d=str(ctx["files"]["sv4d2"]),
                    image_size=SIZE, steps=2, skip_nerf=True)
    run_job(JobSettings(**settings))
    return lambda: run_job(JobSettings(**{**settings, "seed": 5, "resume": True}))


P = functools.partial
RESUME_CASES = [
    ("pass of a seed-1 run in a seed-0 work dir", P(_copied_pass, seed=1), r"mine/pass_000.pt was made by another run \(config.sampling.seed: 1 \(recorded\) vs 0 \(now\)\); it is not reused: rerun with --overwrite"),
    ("pass of another video", P(_copied_pass, flipped=True), r"mine/pass_000.pt was made by another run \(inputs.*\(recorded\) vs .*\(now\)"),
    ("pass without a run record", _resume_unrecorded, r"pass_000.pt was not written by this run \(it records no run settings"),
    ("damaged pass file", P(_damaged, name="pass_000.pt", keep=0.4), r"pass_000.pt \(a sampling work file\) is damaged and cannot be read"),
    ("damaged inputs file", P(_damaged, name="inputs.pt", keep=0.4), r"inputs.pt \(a sampling work file\) is damaged and cannot be read"),
    ("damaged manifest", P(_damaged, name="manifest.json", keep=0.5), r"manifest.json \(the work dir's manifest\) is damaged"),
    ("other steps in the work dir", _resume_changed_steps, r"holds a run with a different setup \(sampling.num_steps: 2 \(recorded\) vs 3 \(now\); sampling.sv3d_num_steps"),
    ("node store of other widgets", _node_store, r"node/pass_000.pt was made by another run \(steps: 2 \(recorded\) vs 20 \(now\)\)"),
    ("trainer checkpoint under run.seed=1", P(_trainer, overrides=["run.seed=1"]), r"checkpoint-1 was trained with other settings \(run.seed: 0 \(recorded\) vs 1 \(now\)\).*run.resume=none.*resume_with_changes"),
    ("trainer checkpoint under another lr", P(_trainer, overrides=["optim.lr=2e-5"]), r"checkpoint-1 was trained with other settings \(optim.lr: 1e-05 \(recorded\) vs 2e-05 \(now\)\)"),
    ("trainer checkpoint of other data", P(_trainer, dataset="def456"), r"checkpoint-1 was trained with other settings \(dataset: abc123 \(recorded\) vs def456 \(now\)"),
    ("trainer checkpoint without settings", P(_trainer, damage=_forget_identity), r"checkpoint-1 was trained with other settings \(the checkpoint records no settings"),
    ("damaged trainer state", P(_trainer, damage=lambda path: truncate(path, 0.5)), r"checkpoint-1/trainer_state.json \(a training checkpoint's state\) is damaged"),
    ("job resumed with another seed", _job_other_seed, r"--resume: --out .*job was started with other options \(--seed 23 \(recorded\) vs 5 \(now\)\); rerun with the recorded options"),
]


@pytest.mark.parametrize("name,setup,pattern", RESUME_CASES, ids=[c[0] for c in RESUME_CASES])
def test_resume_refuses_files_of_another_run(ctx, tmp_path, name, setup, pattern):
    call = setup(ctx, tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match=pattern):
        call()
    assert snapshot(tmp_path) == before, "a refused resume wrote or changed files"


def test_resume_with_changes_is_a_deliberate_switch(tmp_path):
    from train.checkpointing import check_resumable

    folder = _trainer_state(tmp_path)
    changed = check_resumable(folder, train_cfg("run.seed=1").identity(), "abc123", allow_changes=True)
    assert changed == ["run.seed: 0 (recorded) vs 1 (now)"]
    assert check_resumable(folder, train_cfg("run.max_steps=5").identity(), "abc123", allow_changes=False) == []
