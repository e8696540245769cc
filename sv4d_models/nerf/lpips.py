"""Offline LPIPS (Zhang et al. 2018) without torchvision and without any download (nerf4d.md section 4.1).

Backbones are plain ``nn.Sequential`` stacks whose parameter names match torchvision (``features.N.weight``), so a
torchvision checkpoint (``vgg16-397923af.pth`` / ``alexnet-owt-7be5be79.pth``) loads directly. The 1x1 linear heads
use the ``lpips`` package's file layout (``lin{k}.model.1.weight``). Weights come only from explicit paths,
``$TORCH_HOME/hub/checkpoints`` (``~/.cache/torch/hub/checkpoints``) or the installed ``lpips`` package's files
(located with ``importlib.util.find_spec``, never imported). ``load_lpips`` warns once and returns None when
anything is missing, and the caller drops the term.
"""
from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from ..files import torch_load

_VGG_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
_VGG_TAPS = (3, 8, 15, 22, 29)  # after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
_ALEX_TAPS = (1, 4, 7, 9, 11)
_CHANNELS = {"vgg": (64, 128, 256, 512, 512), "alex": (64, 192, 384, 256, 256)}
_BACKBONE_FILES = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth"}
_WARNED: set[str] = set()


def _vgg16_features() -> nn.Sequential:
    layers, c = [], 3
    for v in _VGG_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=False)]
            c = v
    return nn.Sequential(*layers)


def _alexnet_features() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(), nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2))


class _Head(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(c, 1, 1, bias=False))


class LPIPS(nn.Module):
    """``forward(x, y) -> [B]`` perceptual distance for images ``[B, 3, H, W]`` in [0, 1]. Frozen weights."""

    def __init__(self, net: str = "vgg", generator: torch.Generator | None = None):
        super().__init__()
        if net not in _CHANNELS:
            raise ValueError(f"net={net!r}; use 'vgg' or 'alex'")
        self.net = net
        self.features = _vgg16_features() if net == "vgg" else _alexnet_features()
        self.taps = _VGG_TAPS if net == "vgg" else _ALEX_TAPS
        for k, c in enumerate(_CHANNELS[net]):
            self.add_module(f"lin{k}", _Head(c))
        for p in self.parameters():  # random weights (tests); real ones via load_weights()
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.05)
            p.requires_grad_(False)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.eval()

    def load_weights(self, backbone_path: str | Path, heads_path: str | Path) -> None:
        """Load a torchvision backbone checkpoint and the lpips ``v0.1/<net>.pth`` heads (CPU, no download)."""
        sd = torch_load(backbone_path, "the LPIPS backbone weights")
        feats = {k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")}
        self.features.load_state_dict(feats, strict=True)
        heads = torch_load(heads_path, "the LPIPS heads")
        missing, unexpected = self.load_state_dict(heads, strict=False)
        if unexpected or any(k.startswith("lin") for k in missing):
            raise ValueError(f"{heads_path} is not an lpips v0.1 heads file (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]})")

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = (torch.cat([x, y]) * 2 - 1 - self.shift) / self.scale
        total, n, k = 0.0, x.shape[0], 0
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.taps:
                f = h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                d = (f[:n] - f[n:]).pow(2)
                total = total + getattr(self, f"lin{k}").model(d).mean(dim=(1, 2, 3))
                k += 1
                if k == len(self.taps):
                    break
        return total


def _find_backbone(net: str, backbone_path: str | None) -> Path | None:
    if backbone_path:
        return Path(backbone_path) if Path(backbone_path).is_file() else None
    torch_home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
    cand = torch_home / "hub" / "checkpoints" / _BACKBONE_FILES[net]
    return cand if cand.is_file() else None


def _find_heads(net: str, heads_path: str | None) -> Path | None:
    if heads_path:
        return Path(heads_path) if Path(heads_path).is_file() else None
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    cand = Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1" / f"{net}.pth"
    return cand if cand.is_file() else None


def load_lpips(net: str = "vgg", backbone_path: str | None = None, heads_path: str | None = None) -> LPIPS | None:
    """LPIPS with real weights from local files, or None (warning once per net) when they are not on disk."""
    bb, hd = _find_backbone(net, backbone_path), _find_heads(net, heads_path)
    if bb is None or hd is None:
        if net not in _WARNED:
            _WARNED.add(net)
            warnings.warn(f"LPIPS({net}) disabled: backbone file {_BACKBONE_FILES[net]} (explicit path or "
                          "$TORCH_HOME/hub/checkpoints) or lpips heads (pip install lpips, or heads_path) not found; "
                          "the LPIPS loss term is dropped (nothing is downloaded)", RuntimeWarning, stacklevel=2)
        return None
    model = LPIPS(net)
    model.load_weights(bb, hd)
    return model
