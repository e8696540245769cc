"""The training dataset (paper appendix A.1): per object and orbit, VAE latents and CLIP embeddings of every rendered
view and frame, with the views' elevation and azimuth; read lazily from safetensors shards.

Layout of a dataset folder (written by ``python -m train.prepare_data``)::

    manifest.json          format, kind-independent facts (image size, latent shape, CLIP width), shards, records
    shard_00000.safetensors
        {rid}.latents      [F, N, 4, h, w] float16  VAE posterior means (unscaled, as the conditioner's encoders)
        {rid}.clip         [F, N, D] float16        CLIP image embeddings
        {rid}.elevation    [N] float32              degrees, per view
        {rid}.azimuth      [N] float32              degrees, per view (absolute; the sampler makes them relative)
        {rid}.images       [F, V+1, S, S, 3] uint8  only "matrix" records (validation grids at the kind's cameras)

Why safetensors shards and not WebDataset tars: a training sample needs 5-6 frame rows of one object out of a
21 x 21 render set, so random access to single tensors matters more than sequential streaming; safetensors gives
that (header up front, memory-mapped rows), holds no pickled code, and is already a dependency. Records are
grouped into shards of a few hundred MB so the file count stays small.

A training sample (``SampleBuilder``) is drawn deterministically from ``(seed, global index)``: the object and orbit,
the input view, V novel views, T frames ``t0 + s k`` and the reference frame (``t0 - s`` or ``t0``), the noise level
and the noise, and the conditioning dropout. So the union of what N processes draw for one step equals what one
process draws for the same global batch, and a resumed run draws exactly what the uninterrupted run would.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from sv4d_models.checkpoint import CheckpointSource
from sv4d_models.files import read_json
from sv4d_models.kinds import KINDS

DATASET_FORMAT = "sv4d_train_data/1"


class DatasetError(ValueError):
    """A dataset folder, manifest or shard that cannot be used; the message names it and the fix."""


@dataclass(frozen=True)
class Record:
    """One object x orbit: ``kind`` "static" / "dynamic" orbit (or "matrix"), split "train" / "val"."""

    rid: str
    shard: str
    object_id: str
    orbit: str
    split: str
    n_frames: int
    n_views: int


class ShardedDataset:
    """The records of a dataset folder; tensors are read on demand, shard files opened lazily (per process)."""

    def __init__(self, folder: str | Path, skip_bad_shards: bool = False):
        self.folder = Path(folder)
        if not (self.folder / "manifest.json").is_file():
            raise DatasetError(f"{self.folder} holds no manifest.json; create the dataset with "
                               f"`python -m train.prepare_data --out {self.folder}` or fix data.path")
        self.manifest = read_json(self.folder / "manifest.json", "the dataset manifest")
        if self.manifest.get("format") != DATASET_FORMAT:
            raise DatasetError(f"{self.folder}/manifest.json has format {self.manifest.get('format')!r}, "
                               f"expected {DATASET_FORMAT!r}; recreate it with python -m train.prepare_data")
        self.skip_bad_shards = skip_bad_shards
        self._open: dict[str, CheckpointSource] = {}
        bad = self._check_shards()
        self.records = [Record(**r) for r in self.manifest["records"] if r["shard"] not in bad]
        if not self.records:
            raise DatasetError(f"{self.folder}: no usable records (bad shards: {sorted(bad)})")

    def identity(self) -> str:
        """sha256 (16 hex digits) of the manifest: the records, shards and their sizes (recorded by checkpoints)."""
        import hashlib
        import json

        return hashlib.sha256(json.dumps(self.manifest, sort_keys=True).encode()).hexdigest()[:16]

    def _check_shards(self) -> set[str]:
        bad = set()
        for shard in self.manifest["shards"]:
            path = self.folder / shard
            problem = None if path.is_file() else "is missing"
            if problem is None:
                try:
                    self._source(shard)
                except ValueError as exc:
                    problem = f"is damaged ({exc})"
            if problem:
                if not self.skip_bad_shards:
                    raise DatasetError(f"dataset shard {path} {problem}; restore it, recreate the dataset, or set "
                                       "data.skip_bad_shards=true to train without it")
                warnings.warn(f"skipping dataset shard {path}: it {problem}")
                bad.add(shard)
        return bad

    def _source(self, shard: str) -> CheckpointSource:
        if shard not in self._open:
            self._open[shard] = CheckpointSource(self.folder / shard)
        return self._open[shard]

    def __getstate__(self) -> dict:  # DataLoader workers reopen shard files themselves
        return {**self.__dict__, "_open": {}}

    def select(self, split: str, orbits: tuple[str, ...] | None = None) -> list[Record]:
        return [r for r in self.records if r.split == split and (orbits is None or r.orbit in orbits)]

    def rows(self, rec: Record, name: str, index) -> torch.Tensor:
        """``{rid}.{name}[index]`` (first-axis index or slice), read from the shard."""
        try:
            return self._source(rec.shard).rows(f"{rec.rid}.{name}", index)
        except KeyError:
            raise DatasetError(f"dataset shard {self.folder / rec.shard} has no tensor {rec.rid}.{name}; "
                               "the manifest and the shard disagree (recreate the dataset)") from None

    def views(self, rec: Record) -> tuple[torch.Tensor, torch.Tensor]:
        """``(elevation_deg [N], azimuth_deg [N])`` of the record's views."""
        return self.rows(rec, "elevation", slice(None)).double(), self.rows(rec, "azimuth", slice(None)).double()


