"""Training checkpoints: ``checkpoint-{step}`` folders written by ``accelerator.save_state``, completed atomically,
resumed from the newest, rotated to a total limit; plus the UNet EMA that is saved with them.

Atomic completion: every process writes into ``checkpoint-{step}.partial``; when all are done the main process
writes ``trainer_state.json`` into it and renames the folder to ``checkpoint-{step}`` (a directory rename is atomic
on POSIX file systems). A crash mid-write leaves only a ``.partial`` folder, which resume ignores (and the next save
of that step replaces), so the previous checkpoint stays the one used. accelerate reads its files back with
``weights_only=True`` (no code in a checkpoint is executed).
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import torch

from sv4d_models.config import identity_differences
from sv4d_models.files import atomic_write_json, read_json

_NAME = re.compile(r"^checkpoint-(\d+)$")


def checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoint folders ``(step, path)``, oldest first."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = _NAME.match(p.name)
        if m and p.is_dir() and (p / "trainer_state.json").is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def resolve_resume(resume: str, output_dir: str | Path) -> Path | None:
    """``"latest"`` -> the newest complete checkpoint (or None), ``"none"`` -> None, else that folder."""
    if resume == "none":
        return None
    if resume == "latest":
        found = checkpoints(output_dir)
        return found[-1][1] if found else None
    path = Path(resume)
    if not (path / "trainer_state.json").is_file():
        raise FileNotFoundError(f"run.resume={resume!r} is not a complete checkpoint folder (no trainer_state.json); "
                                f"use 'latest', 'none' or a checkpoint-<step> folder of {output_dir}")
    return path


def save_checkpoint(accelerator, output_dir: str | Path, step: int, state: dict, total_limit: int) -> Path:
    """Collective: ``save_state`` into ``checkpoint-{step}.partial``, then (main process) add the trainer state,
    rename atomically and delete the oldest checkpoints beyond ``total_limit`` (0 = keep all)."""
    final = Path(output_dir) / f"checkpoint-{step}"
    partial = final.with_name(final.name + ".partial")
    if accelerator.is_main_process and partial.exists():
        shutil.rmtree(partial)  # left by a crash while saving this step
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        atomic_write_json(partial / "trainer_state.json", {"step": step, **state})
        if final.exists():
            shutil.rmtree(final)
        partial.rename(final)
        old = checkpoints(output_dir)
        for _, path in old[: max(0, len(old) - total_limit)] if total_limit else []:
            shutil.rmtree(path)
    accelerator.wait_for_everyone()
    return final


def check_resumable(path: Path, identity: dict, dataset_id: str, allow_changes: bool) -> list[str]:
    """The settings (and dataset) ``path`` was trained with against this run's; ValueError naming the checkpoint
    and every difference unless ``allow_changes`` (then they are returned, for a warning). Reads only
    ``trainer_state.json``: nothing is loaded when the run is refused."""
    state = read_json(path / "trainer_state.json", "a training checkpoint's state")
    if "identity" not in state:
        changed = ["the checkpoint records no settings (written by an older version)"]
    else:
        changed = identity_differences(state["identity"], identity)
        if state.get("dataset") != dataset_id:
            changed.append(f"dataset: {state.get('dataset')} (recorded) vs {dataset_id} (now): another data.path "
                           "content")
    if changed and not allow_changes:
        raise ValueError(f"{path} was trained with other settings ({'; '.join(changed[:4])}"
                         f"{'; ...' if len(changed) > 4 else ''}); go back to them to continue, set run.resume=none "
                         "or a new run.output_dir to start over, or run.resume_with_changes=true to continue with "
                         "the new ones")
    return changed


def load_checkpoint(accelerator, path: Path) -> dict:
    """Restore model, optimiser, scheduler and registered objects; returns ``trainer_state.json``. A damaged
    checkpoint (truncated or missing file) is a ValueError naming the folder."""
    state = read_json(path / "trainer_state.json", "a training checkpoint's state")
    try:
        accelerator.load_state(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors / torch / pickle errors of every kind: the files are damaged
        raise ValueError(f"{path} is damaged and cannot be loaded ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:200]}); delete that checkpoint folder to resume from the one "
                         "before it, or set run.resume=none to start over") from None
    return state


class EMA:
    """Exponential moving average of parameters (``decay`` per optimiser step), saved with the checkpoints."""

    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay = float(decay)
        self.shadow = {k: p.detach().clone().float() for k, p in module.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        for k, p in module.named_parameters():
            if k in self.shadow:
                self.shadow[k].lerp_(p.detach().float(), 1.0 - self.decay)

    def state_dict(self) -> dict:
        return {"decay": torch.tensor(self.decay), **{f"shadow.{k}": v for k, v in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.decay = float(state["decay"])
        self.shadow = {k[len("shadow."):]: v.float() for k, v in state.items() if k.startswith("shadow.")}

    def weights(self, module: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The module's state dict with EMA values for the averaged parameters."""
        return {k: self.shadow.get(k, v).to(v.dtype) for k, v in module.state_dict().items()}


class MetricsLog:
    """Scalars to TensorBoard (when installed and asked for) or a CSV file, main process only."""

    def __init__(self, output_dir: Path, tracker: str, enabled: bool):
        self.enabled, self.writer, self.csv = enabled, None, output_dir / "logs" / "metrics.csv"
        if not enabled:
            return
        if tracker in ("auto", "tensorboard"):
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.writer = SummaryWriter(str(output_dir / "logs"))
            except ImportError:
                if tracker == "tensorboard":
                    raise ImportError("run.tracker='tensorboard' needs the tensorboard package "
                                      "(pip install tensorboard), or use run.tracker=csv") from None
        self.csv.parent.mkdir(parents=True, exist_ok=True)

    def log(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(k, v, step)
        new = not self.csv.exists()
        with open(self.csv, "a", encoding="utf-8") as f:  # long format: metrics differ from row to row
            if new:
                f.write("step,metric,value\n")
            f.writelines(f"{step},{k},{float(v):.7g}\n" for k, v in values.items())

    def image(self, step: int, name: str, image: torch.Tensor) -> None:
        if self.enabled and self.writer is not None:
            self.writer.add_image(name, image.permute(2, 0, 1), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
