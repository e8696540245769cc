"""Input side of SV4D sampling: load_frames, validate_frames, preprocess_frames (both modes), pingpong_pad."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sv4d_models.preprocess import (Preprocessed, _preprocess, load_frames, pingpong_pad, preprocess_frames,
                                    validate_frames)

DATA = Path(__file__).resolve().parent / "data" / "samples"  # copies of ../shared/data (PROVENANCE.md)
RED = (0.8, 0.1, 0.1)


def rgba_frame(h: int, w: int, rows: tuple[int, int], cols: tuple[int, int], color=RED) -> torch.Tensor:
    """[H, W, 4] transparent frame with an opaque coloured rectangle at rows [r0, r1), cols [c0, c1)."""
    f = torch.zeros(h, w, 4)
    f[rows[0]:rows[1], cols[0]:cols[1], :3] = torch.tensor(color)
    f[rows[0]:rows[1], cols[0]:cols[1], 3] = 1.0
    return f


def over_white(rgba: torch.Tensor) -> torch.Tensor:
    a = rgba[..., 3:]
    return rgba[..., :3] * a + (1 - a)


def mask_bbox(mask: torch.Tensor, thr: float = 0.5) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) end-exclusive of mask > thr ([H, W])."""
    rows, cols = (mask > thr).any(1).nonzero()[:, 0], (mask > thr).any(0).nonzero()[:, 0]
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def no_mp4(frames: torch.Tensor, official: bool, size: int = 64, ratio: float = 0.917) -> Preprocessed:
    return _preprocess(frames, size, ratio, 250, False, official, mp4=False)


# ----------------------------------------------------------------------------------------------------- loading
@pytest.mark.parametrize("name,channels", [("test_video1.mp4", 3), ("robot.gif", 4), ("gear.gif", 4)])
def test_load_sample_files(name, channels):
    path = (DATA / name)
    frames = load_frames(path, max_frames=21)
    assert frames.shape == (21, 576, 576, channels) and frames.dtype == torch.float32
    assert 0.0 <= float(frames.min()) and float(frames.max()) <= 1.0 and float(frames.std()) > 0.05
    first3 = load_frames(str(path), max_frames=3)  # decoding stops early, same leading frames
    assert torch.equal(first3, frames[:3])


def test_load_gif_frames_are_rgba_like_official():
    path = (DATA / "robot.gif")
    with Image.open(path) as im:
        im.seek(2)
        expected = np.asarray(im.convert("RGBA")).astype(np.float32) / 255
    assert torch.equal(load_frames(path, max_frames=3)[2], torch.from_numpy(expected))


def _write_pngs(folder, names, size=(12, 10)):
    rng = np.random.default_rng(0)
    arrays = {}
    for name in names:
        arrays[name] = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(arrays[name]).save(folder / name)
    return arrays


def test_load_folder_sorted_by_name_and_filtered(tmp_path):
    arrays = _write_pngs(tmp_path, ["b.png", "a.png", "c.PNG"])
    (tmp_path / "notes.txt").write_text("not an image")
    frames = load_frames(tmp_path)
    assert frames.shape == (3, 10, 12, 3)
    for i, name in enumerate(["a.png", "b.png", "c.PNG"]):
        assert torch.equal(frames[i], torch.from_numpy(arrays[name]).float() / 255)
    assert torch.equal(load_frames(tmp_path, max_frames=2), frames[:2])


def test_load_glob_pattern_and_single_image(tmp_path):
    arrays = _write_pngs(tmp_path, ["f2.png", "f1.png", "g1.png"])
    frames = load_frames(str(tmp_path / "f*.png"))
    assert frames.shape == (2, 10, 12, 3)
    assert torch.equal(frames[0], torch.from_numpy(arrays["f1.png"]).float() / 255)
    assert torch.equal(load_frames(tmp_path / "g1.png")[0], torch.from_numpy(arrays["g1.png"]).float() / 255)


