"""Train SV4D / SV4D 2.0 (paper section 3.1, appendix A) with accelerate: one CPU, one GPU, or many machines.

    accelerate launch train/train.py --config train/configs/sv4d_paper.yaml [key=value ...]
    python train/train.py --config train/configs/tiny_cpu.yaml run.max_steps=2 run.output_dir=/tmp/run

Order (accelerate / diffusers style): Accelerator, seed, dataset, UNet (+ initialisation from SV3D_p / SVD-xt),
optimiser and warm-up schedule, ``prepare``, resume from the newest checkpoint, then the loop: each optimiser step
takes ``grad_accum`` micro-batches of ``batch_size`` samples per process, drawn by global index (``train.data``) so
N processes see exactly the samples one process would; curriculum: static orbits for ``run.static_steps``, then
dynamic orbits. Checkpoints ``checkpoint-{step}`` (atomic, rotated), metrics to TensorBoard or CSV, validation
(fixed-sigma loss + a sampled grid), and at the end an engine checkpoint in the official layout (``train.export``).
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import the package train/, not this file, from the repository
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parent))

import torch  # noqa: E402

from sv4d_models import events  # noqa: E402
from sv4d_models.console import ConsoleReporter  # noqa: E402
from sv4d_models.events import Reporter  # noqa: E402
from sv4d_models.stopping import JobInterrupted, StopCheck, stop_requested  # noqa: E402
from sv4d_models.cli import OneLineParser  # noqa: E402 - one-line argparse errors, as sv4d's
from train.checkpointing import (EMA, MetricsLog, check_resumable, load_checkpoint, resolve_resume,  # noqa: E402
                                 save_checkpoint)
from train.config import TrainConfig, load_config  # noqa: E402
from train.data import DatasetError, SampleBuilder, ShardedDataset  # noqa: E402
from train.diffusion import diffusion_loss, training_batch  # noqa: E402
from train.export import export_engine  # noqa: E402
from train.model import build_model, validation_models, vector_dims  # noqa: E402
from train.validation import validation_grid, validation_losses, write_png  # noqa: E402

log = logging.getLogger("sv4d.train")


def build_accelerator(cfg: TrainConfig):
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, set_seed

    # cpu=True without CUDA: under torchrun (accelerate launch --multi_gpu) the processes then form a gloo group.
    # Unused parameters exist by design: a cross-attention over one token is computed as to_out(to_v(ctx)) (softmax
    # over one key is 1), so its to_q / to_k / norm2 get no gradient (the reference's gradient there is exactly 0).
    acc = Accelerator(mixed_precision=cfg.run.mixed_precision, gradient_accumulation_steps=cfg.run.grad_accum,
                      cpu=not torch.cuda.is_available(),
                      kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    if acc.device.type == "cpu" and cfg.run.mixed_precision == "fp16":
        raise ValueError("run.mixed_precision=fp16 needs a GPU; on a CPU use 'bf16' or 'no'")
    set_seed(cfg.run.seed)
    return acc


def build_data(cfg: TrainConfig, context_dim: int) -> tuple[ShardedDataset, SampleBuilder]:
    if not cfg.data.path:
        raise DatasetError("data.path is empty; create a dataset with `python -m train.prepare_data --out DIR ...` "
                           "and pass data.path=DIR")
    dataset = ShardedDataset(cfg.data.path, cfg.data.skip_bad_shards)
    if dataset.manifest["clip_dim"] != context_dim:
        raise DatasetError(f"{cfg.data.path} holds {dataset.manifest['clip_dim']}-d CLIP embeddings but the "
                           f"{cfg.model.size} {cfg.model.kind} UNet takes {context_dim}-d context; encode the dataset "
                           "with the matching encoders (prepare_data --encoders) or change model.size")
    builder = SampleBuilder(dataset, cfg.model.kind, cfg.run.seed, cfg.data.max_stride, cfg.data.p_reference_before,
                            cfg.data.p_no_reference)
    return dataset, builder


def build_optimizer(cfg: TrainConfig, unet: torch.nn.Module):
    o = cfg.optim
    opt = torch.optim.AdamW(unet.parameters(), lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, o.lr_factor)
    return opt, sched


def curriculum_records(dataset: ShardedDataset, cfg: TrainConfig, step: int):
    """Static orbits for the first ``run.static_steps`` steps, then dynamic orbits (all orbits if one is absent)."""
    orbits = ("static",) if step < cfg.run.static_steps else ("dynamic",)
    records = dataset.select("train", orbits) or dataset.select("train", ("static", "dynamic"))
    if not records:
        raise DatasetError(f"{cfg.data.path} has no training records")
    return records


def micro_batch(acc, cfg: TrainConfig, builder: SampleBuilder, records, step: int, micro: int) -> list[dict]:
    """This process's samples of micro-batch ``micro`` of optimiser step ``step`` (global-index draw)."""
    per, n = cfg.run.batch_size, acc.num_processes
    base = (step * cfg.run.grad_accum + micro) * per * n + acc.process_index * per
    return [builder(base + i, records) for i in range(per)]


