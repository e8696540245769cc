"""Video files are read completely or refused, and alpha is honoured in every container that has it (issue 21):
a truncated mp4 / mov / mkv / webm is an error naming the file and both lengths; a .mov (QuickTime RLE, PNG,
ProRes 4444) or .webm (VP8 / VP9) with alpha gives RGBA frames whose foreground mask is the alpha, as a GIF does."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sv4d_models.frames_io import load_frames
from sv4d_models.preprocess import foreground_masks, preprocess_frames
from video_files import ALPHA, OPAQUE, alpha_frames, encode, noise_frames, truncate


@pytest.mark.parametrize("container", sorted(OPAQUE))
def test_a_complete_video_reads_every_frame(tmp_path, container):
    path = encode(tmp_path / f"clip.{container}", noise_frames(12), OPAQUE[container])
    frames = load_frames(path)
    assert frames.shape == (12, 32, 32, 3)
    assert load_frames(path, max_frames=5).shape[0] == 5


@pytest.mark.parametrize("container", sorted(OPAQUE))
def test_a_truncated_video_is_refused_naming_the_file_and_lengths(tmp_path, container):
    path = truncate(encode(tmp_path / f"clip.{container}", noise_frames(30), OPAQUE[container]))
    with pytest.raises(ValueError, match=rf"clip.{container}' is truncated: its header promises 3.00 s \(about 30 "
                                         r"frames at 10 fps\) but its data ends at .* frames decode\); copy or download"):
        load_frames(path)
    assert load_frames(path, max_frames=3).shape[0] == 3  # the frames asked for are there: no error


@pytest.mark.parametrize("codec", sorted(ALPHA))
def test_alpha_in_mov_and_webm_is_read_as_rgba(tmp_path, codec):
    rgba, mask = alpha_frames()
    container = codec.split("_")[0]
    frames = load_frames(encode(tmp_path / f"alpha.{container}", rgba, ALPHA[codec]))
    assert frames.shape == (6, 32, 32, 4)
    alpha = frames[..., 3]
    assert float(alpha[:, torch.from_numpy(~mask)].max()) < 0.1 and float(alpha[:, torch.from_numpy(mask)].min()) > 0.9
    fg = foreground_masks(frames)  # alpha > 0: 60 % of the view is background, none of it black
    wrong = float((fg != torch.from_numpy(mask)).float().mean())
    assert wrong == 0.0 if codec in ("mov_qtrle", "mov_png") else wrong < 0.05  # lossy codecs blur the edge
    out = preprocess_frames(frames, size=32, image_frame_ratio=0.5)
    corner = out.images[:, :, :2, :2]  # outside the object: [-1, 1] images, white is 1
    assert float(corner.min()) > 0.95 and float(out.masks[:, :2, :2].max()) == 0.0  # white, not black or green


def test_alpha_video_matches_the_same_frames_as_a_gif(tmp_path):
    from PIL import Image

    rgba, mask = alpha_frames()
    mov = load_frames(encode(tmp_path / "alpha.mov", rgba, ALPHA["mov_qtrle"]))
    images = [Image.fromarray(f, "RGBA") for f in rgba]
    images[0].save(tmp_path / "alpha.gif", save_all=True, append_images=images[1:], disposal=2)
    gif = load_frames(tmp_path / "alpha.gif")
    assert gif.shape == mov.shape
    assert torch.equal(foreground_masks(gif), foreground_masks(mov))
    assert torch.allclose(mov[..., :3][foreground_masks(mov)], gif[..., :3][foreground_masks(gif)], atol=2 / 255)


def test_an_opaque_video_stays_rgb(tmp_path):
    frames = load_frames(encode(tmp_path / "clip.mov", noise_frames(4), OPAQUE["mov"]))
    assert frames.shape[-1] == 3 and np.isfinite(frames.numpy()).all()