def test_load_tensor_array_and_list_inputs():
    u8 = torch.randint(0, 256, (4, 9, 7, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    expected = u8.float() / 255
    assert torch.equal(load_frames(u8), expected)
    assert torch.equal(load_frames(u8.numpy()), expected)
    assert torch.equal(load_frames(expected.double()), expected)
    assert torch.equal(load_frames(u8, max_frames=2), expected[:2])
    pil = [Image.fromarray(f.numpy(), "RGBA") for f in u8]
    assert torch.equal(load_frames(pil), expected)
    mixed = load_frames([u8[0].numpy(), u8[1, ..., :3].numpy()])  # RGB + RGBA -> RGBA, opaque alpha added
    assert mixed.shape == (2, 9, 7, 4) and torch.equal(mixed[1, ..., 3], torch.ones(9, 7))


def test_load_path_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        load_frames(tmp_path / "nope.mp4")
    (tmp_path / "clip.txt").write_text("x")
    with pytest.raises(ValueError, match=r"unsupported file extension '\.txt'.*\.mp4.*\.gif.*\.png"):
        load_frames(tmp_path / "clip.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="contains no .jpg/.jpeg/.png images"):
        load_frames(empty)
    with pytest.raises(FileNotFoundError, match="no files match"):
        load_frames(str(tmp_path / "*.jpg"))
    with pytest.raises(ValueError, match="max_frames"):
        load_frames(torch.zeros(2, 4, 4, 3), max_frames=0)
    with pytest.raises(TypeError, match="unsupported frame source"):
        load_frames(3.5)


def test_load_video_pyav_fallback(monkeypatch):
    path = (DATA / "test_video1.mp4")
    pytest.importorskip("av")
    reference = load_frames(path, max_frames=2)
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # imageio-ffmpeg missing -> PyAV
    frames = load_frames(path, max_frames=2)
    assert frames.shape == reference.shape
    assert float((frames - reference).abs().mean()) < 2 / 255  # same FFmpeg decode, RGB conversion may differ


def test_load_video_without_frames_errors(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"")
    with pytest.raises(ValueError, match=r"could not decode video .*broken\.mp4.*valid, complete video"):
        load_frames(tmp_path / "broken.mp4")


# ----------------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("frames,message", [
    (torch.zeros(0, 8, 8, 3), "no frames"),
    ([], "no frames"),
    (torch.zeros(2, 3, 8, 8), r"\(3, 8, 8\) \(8 channels\).*permute\(0, 2, 3, 1\)"),
    (torch.zeros(2, 8, 8, 2), "2 channels"),
    (torch.zeros(8, 8, 3), r"\[F, H, W, C\].*x\[None\]"),
    ([np.zeros((8, 8, 3)), np.zeros((8, 8, 3)), np.zeros((8, 9, 3))], r"frame 2 is 8x9 \(HxW\) but frame 0 is 8x8"),
    (torch.full((3, 4, 4, 3), 0.5).index_put_((torch.tensor([1]),), torch.tensor(float("nan"))),
     r"48 NaN/inf values \(first in frame 1\).*nan_to_num"),
    (torch.full((2, 4, 4, 3), float("inf")), "NaN/inf"),
    (torch.full((2, 4, 4, 3), 255.0), r"range from 255 to 255, outside \[0, 1\].*divide 0-255 floats by 255"),
    (torch.full((2, 4, 4, 3), -0.5), r"\(x \+ 1\) / 2"),
])
def test_validate_frames_errors(frames, message):
    with pytest.raises(ValueError, match=message):
        validate_frames(frames)
    with pytest.raises(ValueError, match=message):  # load_frames / preprocess_frames use the same checks
        load_frames(frames)


def test_validate_frames_accepts_good_input():
    validate_frames(torch.rand(2, 5, 6, 3))
    validate_frames(torch.zeros(1, 5, 6, 4, dtype=torch.uint8))
    validate_frames([np.zeros((5, 6, 4), np.uint8), Image.new("RGBA", (6, 5))])
    with pytest.raises(TypeError):
        validate_frames("frames.mp4")


# ----------------------------------------------------------------------------------------------------- geometry
def test_rgba_object_is_centred_and_fills_ratio():
    frames = torch.stack([rgba_frame(96, 96, (30, 66), (24, 72))] * 2)
    out = preprocess_frames(frames, size=64)
    assert out.images.shape == (2, 3, 64, 64) and out.masks.shape == (2, 64, 64)
    assert out.box == (24, 30, 72, 66) and out.half == 24 and out.crop == (24, 24, 72, 72)
    assert out.side == int(48 / 0.917) == 52 and out.scale == pytest.approx(64 / 52) and out.paste == (2, 2)
    x0, y0, x1, y1 = mask_bbox(out.masks[0])
    assert (x0 + x1) / 2 == pytest.approx(32, abs=1) and (y0 + y1) / 2 == pytest.approx(32, abs=1)
    assert (x1 - x0) / 64 == pytest.approx(0.917, abs=0.03)  # widest side spans ~91.7 % (int() canvas rounding)
    assert (y1 - y0) == pytest.approx(36 * 64 / 52, abs=1.5)
    img = (out.images[0] + 1) / 2
    assert torch.allclose(img[:, 32, 32], torch.tensor(RED), atol=0.01)  # object colour survives
    assert torch.allclose(img[:, :2, :2], torch.ones(3, 2, 2), atol=1e-4)  # transparent canvas -> white
    assert float(out.images.min()) >= -1 and float(out.images.max()) <= 1


def test_union_box_over_frames():
    frames = torch.stack([rgba_frame(64, 64, (20, 30), (10, 30)), rgba_frame(64, 64, (25, 50), (28, 40))])
    out = preprocess_frames(frames, size=64)
    assert out.box == (10, 20, 40, 50)
    assert out.half == max(32 - 10, 40 - 32, 32 - 20, 50 - 32) == 22


def test_rgb_white_background_matches_rgba():
    rgba = torch.stack([rgba_frame(80, 80, (20, 56), (28, 52)), rgba_frame(80, 80, (22, 58), (26, 50))])
    a, b = preprocess_frames(rgba, size=64), preprocess_frames(over_white(rgba), size=64)
    assert a.box == b.box == (26, 20, 52, 58) and (a.crop, a.paste, a.side) == (b.crop, b.paste, b.side)
    assert torch.equal(a.masks, b.masks)
    assert torch.allclose(a.images[..., 20:44, 20:44], b.images[..., 20:44, 20:44], atol=1e-5)  # interior
    assert float((a.images - b.images).abs().mean()) * 127.5 < 2  # edges: ringing differs (as in official)


@pytest.mark.parametrize("hw,rows,cols", [(64, (20, 44), (10, 40)), (75, (0, 60), (30, 75)), (64, (5, 30), (0, 64))])
def test_official_and_default_agree_on_square_inputs(hw, rows, cols):
    rgba = rgba_frame(hw, hw, rows, cols)
    rgba[..., :3] *= torch.linspace(0.5, 1.0, hw)[:, None, None]  # shading so resampling matters
    for frames in (rgba[None].repeat(2, 1, 1, 1), over_white(rgba)[None].repeat(2, 1, 1, 1)):
        d, o = no_mp4(frames, False), no_mp4(frames, True)
        assert (d.box, d.crop, d.paste, d.half, d.side) == (o.box, o.crop, o.paste, o.half, o.side)
        diff = ((d.images - o.images).abs() * 127.5).flatten()  # in 0-255 levels
        assert float(diff.mean()) < 0.5 and float(diff.quantile(0.99)) < 3 and float(diff.max()) < 40
        assert torch.equal(d.masks, o.masks)


def test_non_square_default_keeps_object_centred():
    frames = rgba_frame(64, 128, (22, 42), (44, 84))[None]  # centred object, 40 wide x 20 tall
    out = preprocess_frames(frames, size=64)
    assert out.half == 20 and out.crop == (44, 12, 84, 52) and out.side == 43
    x0, y0, x1, y1 = mask_bbox(out.masks[0])
    assert (x0 + x1) / 2 == pytest.approx(32, abs=1) and (y0 + y1) / 2 == pytest.approx(32, abs=1)
    assert (x1 - x0) == pytest.approx(40 * 64 / 43, abs=1.5)


def test_non_square_official_reproduces_axis_mixing():
    # official: half = max(H//2 - x0, W//2 - y0, x1 - H//2, y1 - W//2) with x = column, y = row
    frames = rgba_frame(64, 128, (22, 42), (44, 84))[None]  # H=64 (centre row 32), W=128 (centre col 64)
    out = no_mp4(frames, True)
    assert out.half == max(32 - 44, 64 - 22, 84 - 32, 42 - 64) == 52
    # rows [max(0, 32-52), +min(64, 104)) = [0, 64); cols [max(0, 64-52), +min(128, 104)) = [12, 116)
    assert out.crop == (12, 0, 116, 64) and out.side == int(104 / 0.917) == 113
    assert out.paste == (56 - 104 // 2, 56 - 64 // 2) == (4, 24)
    x0, y0, x1, y1 = mask_bbox(out.masks[0])  # object at canvas cols 36..76, rows 46..66 -> much smaller than default
    assert (x1 - x0) == pytest.approx(40 * 64 / 113, abs=1.5) and (y1 - y0) == pytest.approx(20 * 64 / 113, abs=1.5)
    # tall frame, object near the top: the mixed axes give half = 44 and cut rows [20, 108) -> the object is lost
    tall = rgba_frame(128, 64, (2, 12), (20, 44))[None]
    lost = no_mp4(tall, True)
    assert lost.half == 44 and lost.crop == (0, 20, 64, 108) and float(lost.masks.max()) < 0.01
    assert float(lost.images.min()) > 0.99  # all white
    kept = preprocess_frames(tall, size=64)
    assert float(kept.masks.max()) > 0.99


def test_official_mode_with_mp4_roundtrip():
    rgba = rgba_frame(64, 64, (16, 48), (12, 52))
    rgba[..., :3] *= torch.linspace(0.4, 1.0, 64)[None, :, None]
    frames = rgba[None].repeat(3, 1, 1, 1)
    full = preprocess_frames(frames, size=64, official=True)
    before = no_mp4(frames, True)
    assert full.images.shape == (3, 3, 64, 64) and full.official
    assert float(full.images.min()) >= -1 and float(full.images.max()) <= 1
    levels = (full.images + 1) * 127.5
    assert torch.allclose(levels, levels.round(), atol=1e-3)  # uint8 levels
    diff = (full.images - before.images).abs() * 127.5
    assert 0 < float(diff.mean()) < 4  # lossy but close
    with pytest.raises(ValueError, match="divisible by 16"):
        preprocess_frames(frames, size=72, official=True)


def test_preprocess_sample_video_modes_agree():
    path = (DATA / "test_video1.mp4")
    frames = load_frames(path, max_frames=2)
    d, o = no_mp4(frames, False, size=128), no_mp4(frames, True, size=128)
    assert d.crop == o.crop and d.side == o.side
    assert float((d.images - o.images).abs().mean()) * 127.5 < 0.5


PARITY_FIXTURE = Path(__file__).parent / "data" / "preprocess_official_parity.npz"
PARITY_CASES = ["rgba_wide", "rgb_tall", "rgba_tall_top", "rgba_square"]


@pytest.mark.parametrize("name", PARITY_CASES)
def test_official_mode_matches_official_code_outputs(name):
    """Fixture = outputs of the unmodified official preprocess_video/read_video (scripts/make_preprocess_parity_fixture.py)."""
    data = np.load(PARITY_FIXTURE)
    frames = torch.from_numpy(data[f"{name}/input"])
    size, ratio = int(data["size"]), float(data["ratio"])
    to_u8 = lambda x: ((x + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # noqa: E731
    before = _preprocess(frames, size, ratio, 250, False, True, mp4=False)
    np.testing.assert_array_equal(to_u8(before.images), data[f"{name}/premp4"])  # bit-exact before the codec
    final = to_u8(preprocess_frames(frames, size=size, image_frame_ratio=ratio, official=True).images)
    diff = np.abs(final.astype(int) - data[f"{name}/final"].astype(int))
    assert diff.mean() < 1.0  # codec round trip: bit-exact with the FFmpeg builds used here, not guaranteed elsewhere


# ----------------------------------------------------------------------------------------------------- errors
def test_preprocess_argument_and_content_errors(monkeypatch):
    frames = rgba_frame(32, 32, (8, 24), (8, 24))[None]
    with pytest.raises(ValueError, match="image_frame_ratio"):
        preprocess_frames(frames, size=64, image_frame_ratio=1.5)
    with pytest.raises(ValueError, match="size must be"):
        preprocess_frames(frames, size=4)
    with pytest.raises(ValueError, match="white_threshold"):
        preprocess_frames(frames, size=64, white_threshold=300)
    with pytest.raises(ValueError, match="no foreground.*remove_bg=True"):
        preprocess_frames(torch.ones(2, 32, 32, 3), size=64)
    monkeypatch.setitem(sys.modules, "rembg", None)  # rembg not installed
    with pytest.raises(ImportError, match="pip install rembg"):
        preprocess_frames(over_white(frames), size=64, remove_bg=True)
    assert preprocess_frames(frames, size=64, remove_bg=True).box == (8, 8, 24, 24)  # RGBA: rembg skipped


def test_remove_bg_uses_rembg_only_with_local_weights(monkeypatch, tmp_path):
    import types

    calls = []

    def fake_remove(img, alpha_matting):  # stands in for rembg.remove: keeps pixels darker than white
        calls.append(alpha_matting)
        a = np.asarray(img.convert("RGBA")).copy()
        a[..., 3] = np.where(a[..., :3].mean(-1) < 250, 255, 0)
        return Image.fromarray(a, "RGBA")

    monkeypatch.setitem(sys.modules, "rembg", types.SimpleNamespace(remove=fake_remove))
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    frames = over_white(rgba_frame(32, 32, (8, 24), (4, 20)))[None]
    with pytest.raises(RuntimeError, match="u2net.onnx not found.*never downloads"):
        preprocess_frames(frames, size=64, remove_bg=True)
    (tmp_path / "u2net.onnx").write_bytes(b"stub")
    out = preprocess_frames(frames, size=64, remove_bg=True)
    assert calls == [True] and out.box == (4, 8, 20, 24)


def test_preprocess_accepts_uint8_tensor():
    frames = rgba_frame(32, 32, (8, 24), (8, 24))[None]
    a = preprocess_frames(frames, size=64)
    b = preprocess_frames((frames * 255).round().to(torch.uint8), size=64)
    assert float((a.images - b.images).abs().max()) * 127.5 < 1  # < 1 level: only the input quantisation


# ----------------------------------------------------------------------------------------------------- padding
@pytest.mark.parametrize("count,n", [(3, 5), (3, 6), (4, 4), (6, 4), (11, 21), (21, 21), (1, 2)])
def test_pingpong_pad_matches_official_rule(count, n):
    images = list(range(count))
    official = (images + images[::-1])[:n] if count < n else images[:n]  # read_video: [:n] then ping-pong
    assert pingpong_pad(images, n) == official
    assert pingpong_pad(torch.arange(count), n).tolist() == official


def test_pingpong_pad_examples_and_errors():
    assert pingpong_pad(torch.arange(3), 5).tolist() == [0, 1, 2, 2, 1]
    frames = torch.rand(3, 4, 4, 3)
    assert torch.equal(pingpong_pad(frames, 6)[3], frames[2])
    with pytest.raises(ValueError, match=r"3 frames cannot be ping-pong padded to 7.*at least 4"):
        pingpong_pad(torch.arange(3), 7)
    with pytest.raises(ValueError, match="no frames"):
        pingpong_pad([], 3)
    with pytest.raises(ValueError, match="positive int"):
        pingpong_pad([1], 0)