def relative_angles(kind: str, elevation_deg: torch.Tensor, azimuth_deg: torch.Tensor, views: list[int],
                    input_view: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The UNet's per-view camera conditioning for novel ``views`` relative to ``input_view`` (radians, float64):
    sv4d: polar ``90 - elev`` (absolute), azimuth ``(a_v - a_in) mod 360``; sv4d2*: polar ``(p_v - p_in + 90) mod
    360`` and the same azimuth (the conventions of ``sv4d_models.camera.conditioning_angles``)."""
    polar = torch.deg2rad(90.0 - elevation_deg)
    az = torch.deg2rad((azimuth_deg - azimuth_deg[input_view]) % 360.0)
    idx = torch.as_tensor(views)
    if KINDS[kind].elevation_relative:
        return (polar[idx] - polar[input_view] + math.pi / 2) % (2 * math.pi), az[idx] % (2 * math.pi)
    return polar[idx], az[idx] % (2 * math.pi)


def sample_generator(seed: int, index: int) -> torch.Generator:
    """The generator of global sample ``index`` (independent streams per index)."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(index) * 7_919 + 17) % (2**63 - 1))


class SampleBuilder:
    """Draws one training sample per global index (module docstring) for a model kind."""

    def __init__(self, dataset: ShardedDataset, kind: str, seed: int, max_stride: int, p_reference_before: float,
                 p_no_reference: float):
        spec = KINDS[kind]
        self.dataset, self.kind, self.seed = dataset, kind, seed
        self.n_t, self.n_v = spec.frames_per_pass, spec.views_per_pass
        self.max_stride, self.p_before, self.p_noref = max_stride, p_reference_before, p_no_reference
        for rec in dataset.records:
            if rec.orbit != "matrix" and (rec.n_frames < self.n_t or rec.n_views < self.n_v + 1):
                raise DatasetError(f"record {rec.rid} has {rec.n_frames} frames x {rec.n_views} views; {kind} needs "
                                   f">= {self.n_t} frames and >= {self.n_v + 1} views")

    def frames(self, g: torch.Generator, n_frames: int) -> tuple[list[int], int]:
        """T frame indices ``t0 + s k`` and the reference frame."""
        room = n_frames - 1
        max_s = max(1, min(self.max_stride, room // max(1, self.n_t - 1)))
        s = int(torch.randint(1, max_s + 1, (1,), generator=g))
        before = float(torch.rand(1, generator=g)) < self.p_before
        lo = s if before and room - s >= (self.n_t - 1) * s else 0
        t0 = int(torch.randint(lo, room - (self.n_t - 1) * s + 1, (1,), generator=g))
        frames = [t0 + s * k for k in range(self.n_t)]
        return frames, (t0 - s if lo else t0)

    def views(self, g: torch.Generator, n_views: int) -> tuple[int, list[int]]:
        """The input view and V distinct novel views (ordered by azimuth offset from the input)."""
        perm = torch.randperm(n_views, generator=g).tolist()
        input_view, others = perm[0], perm[1:self.n_v + 1]
        return input_view, sorted(others, key=lambda v: (v - input_view) % n_views)

    def __call__(self, index: int, records: list[Record]) -> dict:
        """Sample ``index`` from ``records``: tensors for ``train.diffusion.training_batch``."""
        g = sample_generator(self.seed, index)
        rec = records[int(torch.randint(len(records), (1,), generator=g))]
        frames, ref_frame = self.frames(g, rec.n_frames)
        input_view, views = self.views(g, rec.n_views)
        has_ref = not (float(torch.rand(1, generator=g)) < self.p_noref)
        rows = {t: self.dataset.rows(rec, "latents", t).float() for t in dict.fromkeys(frames + [ref_frame])}
        clip = torch.stack([self.dataset.rows(rec, "clip", t)[input_view].float() for t in frames])
        elev, az = self.dataset.views(rec)
        polars, azims = relative_angles(self.kind, elev, az, views, input_view)
        return {"target": torch.stack([rows[t][views] for t in frames]),  # [T, V, 4, h, w] unscaled
                "inputs": torch.stack([rows[t][input_view] for t in frames]),  # [T, 4, h, w]
                "clip": clip,  # [T, D]
                "reference": rows[ref_frame][views] if has_ref else None,  # [V, 4, h, w]
                "polars": polars, "azimuths": azims, "generator": g,
                "meta": {"record": rec.rid, "frames": frames, "ref_frame": ref_frame, "views": views,
                         "input_view": input_view, "has_reference": has_ref}}
