"""One ``SV4DPipeline.run``: work-dir manifest (resume / refuse / re-roll), the SV3D reference stage and the
planned passes, each persisted as soon as it finishes.

RNG: every pass draws from its own ``torch.Generator`` seeded with ``pass_seed(seed, index)`` (SV3D stage:
index -1), in the order: 1e-5 noise of the concat / cond_view / cond_motion encodes (per direction), then
the initial latent. So a pass's output depends only on its seed and its inputs, which makes resuming and
re-rolling exact. The official scripts instead draw everything from one global stream
(``torch.manual_seed(seed)`` once), so outputs are not bit-identical to theirs for the same seed.
"""
from __future__ import annotations

from typing import Callable

import torch

from .camera import SV3D_N_VIEWS, SV4D_SUBSAMPLED_VIEWS, conditioning_angles, sv3d_conditioning_angles
from .pipeline_inputs import fingerprint, pass_seed
from .pipeline_store import REFERENCE, PassStore
from .sampling import (CFGDenoiser, Denoiser, build_sv3d_cond, build_sv4d_cond, default_guider, get_sigmas_edm,
                       initial_latent, run_pass, sample_euler_edm)
from .sampling.plan import Plan, PlannedPass

MANIFEST_FORMAT = 1


class StopRequested(Exception):
    """Raised inside a sampler callback when ``should_stop()`` returns True (turned into InterruptedError)."""


def reference_sources(plan: Plan) -> dict[int, dict[tuple[int, int], int]]:
    """Per pass: ``{(t, v): index of the pass whose decoded cell is its reference}`` (-1 = given row)."""
    last = {(0, v): REFERENCE for v in range(1, plan.n_views + 1)} if plan.given_reference_row else {}
    out = {}
    for p in plan.passes:
        refs = {}
        for d in p.directions:
            if d.reference_frame is not None:
                for v in p.views:
                    cell = (d.reference_frame, v)
                    if cell not in last:
                        raise RuntimeError(f"pass {p.index} needs cell {cell} before any pass wrote it (plan bug)")
                    refs[cell] = last[cell]
        out[p.index] = refs
        last.update({c: p.index for c in p.writes})
    return out


def dependents(plan: Plan, indices) -> set[int]:
    """``indices`` plus every pass that (transitively) takes its reference views from their output."""
    sources = reference_sources(plan)
    out = set(indices)
    for p in plan.passes:  # passes only read from earlier passes: one ordered sweep is the closure
        if set(sources[p.index].values()) & out:
            out.add(p.index)
    return out


def final_sources(plan: Plan) -> dict[tuple[int, int], int]:
    """``(t, v) -> pass index`` of every generated cell's final content (-1: the given reference row)."""
    out = {(0, v): REFERENCE for v in range(1, plan.n_views + 1)} if plan.given_reference_row else {}
    out.update(plan.final_writer())
    return out