def train_step(acc, cfg: TrainConfig, unet, opt, sched, builder, records, step: int, dims) -> tuple[float, float]:
    """One optimiser step; returns the loss averaged over every process's samples and the gradient norm (before
    clipping)."""
    total, norm = torch.zeros((), device=acc.device), float("nan")
    for micro in range(cfg.run.grad_accum):
        samples = micro_batch(acc, cfg, builder, records, step, micro)
        with acc.accumulate(unet):
            batch = training_batch(samples, cfg.model.kind, dims, cfg.diffusion.p_uncond,
                                   cfg.diffusion.p_mean_at(step), cfg.diffusion.p_std)
            with acc.autocast():
                loss = diffusion_loss(unet, batch, acc.device).mean()
            acc.backward(loss)
            if acc.sync_gradients:
                clip = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")
                norm = float(acc.clip_grad_norm_(unet.parameters(), clip))
            opt.step()
            if acc.sync_gradients:
                sched.step()  # once per optimiser step, whatever the number of processes (global-batch schedule)
            opt.zero_grad(set_to_none=True)
        total += loss.detach()
    return float(acc.gather(total[None]).mean()) / cfg.run.grad_accum, norm


def validate(acc, cfg: TrainConfig, unet, dataset, builder, dims, metrics: MetricsLog, step: int) -> dict:
    """Main process: fixed-sigma validation loss and (with an encoders file) a sampled grid PNG."""
    if not acc.is_main_process:
        return {}
    model = acc.unwrap_model(unet)
    records = dataset.select("val", ("static", "dynamic"))
    values = validation_losses(model, builder, records, cfg.run.val_sigmas, cfg.run.val_samples, cfg.model.kind, dims,
                               acc.device) if records else {}
    matrix = dataset.select("val", ("matrix",))
    models = validation_models(cfg, model, acc.device) if matrix and cfg.run.val_sample_steps else None
    if models is not None:
        out = validation_grid(models, dataset, matrix[0], cfg.run.val_sample_steps, cfg.run.seed)
        write_png(out["grid"], Path(cfg.run.output_dir) / "validation" / f"step_{step:07d}.png")
        metrics.image(step, "val/grid", out["grid"])
        values.update({"val/psnr": out["psnr"], "val/psnr_copy_input": out["psnr_copy_input"]})
    metrics.log(step, values)
    return values


def finish(acc, cfg: TrainConfig, unet, ema: EMA | None, network: dict, dims) -> Path | None:
    """Export the (EMA) weights as an engine checkpoint in the official layout. Collective (FSDP / ZeRO-3 gather
    the full state dict); the main process writes the file."""
    encoders = cfg.model.encoders or cfg.model.init_sv3d
    if not cfg.run.export_on_end:
        return None
    if not encoders:
        log.warning("no model.encoders / model.init_sv3d file: the engine checkpoint export is skipped")
        return None
    weights = ema.weights(acc.unwrap_model(unet)) if ema is not None else acc.get_state_dict(unet)
    if not acc.is_main_process:
        return None
    out = Path(cfg.run.output_dir) / "export" / f"{cfg.model.kind}.safetensors"
    return export_engine(weights, cfg.model.kind, network, dims, encoders, out)


def _write_weight_hash(acc, unet, out: Path) -> None:
    from sv4d_models.files import atomic_write_text, fingerprint

    state = acc.unwrap_model(unet).state_dict()
    digest = fingerprint(*[state[k].detach().float().reshape(1, -1) for k in sorted(state)])
    atomic_write_text(out / "logs" / f"weights_rank{acc.process_index}.sha256", digest + "\n", overwrite=True)


