"""Video sweeps + mp4 writing, transforms.json export/reload."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sv4d_models.camera import Cameras
from sv4d_models.export.cameras import export_transforms, load_transforms
from sv4d_models.export.video import (
    render_bullet_time,
    render_path,
    render_time_sweep,
    render_turntable,
    turntable_times,
    write_mp4,
)
from sv4d_models.synthetic import SyntheticScene


class RecordingRender:
    """render_fn that encodes (azimuth, t) into the pixels and records its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, float]] = []

    def __call__(self, cameras: Cameras, t: float, height: int, width: int) -> torch.Tensor:
        self.calls.append((len(cameras), t))
        out = torch.empty(len(cameras), height, width, 3)
        out[..., 0] = (cameras.azimuth_deg.float() / 360.0)[:, None, None]
        out[..., 1] = t
        out[..., 2] = 0.5
        return out


def test_sweeps_follow_camera_and_time_paths():
    rf = RecordingRender()
    bt = render_bullet_time(rf, 0.25, n_views=6, height=4, chunk=4)
    assert bt.shape == (6, 4, 4, 3) and rf.calls == [(4, 0.25), (2, 0.25)]
    assert torch.allclose(bt[:, 0, 0, 0], torch.arange(6) / 6.0)
    assert torch.all(bt[..., 1] == 0.25)
    ts = render_time_sweep(rf, Cameras.orbit([0.0, 90.0], 0.0), [0.0, 0.5, 1.0], 3, 5)
    assert ts.shape == (3, 2, 3, 5, 3)
    assert torch.allclose(ts[:, 1, 0, 0, 1], torch.tensor([0.0, 0.5, 1.0]))
    assert torch.allclose(ts[2, :, 0, 0, 0], torch.tensor([0.0, 0.25]))
    tt, times = render_turntable(rf, n_frames=8, height=4)
    assert tt.shape == (8, 4, 4, 3)
    assert np.allclose(times, [0, 0.25, 0.5, 0.75, 1.0, 0.75, 0.5, 0.25])
    assert torch.allclose(tt[:, 0, 0, 1], torch.as_tensor(times, dtype=torch.float32))
    assert np.allclose(turntable_times(4, 2.0, "loop"), [0.0, 0.5, 0.0, 0.5])


def test_render_path_checks_render_fn_output():
    def wrong(cameras, t, h, w):
        return torch.zeros(len(cameras), h, w, 4)

    with pytest.raises(ValueError, match="render_fn returned"):
        render_path(wrong, Cameras.orbit([0.0], 0.0), [0.0], 4)
    with pytest.raises(ValueError, match="one time per camera"):
        render_path(RecordingRender(), Cameras.orbit([0.0, 10.0], 0.0), [0.0], 4)


@pytest.mark.parametrize("backend", ["imageio", "pyav"])
def test_mp4_frame_count_and_content(tmp_path, backend):
    pytest.importorskip("imageio_ffmpeg" if backend == "imageio" else "av")
    iio = pytest.importorskip("imageio.v3")
    scene = SyntheticScene.make("rigid", seed=0)
    frames, _ = render_turntable(scene.render_fn, n_frames=7, height=33)  # odd size: padded to 34
    path = write_mp4(frames, tmp_path / "turntable.mp4", fps=7, backend=backend)
    back = iio.imread(path, plugin="pyav") if backend == "pyav" else np.stack(list(_imageio_frames(path)))
    assert back.shape == (7, 34, 34, 3)
    err = np.abs(back[:, :33, :33].astype(float) / 255.0 - frames.numpy()).mean()
    assert err < 0.03, err
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_mp4(frames, path, backend=backend)
    write_mp4(frames[:3], path, backend=backend, overwrite=True)
    assert len(list(_imageio_frames(path))) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["turntable.mp4"]  # no temp files left


def _imageio_frames(path):
    import imageio.v2 as iio2

    reader = iio2.get_reader(str(path), "ffmpeg")
    try:
        yield from reader
    finally:
        reader.close()


def test_transforms_json_roundtrip_matrix(tmp_path):
    scene = SyntheticScene.make("rigid", seed=0)
    gt = scene.render_matrix("sv4d2", n_frames=2, size=12, elevation_deg=5.0)
    path = export_transforms(tmp_path / "ds", gt["cameras"], gt["images"], masks=gt["masks"], times=gt["times"])
    data = load_transforms(path, load_images=True)
    assert data.matrix_shape == (2, 5) and data.width == data.height == 12
    n_v = len(gt["cameras"])
    assert torch.equal(data.cameras.c2w, gt["cameras"].c2w.repeat(2, 1, 1))
    assert data.focal == pytest.approx(gt["cameras"].focal(12))
    assert data.cameras.fov_deg == pytest.approx(gt["cameras"].fov_deg)
    assert data.cameras.radius == pytest.approx(2.0)
    assert torch.allclose(data.times, gt["times"].double().repeat_interleave(n_v))
    assert torch.allclose(data.cameras.azimuth_deg[:n_v], gt["cameras"].azimuth_deg)
    assert (data.images.reshape(2, n_v, 12, 12, 3) - gt["images"]).abs().max() <= 1 / 255 + 1e-6
    assert torch.equal(data.masks.reshape(2, n_v, 12, 12), gt["masks"])
    # rays rebuilt from the reloaded cameras hit the same pixels
    o1, d1 = data.cameras[torch.tensor([1])].rays(12)
    o2, d2 = gt["cameras"][torch.tensor([1])].rays(12)
    assert torch.allclose(o1, o2) and torch.allclose(d1, d2)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_transforms(tmp_path / "ds", gt["cameras"], gt["images"], times=gt["times"])


def test_transforms_plain_list_without_azimuth_fields(tmp_path):
    cams = Cameras.orbit([20.0, 140.0], [10.0, -30.0])
    imgs = torch.rand(2, 6, 8, 3, generator=torch.Generator().manual_seed(0))
    path = export_transforms(tmp_path, cams, imgs)
    import json

    data = json.loads(path.read_text())
    for frame in data["frames"]:
        del frame["azimuth_deg"], frame["elevation_deg"]
    del data["sv4d"]
    path.write_text(json.dumps(data))
    back = load_transforms(tmp_path)
    assert (back.width, back.height, back.times) == (8, 6, None)
    assert torch.allclose(back.cameras.azimuth_deg, cams.azimuth_deg)
    assert torch.allclose(back.cameras.elevation_deg, cams.elevation_deg)
    with pytest.raises(ValueError, match="cameras"):
        export_transforms(tmp_path / "x", cams[torch.tensor([0])], imgs)
