"""Where ``SV4DPipeline.run`` keeps its work: the pass store (CPU RAM or a work dir) and the run record (manifest:
resume, refuse, re-roll).

Work dir layout (every file written atomically by ``sv4d_models.files``)::

    manifest.json     config identity, plan, input fingerprint, finished passes, per-pass seed overrides
    inputs.pt         preprocessed input frames [F, 3, S, S] float32 in [-1, 1] (+ masks [F, S, S] or None)
    clip.pt           CLIP embedding of every input frame [F, D]
    pass_sv3d.pt      reference row of frame 0 (SV3D stage or user views): cells [V, 3, S, S] (+ latents)
    pass_007.pt       pass 7: latents [T, V, 4, h, w], decoded cells [n_writes, 3, S, S] in [-1, 1],
                      writes, seed, generator state after the pass

Every record in a folder carries ``run``: the settings that determine it (the config identity, input and reference
fingerprints, checkpoints; for the nodes, their widget values and input hash). A record is used only when its
``run`` equals the store's: a file copied from another work dir, or left by other settings, is an error naming the
file and the differing setting (``--overwrite`` / ``overwrite=True`` redoes the work), never silently reused.

Files are read back memory-mapped (``torch.load(mmap=True, weights_only=True)``), so only the frames / cells a pass
needs are paged in: peak RAM does not grow with the video length. The memory store (``offload="cpu"`` without a
work dir) keeps every pass in CPU RAM instead: faster, but RAM grows with the number of passes.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterator, Mapping

import torch

from ..config import identity_differences
from ..files import atomic_torch_save, atomic_write_json, clean_temp_files, fingerprint, read_json, torch_load
from ..sampling.plan import REFERENCE, Plan
from .stages import pass_seed

MANIFEST_FORMAT = 3  # 3: every record carries the run settings that made it
_OWN_FILES = ("manifest.json", "inputs.pt", "clip.pt")


def _pass_name(index: int) -> str:
    return "pass_sv3d.pt" if index == REFERENCE else f"pass_{index:03d}.pt"


class PassStore:
    """Per-pass records in RAM (``folder=None``) or in a folder, read back lazily.

    Args:
        folder: work dir (created if missing) or None for CPU RAM.
        temp: keep this ``TemporaryDirectory`` alive as long as the store (deleted with it).
        run: the settings that determine every record (JSON-able dict); records are written with it and read
            back only when theirs is equal (see the module docstring). None: not checked (RAM, temporary dirs).
    """

    def __init__(self, folder: str | os.PathLike | None, temp: tempfile.TemporaryDirectory | None = None,
                 run: dict | None = None):
        self.folder = None if folder is None else Path(folder)
        self.run = run
        self._temp = temp
        self._mem: dict[str, object] = {}
        self._cache: dict[str, dict] = {}
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            clean_temp_files(self.folder)  # left by a write that was killed mid-way

    @classmethod
    def open(cls, work_dir: str | os.PathLike | None, offload: str) -> "PassStore":
        if work_dir is not None:
            return cls(work_dir)
        if offload == "workdir":
            temp = tempfile.TemporaryDirectory(prefix="sv4d_pipeline_")
            return cls(temp.name, temp)
        return cls(None)

    @property
    def persistent(self) -> bool:
        """True for a caller-owned work dir (resumable)."""
        return self.folder is not None and self._temp is None

    # ---- generic records -------------------------------------------------------------------------
    def _put(self, name: str, obj) -> None:
        self._cache.pop(name, None)
        if self.run is not None:
            obj = {**obj, "run": self.run}
        if self.folder is None:
            self._mem[name] = obj
        else:
            atomic_torch_save(obj, self.folder / name)

    def _get(self, name: str):
        if self.folder is None:
            if name not in self._mem:
                raise RuntimeError(f"{name} has not been computed yet")
            return self._mem[name]
        if name not in self._cache:
            path = self.folder / name
            if not path.is_file():
                raise RuntimeError(f"{path} is missing; the work dir is incomplete (rerun with overwrite=True)")
            if len(self._cache) >= 4:  # a few memory-mapped files stay open
                self._cache.pop(next(iter(self._cache)))
            record = torch_load(path, "a sampling work file", mmap=True)
            self._check_run(path, record)
            self._cache[name] = record
        return self._cache[name]

    def _check_run(self, path: Path, record) -> None:
        """ValueError naming ``path`` and the differing settings unless ``record`` was made by this store's run."""
        if self.run is None:
            return
        if not isinstance(record, dict) or "run" not in record:
            raise ValueError(f"{path} was not written by this run (it records no run settings: an older version or "
                             "a foreign file); rerun with --overwrite (overwrite=True) to redo the sampling, or use "
                             "another work dir")
        changed = identity_differences(record["run"], self.run)
        if changed:
            raise ValueError(f"{path} was made by another run ({'; '.join(changed[:3])}"
                             f"{'; ...' if len(changed) > 3 else ''}); it is not reused: rerun with --overwrite "
                             "(overwrite=True) to redo the sampling, or use another work dir")

    def _has(self, name: str) -> bool:
        if self.folder is None:
            return name in self._mem
        if not (self.folder / name).is_file():
            return False
        self._get(name)  # a record of another run is an error, not "done"
        return True

    # ---- inputs ----------------------------------------------------------------------------------
    def save_inputs(self, frames: torch.Tensor, masks: torch.Tensor | None = None) -> None:
        """Keep the model input ``[F, 3, S, S]`` (a private copy in RAM; the caller may reuse its tensor) and the
        preprocessing masks ``[F, S, S]`` (None for tensor input)."""
        frames = frames.detach().clone() if self.folder is None else frames.contiguous()
        self._put("inputs.pt", {"frames": frames, "masks": masks})

    def has_inputs(self) -> bool:
        return self._has("inputs.pt")

    def input_masks(self) -> torch.Tensor | None:
        masks = self._get("inputs.pt")["masks"]
        return None if masks is None else masks.clone()

    @property
    def frames(self) -> torch.Tensor:
        """The input frames ``[F, 3, S, S]`` (memory-mapped with a work dir: index it, ``frames[[0, 4]]``)."""
        return self._get("inputs.pt")["frames"]

    def save_clip(self, embeds: torch.Tensor) -> None:
        self._put("clip.pt", {"embeds": embeds.contiguous()})

    def has_clip(self) -> bool:
        return self._has("clip.pt")

    @property
    def clip_embeds(self) -> torch.Tensor:
        """CLIP embeddings ``[F, D]`` of the input frames."""
        return self._get("clip.pt")["embeds"]

    # ---- passes ----------------------------------------------------------------------------------
    def save_pass(self, index: int, cells: torch.Tensor, writes, seed: int, latents: torch.Tensor | None = None,
                  generator_state: torch.Tensor | None = None) -> None:
        """Keep one pass (or with ``REFERENCE`` the reference row): this is the one pass-record format.

        ``cells [n_writes, 3, S, S]`` in [-1, 1] in the order of ``writes`` (the ``(frame, view)`` cells it sets),
        the seed it sampled with (-1: given, not sampled), its latents and the generator state after it."""
        record = {"cells": cells, "writes": [list(c) for c in writes], "seed": int(seed)}
        if latents is not None:
            record["latents"] = latents
        if generator_state is not None:
            record["generator_state"] = generator_state
        self._put(_pass_name(index), record)

    def has_pass(self, index: int) -> bool:
        return self._has(_pass_name(index))

    def load_pass(self, index: int) -> dict:
        return self._get(_pass_name(index))

    def delete_pass(self, index: int) -> None:
        name = _pass_name(index)
        self._cache.pop(name, None)
        if self.folder is None:
            self._mem.pop(name, None)
        elif (self.folder / name).exists():
            (self.folder / name).unlink()

    def outputs(self) -> "StoredOutputs":
        """``{pass index: cells}`` view for ``stages.reference_images`` / ``assemble_matrix`` (loaded lazily)."""
        return StoredOutputs(self)

    # ---- the loop's ledger (``loop.PassLedger``): a pass is done when its file is there ----------------
    def done(self, index: int) -> bool:
        return self.has_pass(index)

    def base_seed(self, index: int, default: int) -> int:
        return default

    def record(self, index: int, result) -> None:
        """Keep a ``stages.PassResult``."""
        self.save_pass(index, result.cells, result.writes, result.seed, result.latents, result.generator_state)

    def cells(self) -> "StoredOutputs":
        return self.outputs()

    # ---- manifest --------------------------------------------------------------------------------
    def read_manifest(self) -> dict | None:
        if self.folder is None or not (self.folder / "manifest.json").is_file():
            return None
        return read_json(self.folder / "manifest.json", "the work dir's manifest")

    def write_manifest(self, manifest: dict) -> None:
        if self.folder is not None:
            atomic_write_json(self.folder / "manifest.json", manifest)

    def own_files(self) -> list[str]:
        """Names of this store's files present in its folder."""
        if self.folder is None:
            return []
        return sorted(p.name for p in self.folder.iterdir() if p.name in _OWN_FILES or p.name.startswith("pass_"))

    def clear(self) -> None:
        """Delete every file this store owns (``overwrite=True``)."""
        self._cache.clear()
        self._mem.clear()
        if self.folder is not None:
            for name in self.own_files():
                (self.folder / name).unlink()