def run(cfg: TrainConfig, should_stop: StopCheck | None = None, report: Reporter | None = None) -> dict:
    """Train as configured; returns ``{"step", "loss", "export", "validation"}``. ``should_stop()`` is polled after
    every optimiser step: True saves a checkpoint and raises ``JobInterrupted`` (a rerun resumes from it).
    ``report`` gets a ``train_step`` event (``sv4d_models.events``) after every step on the main process (default:
    the console reporter ``sv4d`` uses)."""
    acc = build_accelerator(cfg)
    report = report or ConsoleReporter(quiet=not acc.is_main_process)
    out = Path(cfg.run.output_dir)
    unet, network, _ = build_model(cfg)
    dims = vector_dims(cfg.model.kind, cfg.model.size)
    dataset, builder = build_data(cfg, unet.config.context_dim)
    opt, sched = build_optimizer(cfg, unet)
    unet, opt = acc.prepare(unet, opt)
    acc.register_for_checkpointing(sched)  # not prepared: accelerate would step it once per process
    if cfg.run.ema_decay and acc.distributed_type.name in ("FSDP", "DEEPSPEED"):
        raise ValueError(f"run.ema_decay={cfg.run.ema_decay} is not supported with {acc.distributed_type.name} "
                         "(parameters are sharded); set run.ema_decay=0 or train with DDP")
    ema = EMA(acc.unwrap_model(unet), cfg.run.ema_decay) if cfg.run.ema_decay else None
    if ema is not None:
        acc.register_for_checkpointing(ema)
    resume = resolve_resume(cfg.run.resume, out)
    identity = {"identity": cfg.identity(), "dataset": dataset.identity()}  # recorded in every checkpoint
    if resume is not None:
        changed = check_resumable(resume, identity["identity"], identity["dataset"], cfg.run.resume_with_changes)
        if changed:
            log.warning("resuming %s with changed settings (run.resume_with_changes): %s", resume, "; ".join(changed))
    state = load_checkpoint(acc, resume) if resume is not None else {"step": 0}
    step, loss, val = int(state["step"]), float(state.get("loss", "nan")), {}  # loss: when resumed at max_steps
    metrics = MetricsLog(out, cfg.run.tracker, acc.is_main_process)
    if cfg.run.validate_at_start and step == 0:
        validate(acc, cfg, unet, dataset, builder, dims, metrics, 0)
    while step < cfg.run.max_steps:
        records = curriculum_records(dataset, cfg, step)
        started = time.perf_counter()
        loss, grad_norm = train_step(acc, cfg, unet, opt, sched, builder, records, step, dims)
        seconds, step = time.perf_counter() - started, step + 1
        if ema is not None:
            ema.update(acc.unwrap_model(unet))
        if acc.is_main_process:
            report(events.train_step(step, cfg.run.max_steps, loss, sched.get_last_lr()[0]))
        if step % cfg.run.log_every == 0 or step == cfg.run.max_steps:
            metrics.log(step, {"train/loss": loss, "train/grad_norm": grad_norm, "train/lr": sched.get_last_lr()[0],
                               "train/step_s": seconds})
        if step % cfg.run.checkpoint_every == 0 or step == cfg.run.max_steps:
            save_checkpoint(acc, out, step, {"loss": loss, **identity}, cfg.run.checkpoints_total_limit)
        if (cfg.run.validate_every and step % cfg.run.validate_every == 0) or step == cfg.run.max_steps:
            val = validate(acc, cfg, unet, dataset, builder, dims, metrics, step)
        if step < cfg.run.max_steps and stop_requested(should_stop):
            path = save_checkpoint(acc, out, step, {"loss": loss, **identity}, cfg.run.checkpoints_total_limit)
            raise JobInterrupted("training", f"step {step} is saved in {path}; run again to continue", step, True)
    if isinstance(report, ConsoleReporter):
        report.close()
    if cfg.run.record_weight_hashes:
        _write_weight_hash(acc, unet, out)
    exported = finish(acc, cfg, unet, ema, network, dims)
    acc.wait_for_everyone()
    metrics.close()
    return {"step": step, "loss": loss, "export": exported, "validation": val}


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="train/train.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=None, help="YAML config (train/configs/*.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value or group.key=value (values parsed as YAML)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        try:
            cfg = load_config(args.config, args.overrides)  # every value checked here (type, finite, range)
        except TypeError as exc:  # a value of the wrong type: a user error here (later, a TypeError is a bug)
            raise ValueError(str(exc)) from None
        result = run(cfg)
    except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    log.info("done: step %d, loss %.5f, export %s", result["step"], result["loss"], result["export"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
