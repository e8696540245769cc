"""No file the project reads is unpickled: a hostile pickle whose payload would create a marker file is refused by
every reader (work-dir pass files, NeRF fit checkpoints, load_fit_result, training checkpoints, LPIPS weights)."""
from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch


class Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):  # unpickling this calls open(marker, "w"): code execution
        return (open, (str(self.marker), "w"))


def hostile(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": "sv4d_nerf_fit/2", "payload": Payload(marker)}, path)  # a valid torch file, hostile inside
    return path


def test_hostile_pickle_never_runs(tmp_path):
    from sv4d_models.nerf.fit import load_fit_result
    from sv4d_models.metrics.lpips import load_lpips_weights, lpips_network
    from sv4d_models.pipeline.store import PassStore

    marker = tmp_path / "pwned"
    with pytest.raises(pickle.UnpicklingError):
        load_fit_result(hostile(tmp_path / "nerf" / "nerf_checkpoint.pt", marker))
    store = PassStore(tmp_path / "work")
    hostile(tmp_path / "work" / "pass_000.pt", marker)
    with pytest.raises(pickle.UnpicklingError):
        store.load_pass(0)
    with pytest.raises(pickle.UnpicklingError):
        load_lpips_weights(lpips_network("alex"), hostile(tmp_path / "alex.pth", marker), tmp_path / "heads.pth")
    assert not marker.exists()


def test_a_hostile_fit_checkpoint_in_a_reconstruction_folder_is_refused(tmp_path):
    """reconstruct() resumes from out/nerf/nerf_checkpoint.pt automatically: a planted file must not execute."""
    from sv4d_models.nerf.fit_config import tiny_preset
    from sv4d_models.reconstruction import reconstruct
    from sv4d_models.synthetic import SyntheticScene

    marker = tmp_path / "pwned"
    hostile(tmp_path / "out" / "nerf" / "nerf_checkpoint.pt", marker)
    m = SyntheticScene.make(kind="static", seed=1).render_matrix(n_frames=2, size=16)
    with pytest.raises(pickle.UnpicklingError):
        reconstruct(m["images"], m["masks"], m["cameras"], m["times"], tmp_path / "out",
                    config=tiny_preset(static_steps=1, dynamic_steps=1))
    assert not marker.exists()


def test_training_checkpoints_load_weights_only(tmp_path):
    """accelerate's load_state (used by train/) reads optimiser / scheduler / custom states with weights_only."""
    from accelerate.utils import load

    marker = tmp_path / "pwned"
    with pytest.raises(pickle.UnpicklingError):
        load(hostile(tmp_path / "optimizer.bin", marker))
    assert not marker.exists()
