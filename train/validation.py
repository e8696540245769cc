"""Validation: the loss at fixed noise levels on held-out orbits, and an image grid sampled on a held-out object
through the library's sampling loop (``run_plan``, as ``SV4DPipeline.run``), with its PSNR against the renders."""
from __future__ import annotations

import torch

from sv4d_models.files import atomic_write_bytes
from sv4d_models.images import grid_rows, png_bytes, psnr
from sv4d_models.kinds import KINDS
from sv4d_models.pipeline import PassSettings, PassStore, assemble_matrix, run_plan
from sv4d_models.sampling import REFERENCE, make_plan

from .data import Record, SampleBuilder, ShardedDataset
from .diffusion import diffusion_loss, fixed_sigma_batch

VAL_INDEX_OFFSET = 10**12  # validation draws never coincide with training draws


@torch.no_grad()
def validation_losses(unet, builder: SampleBuilder, records: list[Record], sigmas, n_samples: int, kind: str,
                      dims, device) -> dict[str, float]:
    """``{"val/loss_sigma_<s>": mean loss}`` over the same ``n_samples`` draws and noise at every call."""
    was_training = unet.training
    unet.eval()
    out = {}
    for sigma in sigmas:
        samples = [builder(VAL_INDEX_OFFSET + i, records) for i in range(n_samples)]
        batch = fixed_sigma_batch(samples, kind, dims, sigma)
        out[f"val/loss_sigma_{sigma:g}"] = float(diffusion_loss(unet, batch, device).mean())
    unet.train(was_training)
    return out


@torch.no_grad()
def validation_grid(models, dataset: ShardedDataset, record: Record, steps: int, seed: int) -> dict:
    """Sample the first pass of the held-out ``record`` (a "matrix" record at the kind's cameras).

    Returns ``{"grid": [rows*S, cols*S, 3]`` (generated rows above the ground truth), ``"psnr"``: generated novel
    views vs the renders, ``"psnr_copy_input"``: the trivial baseline of repeating the input view}.
    """
    spec = KINDS[models.kind]
    gt = dataset.rows(record, "images", slice(0, spec.frames_per_pass)).float() / 255.0  # [T, V+1, S, S, 3]
    if gt.shape[1] != spec.views_per_pass + 1:
        raise ValueError(f"validation record {record.rid} has {gt.shape[1]} columns; {models.kind} needs "
                         f"{spec.views_per_pass + 1} (prepare the dataset with --matrix-kind {models.kind})")
    frames = gt[:, 0].permute(0, 3, 1, 2) * 2.0 - 1.0  # [T, 3, S, S]
    the_plan = make_plan(models.kind, spec.frames_per_pass, mode="extended", num_steps=steps)
    known = {}
    if the_plan.given_reference_row:
        known[REFERENCE] = gt[0, 1:].permute(0, 3, 1, 2) * 2.0 - 1.0  # ground-truth views of frame 0
    first, store = the_plan.passes[0], PassStore(None)  # the first pass, sampled as SV4DPipeline.run samples it
    was_training = models.unet.training
    models.unet.eval()
    run_plan(models, the_plan, frames, models.clip_embed(frames), store, PassSettings(seed), known=known,
             select=lambda p: p.index == first.index)
    models.unet.train(was_training)
    images = assemble_matrix(the_plan, frames, {**known, first.index: store.load_pass(first.index)["cells"]}).images
    generated, truth = images[:, 1:], gt[:, 1:]
    rows = grid_rows(torch.cat([images, gt], 0))  # generated [T, V+1] above the truth [T, V+1]
    return {"grid": rows, "psnr": psnr(generated, truth),
            "psnr_copy_input": psnr(gt[:, :1].expand_as(truth), truth)}


def write_png(image: torch.Tensor, path) -> None:
    """``[H, W, 3]`` in [0, 1] -> PNG (atomic)."""
    atomic_write_bytes(path, png_bytes(image), overwrite=True)