class StoredOutputs(Mapping[int, torch.Tensor]):
    """Read-only ``{pass index: cells [n_writes, 3, S, S]}`` over the finished passes of a store."""

    def __init__(self, store: PassStore):
        self.store = store

    def __getitem__(self, index: int) -> torch.Tensor:
        if not self.store.has_pass(index):
            raise KeyError(index)
        return self.store.load_pass(index)["cells"]

    def __contains__(self, index: object) -> bool:
        return isinstance(index, int) and self.store.has_pass(index)

    def __iter__(self) -> Iterator[int]:
        raise TypeError("StoredOutputs is looked up by pass index only")

    def __len__(self) -> int:
        raise TypeError("StoredOutputs is looked up by pass index only")


class RunRecord:
    """The manifest of one run in a store: what was asked, which passes are done, which seeds were re-rolled.

    ``open`` creates it, or checks that the work dir holds the same setup (else ValueError naming every
    difference) and continues; ``overwrite=True`` discards what the work dir holds.
    """

    def __init__(self, store: PassStore, manifest: dict):
        self.store, self.manifest = store, manifest

    @classmethod
    def open(cls, store: PassStore, identity: dict, plan: Plan, frames: torch.Tensor, reference: torch.Tensor | None,
             checkpoints: dict, overwrite: bool) -> "RunRecord":
        ref_id = None if not plan.given_reference_row else ("sv3d" if reference is None else fingerprint(reference))
        fresh = {"format": MANIFEST_FORMAT, "config": identity, "plan": plan.to_json(), "inputs": fingerprint(frames),
                 "reference": ref_id, "checkpoints": checkpoints, "done": [], "seed_overrides": {}}
        old = store.read_manifest()
        store.run = {key: fresh[key] for key in ("config", "inputs", "reference", "checkpoints")}
        if overwrite:
            store.clear()
            old = None
        elif old is None and store.own_files():
            raise FileExistsError(f"{store.folder} holds pipeline files {store.own_files()[:3]} but no "
                                  "manifest.json; use a new work_dir or pass overwrite=True to discard them")
        if old is not None:
            _check_same(store.folder, old, fresh)
            fresh["done"], fresh["seed_overrides"] = old["done"], old["seed_overrides"]
        record = cls(store, fresh)
        if fresh != old:  # a resume of the same run changes nothing (a refused pass leaves the folder as it was)
            store.write_manifest(fresh)
        return record

    def done(self, index: int) -> bool:
        """A pass counts as done when the manifest lists it, its file is there, was made by this run (the store
        checks) and sampled with the seed this run gives it now (re-roll overrides included)."""
        if not (index in self.manifest["done"] and self.store.has_pass(index)):
            return False
        recorded = int(self.store.load_pass(index)["seed"])
        expected = pass_seed(self.base_seed(index, self.manifest["config"]["sampling"]["seed"]), index)
        if recorded not in (expected, -1):  # -1: reference views given by the caller, not sampled
            raise ValueError(f"{self.store.folder / _pass_name(index)} was sampled with seed {recorded} but this run "
                             f"gives pass {index} seed {expected}; rerun with --overwrite (overwrite=True) to redo it")
        return True

    def mark_done(self, index: int) -> None:
        self.manifest["done"] = sorted(set(self.manifest["done"]) | {index})
        self.store.write_manifest(self.manifest)

    def record(self, index: int, result) -> None:
        """``loop.PassLedger``: keep a ``stages.PassResult`` in the store, then mark it done in the manifest."""
        self.store.record(index, result)
        self.mark_done(index)

    def cells(self) -> "StoredOutputs":
        return self.store.outputs()

    def base_seed(self, index: int, default: int) -> int:
        """The base seed of pass ``index``: a re-roll override or the run's seed."""
        return int(self.manifest["seed_overrides"].get(str(index), default))

    def reroll(self, plan: Plan, reroll: dict[int, int], user_reference: bool) -> set[int]:
        """Give the passes in ``reroll`` new base seeds and forget them and every pass depending on them."""
        valid = {p.index for p in plan.passes}
        if plan.given_reference_row and not user_reference:
            valid.add(REFERENCE)
        bad = sorted(set(int(k) for k in reroll) - valid)
        if bad:
            raise ValueError(f"reroll keys {bad} are not passes of this plan; valid: {sorted(valid)} "
                             "(-1 = the SV3D reference stage)")
        affected = plan.dependents([int(k) for k in reroll])
        self.manifest["seed_overrides"].update({str(int(k)): int(s) for k, s in reroll.items()})
        self.manifest["done"] = sorted(set(self.manifest["done"]) - affected)
        self.store.write_manifest(self.manifest)
        for index in affected:
            self.store.delete_pass(index)
        return affected


def _check_same(folder: Path, old: dict, new: dict) -> None:
    """ValueError naming every difference between a work dir's manifest and the run asked for now."""
    diffs = []
    if old.get("format") != MANIFEST_FORMAT:
        diffs.append(f"manifest format: {old.get('format')!r} (recorded) vs {MANIFEST_FORMAT!r} (now)")
    diffs += identity_differences(old.get("config", {}), new["config"])
    labels = {"inputs": "the input frames differ", "reference": "the reference views differ",
              "checkpoints": f"checkpoints: {old.get('checkpoints')} (recorded) vs {new['checkpoints']} (now)",
              "plan": "the pass plan differs"}
    for key, text in labels.items():  # the plan follows from the rest: named only when nothing else differs
        if old.get(key) != new[key] and not (key == "plan" and diffs):
            diffs.append(text)
    if diffs:
        raise ValueError(f"work_dir {folder} holds a run with a different setup ({'; '.join(diffs)}); "
                         "use a new work_dir to keep it, or pass overwrite=True to discard it")