class Session:
    """State of one run (see the module docstring). Created and driven by ``SV4DPipeline.run``."""

    def __init__(self, pipe, plan: Plan, store: PassStore, callback: Callable | None,
                 should_stop: Callable[[], bool] | None):
        self.pipe, self.cfg, self.plan, self.store = pipe, pipe.config, plan, store
        self.runner, self.models = pipe.runner, pipe.models
        self.callback, self.should_stop = callback, should_stop
        self.sources = reference_sources(plan)
        self.sigmas = get_sigmas_edm(self.cfg.num_steps)
        self.guider = default_guider(plan.model_kind, self.cfg.cfg, self.cfg.min_cfg)
        self.user_reference: torch.Tensor | None = None
        self.manifest: dict = {}
        sv3d_steps = self.cfg.sv3d_num_steps if plan.given_reference_row else 0
        self.global_total = plan.total_steps + (sv3d_steps or 0)

    # ---- manifest --------------------------------------------------------------------------------
    def open(self, frames: torch.Tensor, masks: torch.Tensor | None, reference: torch.Tensor | None,
             overwrite: bool) -> None:
        """Load / check / create the manifest; store the inputs and CLIP embeddings if not done yet."""
        self.user_reference = reference
        ref_id = None if not self.plan.given_reference_row else ("sv3d" if reference is None else fingerprint(reference))
        fresh = {"format": MANIFEST_FORMAT, "config": self.cfg.resume_key(), "plan": self.plan.to_json(),
                 "inputs": fingerprint(frames), "reference": ref_id, "checkpoints": self.pipe.checkpoint_ids(),
                 "done": [], "seed_overrides": {}}
        old = self.store.read_manifest()
        if overwrite:
            self.store.clear()
            old = None
        elif old is None and self.store.foreign_files():
            raise FileExistsError(f"{self.store.folder} holds pipeline files {self.store.foreign_files()[:3]} but no "
                                  "manifest.json; use a new work_dir or pass overwrite=True to discard them")
        if old is not None:
            self._check_same(old, fresh)
            fresh["done"], fresh["seed_overrides"] = old["done"], old["seed_overrides"]
        self.manifest = fresh
        self.store.write_manifest(self.manifest)
        if not self.store.has_inputs():
            self.store.save_inputs(frames, masks)
        if not self.store.has_clip():
            n = frames.shape[0]
            chunks = [self.runner.clip(self.models.clip, self.store.input_frames(range(i, min(i + self.cfg.encoding_t, n))))
                      for i in range(0, n, self.cfg.encoding_t)]
            self.store.save_clip(torch.cat(chunks))

    def _check_same(self, old: dict, new: dict) -> None:
        diffs = []
        if old.get("format") != MANIFEST_FORMAT:
            diffs.append(f"manifest format {old.get('format')} vs {MANIFEST_FORMAT}")
        for key in sorted(set(old.get("config", {})) | set(new["config"])):
            a, b = old.get("config", {}).get(key), new["config"].get(key)
            if a != b:
                diffs.append(f"{key}: {a!r} in the work dir vs {b!r} now")
        labels = {"inputs": "the input frames differ", "reference": "the reference views differ",
                  "checkpoints": f"checkpoints {old.get('checkpoints')} vs {new['checkpoints']}",
                  "plan": "the pass plan differs"}
        for key, text in labels.items():  # the plan follows from the rest: named only when nothing else differs
            if old.get(key) != new[key] and not (key == "plan" and diffs):
                diffs.append(text)
        if diffs:
            raise ValueError(f"work_dir {self.store.folder} holds a run with a different setup ({'; '.join(diffs)}); "
                             "use a new work_dir to keep it, or pass overwrite=True to discard it")

    def _mark_done(self, index: int) -> None:
        self.manifest["done"] = sorted(set(self.manifest["done"]) | {index})
        self.store.write_manifest(self.manifest)

    def done(self, index: int) -> bool:
        return index in self.manifest["done"] and self.store.has_pass(index)

    def seed_of(self, index: int) -> int:
        return pass_seed(int(self.manifest["seed_overrides"].get(str(index), self.cfg.seed)), index)

    def apply_reroll(self, reroll: dict[int, int] | None) -> set[int]:
        """Give the passes in ``reroll`` new base seeds and forget them and every pass depending on them."""
        if not reroll:
            return set()
        valid = {p.index for p in self.plan.passes}
        if self.plan.given_reference_row and self.user_reference is None:
            valid.add(REFERENCE)
        bad = sorted(set(int(k) for k in reroll) - valid)
        if bad:
            raise ValueError(f"reroll keys {bad} are not passes of this plan; valid: {sorted(valid)} "
                             "(-1 = the SV3D reference stage)")
        affected = dependents(self.plan, [int(k) for k in reroll])
        self.manifest["seed_overrides"].update({str(int(k)): int(s) for k, s in reroll.items()})
        self.manifest["done"] = sorted(set(self.manifest["done"]) - affected)
        self.store.write_manifest(self.manifest)
        for index in affected:
            self.store.delete_pass(index)
        return affected

    # ---- running ---------------------------------------------------------------------------------
    def run_all(self) -> None:
        try:
            if self.plan.given_reference_row and not self.done(REFERENCE):
                self._check_stop()
                self._reference_stage()
                self._mark_done(REFERENCE)
            for p in self.plan.passes:
                if self.done(p.index):
                    continue
                self._check_stop()
                self._run_pass(p)
                self._mark_done(p.index)
        except StopRequested:
            finished = [i for i in self.manifest["done"]]
            where = (f"passes {finished} are saved in {self.store.folder}; run again with the same work_dir and "
                     "config to continue") if self.store.persistent else \
                "nothing was kept (no work_dir); pass work_dir= to make runs resumable"
            raise InterruptedError(f"sampling stopped by should_stop(): {where}") from None

    def _check_stop(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise StopRequested()

    def _step_callback(self, index: int, kind: str, n_steps: int, offset: int, shape: tuple[int, ...]):
        def cb(info: dict) -> None:
            if self.callback is not None:
                self.callback({"pass_index": index, "pass_kind": kind, "step": int(info["i"]), "total_steps": n_steps,
                               "sigma": float(info["sigma"]), "sigma_next": float(info["sigma_next"]),
                               "direction": info.get("direction", "forward"), "global_step": offset + int(info["i"]),
                               "global_total": self.global_total, "denoised": info["denoised"].view(shape)})
            if int(info["i"]) < n_steps - 1:
                self._check_stop()
        return cb

    def _noisy(self, images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """``images + cond_aug * randn`` (official ZeroSampler / SV3D cond_aug; always consumes the RNG)."""
        return images + self.cfg.cond_aug * torch.randn(images.shape, generator=g)

    def _reference_images(self, index: int, frame: int, views) -> torch.Tensor:
        return torch.stack([self.store.cell(self.sources[index][(frame, v)], (frame, v)) for v in views])

    def _direction_cond(self, p: PlannedPass, d, g: torch.Generator) -> tuple[dict, dict]:
        cfg, m, run = self.cfg, self.models, self.runner
        images = self.store.input_frames(d.cond_frames)  # [T, 3, S, S]
        per_view = cfg.encode_per_view if cfg.encode_per_view is not None else self.plan.mode == "official"
        concat_in = images.repeat_interleave(len(p.views), 0) if per_view else images
        concat = run.encode(m.vae["concat"], self._noisy(concat_in, g))
        ref = None
        if d.reference_frame is not None:
            ref = run.encode(m.vae["view"], self._noisy(self._reference_images(p.index, d.reference_frame, p.views), g))
        motion = run.encode(m.vae["motion"], self._noisy(images, g))
        polars, azims = conditioning_angles(self.plan.model_kind, cfg.elevations_deg, cfg.azimuths_deg)
        clip = self.store.clip(d.cond_frames).to(run.device)
        c, uc = build_sv4d_cond(self.plan.model_kind, clip, concat, motion, ref, polars, azims,
                                dims=m.vector_dims, n_views=len(p.views))
        return c, uc

    def _run_pass(self, p: PlannedPass) -> None:
        seed = self.seed_of(p.index)
        g = torch.Generator().manual_seed(seed)
        conds = {d.name: self._direction_cond(p, d, g) for d in p.directions}
        size = self.cfg.image_size // 8
        shape = (len(p.frames), len(p.views), 4, size, size)
        x = initial_latent(shape, self.sigmas, g).to(self.runner.device)
        offset = p.index * self.cfg.num_steps + (self.global_total - self.plan.total_steps)
        cb = self._step_callback(p.index, p.kind, self.cfg.num_steps, offset, shape)
        with self.runner.autocast():
            z = run_pass(self.models.unet, p, conds, self.sigmas, self.guider, shape[2:], None, cb,
                         self.runner.device, torch.float32, x_init=x)
        z = z.float().cpu()  # [T, V, 4, h, w]
        latents = torch.stack([z[p.row_of(t), p.views.index(v)] for t, v in p.writes])
        images = self.runner.decode(self.models.decoder, latents)
        cells = ((images + 1.0) / 2.0).clamp(0.0, 1.0) * 2.0 - 1.0  # official decode_latents / do_sample
        self.store.save_pass(p.index, {"latents": z, "cells": cells, "writes": p.writes, "seed": seed,
                                       "generator_state": g.get_state()})

    def _reference_stage(self) -> None:
        writes = [(0, v) for v in range(1, self.plan.n_views + 1)]
        if self.user_reference is not None:
            self.store.save_pass(REFERENCE, {"cells": self.user_reference.clone(), "writes": writes, "seed": -1})
            return
        cfg, m, run = self.cfg, self.pipe.sv3d_models(), self.runner
        seed = self.seed_of(REFERENCE)
        g = torch.Generator().manual_seed(seed)
        image = self.store.input_frames([0])  # [1, 3, S, S]
        clip = run.clip(m.clip, image).to(run.device)
        latent = run.encode(m.vae["concat"], self._noisy(image, g))
        polars = azims = None
        if m.kind == "sv3d_p":
            polars, azims = sv3d_conditioning_angles(10.0 if cfg.elevations_deg is None else cfg.elevations_deg,
                                                     cfg.azimuths_deg)
        c, uc = build_sv3d_cond(m.kind, clip, latent, SV3D_N_VIEWS, polars, azims, cfg.cond_aug, dims=m.vector_dims)
        sigmas = get_sigmas_edm(cfg.sv3d_num_steps)
        size = cfg.image_size // 8
        x = initial_latent((SV3D_N_VIEWS, 4, size, size), sigmas, g).to(run.device)
        model = CFGDenoiser(Denoiser(m.unet, SV3D_N_VIEWS, 0.0), c, uc, default_guider(m.kind))
        cb = self._step_callback(REFERENCE, "sv3d", cfg.sv3d_num_steps, 0, tuple(x.shape))
        with run.autocast():
            z = sample_euler_edm(model, x, sigmas, callback=cb).float().cpu()  # [21, 4, h, w]
        orbit = run.decode(m.decoder, z)
        orbit[-1] = image[0]  # the last (azimuth 0) frame is replaced by the input, as the official script
        orbit = torch.roll(orbit.clamp(-1.0, 1.0), 1, 0)  # index k = azimuth k * 360/21, 0 = input view
        cells = orbit[list(SV4D_SUBSAMPLED_VIEWS[1:])]
        self.store.save_pass(REFERENCE, {"latents": z, "cells": cells, "writes": writes, "seed": seed,
                                         "generator_state": g.get_state()})
