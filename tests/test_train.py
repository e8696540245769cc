"""The trainer on tiny checkpoints and a tiny synthetic dataset: one step, resume, crash while saving, export round
trip, initialisation map, config parsing, dataset errors, and data parallelism with 2 CPU processes (gloo)."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sv4d_models.tiny_checkpoint import write_tiny_checkpoint
from train import checkpointing
from train.config import TrainConfig, load_config
from train.data import DatasetError, ShardedDataset
from train.train import run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """Tiny SV3D_p + SVD-xt files and a dataset: 2 training objects, 1 held-out, 9 views x 5 frames at 16 px."""
    from train.prepare_data import main as prepare

    d = tmp_path_factory.mktemp("train_assets")
    sv3d = write_tiny_checkpoint(d / "sv3d_p.safetensors", "sv3d_p", seed=1)
    svd = write_tiny_checkpoint(d / "svd_xt.safetensors", "svd_xt", seed=2)
    assert prepare(["--out", str(d / "data"), "--encoders", str(sv3d), "--objects", "2", "--val-objects", "1",
                    "--views", "9", "--frames", "5", "--size", "16", "--quiet"]) == 0
    return {"sv3d": sv3d, "svd": svd, "data": d / "data"}


def tiny_cfg(assets, out: Path, *extra: str) -> TrainConfig:
    return load_config(REPO / "train/configs/tiny_cpu.yaml", [
        f"model.init_sv3d={assets['sv3d']}", f"model.init_svd={assets['svd']}", f"data.path={assets['data']}",
        f"run.output_dir={out}", "run.max_steps=2", "run.static_steps=1", "run.batch_size=1", "run.validate_every=0",
        "run.val_sample_steps=0", "run.val_samples=2", "run.checkpoint_every=1", "run.log_every=1", *extra])


def losses(out: Path) -> dict[int, float]:
    with open(out / "logs" / "metrics.csv", encoding="utf-8") as f:
        return {int(r["step"]): float(r["value"]) for r in csv.DictReader(f) if r["metric"] == "train/loss"}


def test_one_step_finite_loss_checkpoint_and_export(assets, tmp_path):
    out = tmp_path / "run"
    result = run(tiny_cfg(assets, out, "run.max_steps=1"))
    assert result["step"] == 1 and torch.isfinite(torch.tensor(result["loss"]))
    assert (out / "checkpoint-1" / "trainer_state.json").is_file()
    assert {"val/loss_sigma_0.1", "val/loss_sigma_1", "val/loss_sigma_10"} <= set(result["validation"])
    from sv4d_models import load_unet
    from sv4d_models.pipeline import SV4DPipeline

    unet = load_unet(result["export"])
    assert unet.model_kind == "sv4d"
    trained = torch.load(out / "checkpoint-1" / "custom_checkpoint_1.pkl", weights_only=True)  # the EMA
    key = "input_blocks.1.1.motion_blocks.0.attn1.to_q.weight"
    torch.testing.assert_close(unet.state_dict()[key], trained[f"shadow.{key}"])
    pipe = SV4DPipeline.from_checkpoints(result["export"], assets["sv3d"],
                                         config={"image_size": 16, "num_steps": 2, "device": "cpu"})
    images = pipe.run(torch.rand(5, 16, 16, 3, generator=torch.Generator().manual_seed(0))).images
    assert images.shape == (5, 9, 16, 16, 3) and torch.isfinite(images).all()


def test_resume_gives_the_uninterrupted_next_loss(assets, tmp_path):
    full = tmp_path / "full"
    run(tiny_cfg(assets, full, "run.max_steps=3"))
    part = tmp_path / "part"
    run(tiny_cfg(assets, part, "run.max_steps=2"))
    run(tiny_cfg(assets, part, "run.max_steps=3"))  # resumes from checkpoint-2
    a, b = losses(full), losses(part)
    assert set(a) == {1, 2, 3} and a[3] == pytest.approx(b[3], rel=1e-6, abs=1e-7)
    assert a[1] == pytest.approx(b[1], rel=1e-6) and a[2] == pytest.approx(b[2], rel=1e-6)


def test_crash_while_saving_keeps_the_previous_checkpoint(assets, tmp_path):
    out = tmp_path / "run"
    run(tiny_cfg(assets, out, "run.max_steps=1"))
    broken = out / "checkpoint-2.partial"  # what a crash during save_state(step 2) leaves
    broken.mkdir()
    (broken / "model.safetensors").write_bytes(b"\x00" * 10)
    assert checkpointing.resolve_resume("latest", out) == out / "checkpoint-1"
    result = run(tiny_cfg(assets, out, "run.max_steps=2"))  # resumes from 1, replaces the partial folder
    assert result["step"] == 2 and not broken.exists()
    assert [s for s, _ in checkpointing.checkpoints(out)] == [1, 2]


def test_checkpoint_rotation_keeps_the_limit(assets, tmp_path):
    out = tmp_path / "run"
    run(tiny_cfg(assets, out, "run.max_steps=3", "run.checkpoints_total_limit=2"))
    assert [s for s, _ in checkpointing.checkpoints(out)] == [2, 3]


def test_config_overrides_and_errors(tmp_path):
    cfg = TrainConfig().with_overrides(["max_steps=2", "run.output_dir=/tmp/x", "optim.lr=1e-4", "model.kind=sv4d2"])
    assert cfg.run.max_steps == 2 and cfg.run.output_dir == "/tmp/x" and cfg.optim.lr == 1e-4
    assert cfg.model.kind == "sv4d2"
    with pytest.raises(ValueError, match="unknown config key 'max_stepz'"):
        TrainConfig().with_overrides(["max_stepz=2"])
    with pytest.raises(ValueError, match="unknown ModelConfig key 'knd'"):
        TrainConfig.from_dict({"model": {"knd": "sv4d"}})
    with pytest.raises(ValueError, match="model.kind='sv3d_p'"):
        TrainConfig.from_dict({"model": {"kind": "sv3d_p"}})
    with pytest.raises(ValueError, match="not key=value"):
        TrainConfig().with_overrides(["max_steps"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: [1, 2\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_corrupt_or_missing_shard_is_named(assets, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(assets["data"], data)
    shard = data / json.loads((data / "manifest.json").read_text())["shards"][0]
    shard.write_bytes(shard.read_bytes()[:1000])
    with pytest.raises(DatasetError, match=f"{shard.name} is damaged.*skip_bad_shards"):
        ShardedDataset(data)
    with pytest.warns(UserWarning, match=f"skipping dataset shard .*{shard.name}"), \
            pytest.raises(DatasetError, match="no usable records"):
        ShardedDataset(data, skip_bad_shards=True)  # the only shard: nothing left to train on
    shard.unlink()
    with pytest.raises(DatasetError, match=f"{shard.name} is missing"):
        ShardedDataset(data)
    with pytest.raises(DatasetError, match="no manifest.json"):
        ShardedDataset(tmp_path)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_process(assets, tmp_path):
    """Two CPU processes (accelerate launch --multi_gpu --num_processes 2: torchrun; the trainer picks gloo on CPU):
    both ranks end with identical weights, and the loss equals a 1-process run with the same global batch."""
    common = [f"model.init_sv3d={assets['sv3d']}", f"model.init_svd={assets['svd']}", f"data.path={assets['data']}",
              "run.max_steps=2", "run.static_steps=1", "run.validate_every=0", "run.val_sample_steps=0",
              "run.val_samples=1", "run.export_on_end=false", "run.record_weight_hashes=true", "run.ema_decay=0",
              "run.log_every=1", "optim.eps=1.0"]
    # eps=1: Adam's update is then ~ lr * gradient, so the weights compare the gradients themselves. With the usual
    # eps=1e-8, Adam turns rounding noise in the gradients that are zero in theory (biases in front of a GroupNorm)
    # into lr-sized steps of either sign, and the two runs differ by ~lr there while agreeing everywhere else.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    two, one = tmp_path / "two", tmp_path / "one"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
              str(_free_port())]
    script = [str(REPO / "train/train.py"), "--config", str(REPO / "train/configs/tiny_cpu.yaml")]
    r = subprocess.run(launch + script + common + [f"run.output_dir={two}", "run.batch_size=1"], env=env,
                       capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    run(tiny_cfg(assets, one, *common[3:], "run.batch_size=2"))
    hashes = [(two / "logs" / f"weights_rank{i}.sha256").read_text() for i in (0, 1)]
    assert hashes[0] == hashes[1]
    a, b = losses(two), losses(one)
    assert set(a) == {1, 2} and all(a[s] == pytest.approx(b[s], rel=1e-5) for s in a)
    from safetensors.torch import load_file

    s2, s1 = load_file(two / "checkpoint-2" / "model.safetensors"), load_file(one / "checkpoint-2" / "model.safetensors")
    assert set(s2) == set(s1)
    assert max(float((s2[k] - s1[k]).abs().max()) for k in s1) < 1e-8


def _meta_shapes(network: dict) -> dict:
    from sv4d_models.unet import build_unet

    return {k: tuple(v.shape) for k, v in build_unet(network, device="meta").state_dict().items()}


@pytest.mark.parametrize("kind", ["sv4d", "sv4d2", "sv4d2_8views"])
def test_initialisation_maps_every_parameter_at_full_size(kind):
    """Every full-size SV4D parameter comes from SV3D_p, from SVD-xt, or is one of the documented fresh layers."""
    import copy

    from sv4d_models.config import OFFICIAL_NETWORK_CONFIGS
    from train.init_weights import FRESH, SV3D, SVD, init_plan

    svd = copy.deepcopy(OFFICIAL_NETWORK_CONFIGS["sv3d_p"])
    svd["params"]["adm_in_channels"] = 768  # SVD-xt: fps | motion bucket | cond aug
    sources = {SV3D: _meta_shapes(OFFICIAL_NETWORK_CONFIGS["sv3d_p"]), SVD: _meta_shapes(svd)}
    plan = init_plan(_meta_shapes(OFFICIAL_NETWORK_CONFIGS[kind]), sources, camera_emb=kind != "sv4d")
    fresh = {k for k, (s, _) in plan.items() if s == FRESH}
    expected = {k for k in plan if ".motion_blocks.0.attn2.to_k." in k or ".motion_blocks.0.attn2.to_v." in k}
    if kind != "sv4d":  # SV4D 2.0's camera embedding takes the 1280-d embedding
        expected |= {k for k in plan if k.endswith(".time_mix_time_embed.0.weight")}
    assert fresh == expected and len(expected) == (32 if kind == "sv4d" else 48)
    by_source = {s: sum(1 for v in plan.values() if v[0] == s) for s in (SV3D, SVD)}
    assert by_source[SVD] == sum(1 for k in plan if ".motion_blocks." in k or "motion_embed" in k
                                 or "time_mixer_motion" in k) - 32
    assert by_source[SV3D] + by_source[SVD] + len(fresh) == len(plan)
    for key, (src, skey) in plan.items():
        if src == SV3D and ".time_mix_blocks." in key:
            assert ".time_stack." in skey  # SV3D's orbit layers initialise the view layers


def test_initialisation_copies_the_tiny_files(assets):
    from safetensors.torch import load_file

    from train.config import load_config
    from train.init_weights import FRESH
    from train.model import build_model

    cfg = load_config(REPO / "train/configs/tiny_cpu.yaml", [f"model.init_sv3d={assets['sv3d']}",
                                                              f"model.init_svd={assets['svd']}"])
    unet, _, plan = build_model(cfg)
    sv3d, svd = load_file(assets["sv3d"]), load_file(assets["svd"])
    state, p = unet.state_dict(), "model.diffusion_model."
    assert torch.equal(state["input_blocks.1.1.time_mix_blocks.0.attn1.to_q.weight"],
                       sv3d[p + "input_blocks.1.1.time_stack.0.attn1.to_q.weight"])  # view attention <- SV3D orbit
    assert torch.equal(state["input_blocks.1.1.motion_blocks.0.attn1.to_q.weight"],
                       svd[p + "input_blocks.1.1.time_stack.0.attn1.to_q.weight"])  # frame attention <- SVD-xt
    assert torch.equal(state["label_emb.0.0.weight"], sv3d[p + "label_emb.0.0.weight"])
    assert plan["input_blocks.1.1.motion_blocks.0.attn2.to_k.weight"][0] == FRESH


def test_should_stop_saves_and_resumes(assets, tmp_path):
    from sv4d_models.stopping import JobInterrupted

    out = tmp_path / "run"
    with pytest.raises(JobInterrupted, match="step 1 is saved") as stop:
        run(tiny_cfg(assets, out, "run.max_steps=3", "run.checkpoint_every=100"), should_stop=lambda: True)
    assert stop.value.resumable and checkpointing.resolve_resume("latest", out) == out / "checkpoint-1"
    assert run(tiny_cfg(assets, out, "run.max_steps=3", "run.checkpoint_every=100"))["step"] == 3


def test_prepare_data_reads_blender_renders(assets, tmp_path):
    """The layout train/blender/render_objaverse.py writes (RGBA PNGs + cameras.json + curation.json) is encoded;
    rejected objects are left out; the script itself compiles (Blender is not available here)."""
    import py_compile

    from PIL import Image

    from sv4d_models.camera import Cameras
    from sv4d_models.synthetic import SyntheticScene
    from train.prepare_data import main as prepare

    py_compile.compile(str(REPO / "train/blender/render_objaverse.py"), doraise=True)
    renders = tmp_path / "renders"
    elev, az = [5.0] * 9, [40.0 * v for v in range(9)]
    for i, uid in enumerate(["a", "b", "c"]):
        (renders / uid).mkdir(parents=True)
        (renders / uid / "curation.json").write_text(json.dumps({"accepted": uid != "b", "reason": "test"}))
        if uid == "b":
            continue
        folder = renders / uid / "static"
        folder.mkdir()
        scene = SyntheticScene.make(kind="rigid", seed=i)
        for t in range(5):
            out = scene.render(Cameras.orbit(az, elev), t / 4, 16)
            rgba = torch.cat([out["rgb"], out["mask"][..., None]], -1)
            for v in range(9):
                Image.fromarray((rgba[v] * 255 + 0.5).clamp(0, 255).byte().numpy(), "RGBA").save(folder / f"f{t:03d}_v{v:03d}.png")
        (folder / "cameras.json").write_text(json.dumps({"elevation_deg": elev, "azimuth_deg": az, "n_frames": 5,
                                                         "size": 16, "distance": 2.0, "fov_deg": 33.9}))
    assert prepare(["--out", str(tmp_path / "data"), "--encoders", str(assets["sv3d"]), "--renders", str(renders),
                    "--val-objects", "1", "--quiet"]) == 0
    ds = ShardedDataset(tmp_path / "data")
    assert [(r.object_id, r.orbit, r.split) for r in ds.records] == [("a", "static", "train"), ("c", "static", "val")]
    assert ds.rows(ds.records[0], "latents", 0).shape == (9, 4, 2, 2) and ds.manifest["image_size"] == 16
    torch.testing.assert_close(ds.views(ds.records[0])[1], torch.tensor(az, dtype=torch.float64))


def test_lr_schedule_warmup_decay_and_restart_cycles():
    from train.config import OptimConfig

    o = OptimConfig(lr=1.0, warmup_steps=10, decay_start=100, decay_steps=50, restart_steps=20,
                    restart_lr_ratio=0.5, restart_cycles=2)
    f = o.lr_factor
    assert f(0) == pytest.approx(0.1) and f(9) == 1.0 and f(99) == 1.0
    assert f(125) == pytest.approx(0.5) and f(149) < 0.01          # cosine to 0 over decay_steps
    assert f(150) == pytest.approx(0.5) and f(160) == pytest.approx(0.25) and f(169) < 0.01  # first restart
    assert f(170) == pytest.approx(0.5) and f(180) == pytest.approx(0.25)                    # second restart
    assert f(190) == 0.0 and f(10_000) == 0.0                        # after the last cycle: min_lr_ratio
    one = OptimConfig(lr=1.0, decay_start=100, decay_steps=50, restart_steps=20)
    assert one.lr_factor(170) == 0.0 and one.lr_factor(160) == pytest.approx(0.25)  # default: one cycle
    with pytest.raises(ValueError, match="restart_cycles=0"):
        OptimConfig(restart_cycles=0)


def test_late_noise_level_shift_starts_at_its_step():
    from train.config import DiffusionConfig

    d = DiffusionConfig(p_mean=1.0, late_from_step=5600, late_p_mean=3.0)
    assert [d.p_mean_at(s) for s in (0, 5599, 5600, 9000)] == [1.0, 1.0, 3.0, 3.0]
    assert DiffusionConfig(p_mean=0.5, late_p_mean=3.0).p_mean_at(10**6) == 0.5  # late_from_step 0: off
    with pytest.raises(ValueError, match="late_from_step=-1"):
        DiffusionConfig(late_from_step=-1)


def test_trainer_uses_the_late_noise_level(assets, tmp_path):
    run(tiny_cfg(assets, tmp_path / "a", "run.export_on_end=false"))
    run(tiny_cfg(assets, tmp_path / "b", "run.export_on_end=false", "diffusion.late_from_step=1",
                 "diffusion.late_p_mean=8.0"))
    base, late = losses(tmp_path / "a"), losses(tmp_path / "b")
    assert late[1] == base[1] and late[2] != base[2]  # step index 1 (the second step) draws sigma around e^8


def test_rerun_at_max_steps_reports_the_saved_loss_and_exports(assets, tmp_path):
    first = run(tiny_cfg(assets, tmp_path / "r", "run.max_steps=1"))
    again = run(tiny_cfg(assets, tmp_path / "r", "run.max_steps=1"))  # resumes at max_steps: no step, export only
    assert again["step"] == 1 and again["loss"] == pytest.approx(first["loss"]) and Path(again["export"]).is_file()


def test_resume_under_other_settings_is_refused_before_anything_changes(assets, tmp_path):
    """A seed-0 checkpoint-1 under run.seed=1 (or another lr) is an error naming the checkpoint and the setting;
    run.resume_with_changes=true continues deliberately; a damaged checkpoint is named."""
    out = tmp_path / "r"
    run(tiny_cfg(assets, out, "run.max_steps=1"))
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    with pytest.raises(ValueError, match=r"checkpoint-1 was trained with other settings \(run.seed: 0 \(recorded\) vs "
                                         r"1 \(now\)\)"):
        run(tiny_cfg(assets, out, "run.max_steps=2", "run.seed=1"))
    with pytest.raises(ValueError, match=r"optim.lr: 0.0003 \(recorded\) vs 2e-05 \(now\)"):
        run(tiny_cfg(assets, out, "run.max_steps=2", "optim.lr=2e-5"))
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    (out / "checkpoint-1" / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(ValueError, match=r"checkpoint-1 is damaged and cannot be loaded .*delete that checkpoint"):
        run(tiny_cfg(assets, out, "run.max_steps=2"))
    assert run(tiny_cfg(assets, tmp_path / "s", "run.max_steps=1"))["step"] == 1
    assert run(tiny_cfg(assets, tmp_path / "s", "run.max_steps=2", "run.seed=1",
                        "run.resume_with_changes=true"))["step"] == 2
