"""LPIPS (Zhang et al. 2018) through the ``lpips`` package, with no download ever.

``lpips.LPIPS(pretrained=True)`` would fetch the torchvision backbone from the internet. Here the package builds its
network with a random backbone (``pnet_rand=True``) and no heads (``pretrained=False``); the backbone weights are then
read from a local torchvision checkpoint (``alexnet-owt-7be5be79.pth`` / ``vgg16-397923af.pth``, the files torchvision
itself caches in ``$TORCH_HOME/hub/checkpoints``) and the 1x1 linear heads from the files the ``lpips`` wheel ships
(``lpips/weights/v0.1/<net>.pth``), both with the weights-only loader. ``build_lpips`` raises when a file is missing,
naming the file and where to put it; ``load_lpips`` (the 4D fit's optional loss term) warns once and returns None.
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import torch
from torch import nn

from ..files import torch_load

BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
NETS = tuple(BACKBONE_FILES)
_WARNED: set[str] = set()


def _lpips_package():
    try:
        import lpips
    except ImportError as err:
        raise ImportError("LPIPS needs the lpips package: pip install lpips") from err
    return lpips


def hub_checkpoints() -> Path:
    """torchvision's download cache: ``$TORCH_HOME/hub/checkpoints`` (default ``~/.cache/torch``)."""
    return Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"


def find_backbone(net: str, path: str | os.PathLike | None = None, folders=()) -> Path:
    """The backbone checkpoint: ``path`` if given, else the official file name in ``folders`` then torch's cache;
    FileNotFoundError naming the file and the folders searched."""
    if net not in BACKBONE_FILES:
        raise ValueError(f"LPIPS net {net!r}; use one of {list(NETS)}")
    if path:
        if not Path(path).is_file():
            raise FileNotFoundError(f"LPIPS backbone {path} does not exist; give torchvision's "
                                    f"{BACKBONE_FILES[net]} there")
        return Path(path)
    places = [Path(f) for f in folders] + [hub_checkpoints()]
    for folder in places:
        if (folder / BACKBONE_FILES[net]).is_file():
            return folder / BACKBONE_FILES[net]
    raise FileNotFoundError(f"LPIPS({net}) needs torchvision's {BACKBONE_FILES[net]} (nothing is downloaded); put "
                            f"it in {' or '.join(str(p) for p in places)}")


def heads_file(net: str, path: str | os.PathLike | None = None) -> Path:
    """The linear heads: ``path`` or the file shipped inside the lpips package."""
    p = Path(path) if path else Path(_lpips_package().__file__).parent / "weights" / "v0.1" / f"{net}.pth"
    if not p.is_file():
        raise FileNotFoundError(f"LPIPS heads {p} do not exist; reinstall lpips (pip install lpips) or give the "
                                "v0.1 heads file")
    return p


def backbone_key_map(model: nn.Module) -> dict[str, str]:
    """torchvision ``features.<i>.<param>`` -> the lpips package's ``net.slice<k>.<i>.<param>``."""
    out = {}
    for name in model.net.state_dict():  # "slice1.0.weight"
        _, index, param = name.split(".")
        out[f"features.{index}.{param}"] = f"net.{name}"
    return out


class LPIPSDistance(nn.Module):
    """``forward(x, y) -> [B]`` LPIPS of images ``[B, 3, H, W]`` in [0, 1] (the lpips package's forward with
    ``normalize=True``). Frozen."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.model(x, y, normalize=True).flatten()


def lpips_network(net: str = "alex") -> nn.Module:
    """The lpips package's ``LPIPS`` with a random backbone and random heads: nothing read, nothing downloaded."""
    if net not in BACKBONE_FILES:
        raise ValueError(f"LPIPS net {net!r}; use one of {list(NETS)}")
    package = _lpips_package()
    with warnings.catch_warnings():  # lpips calls torchvision's deprecated pretrained=False spelling
        warnings.simplefilter("ignore", UserWarning)
        return package.LPIPS(pretrained=False, net=net, pnet_rand=True, verbose=False)


def load_lpips_weights(model: nn.Module, backbone: str | os.PathLike, heads: str | os.PathLike) -> nn.Module:
    """Fill an ``lpips_network`` from a torchvision backbone checkpoint and a v0.1 heads file (weights-only reads)."""
    sd = torch_load(backbone, "the LPIPS backbone weights")
    mapping = backbone_key_map(model)
    missing = [k for k in mapping if k not in sd]
    if missing:
        raise ValueError(f"{backbone} is not a torchvision {model.pnet_type} checkpoint: missing {missing[:3]}")
    model.load_state_dict({mapping[k]: sd[k] for k in mapping}, strict=False)
    head = torch_load(heads, "the LPIPS heads")
    wanted = {k for k in model.state_dict() if re.match(r"lin\d", k)}  # lins.* alias the same tensors
    if set(head) != wanted:
        raise ValueError(f"{heads} is not an lpips v0.1 heads file for {model.pnet_type} (keys {sorted(head)[:3]}, "
                         f"expected {sorted(wanted)[:3]})")
    model.load_state_dict(head, strict=False)
    return model


def build_lpips(net: str = "alex", backbone_path=None, heads_path=None, folders=()) -> LPIPSDistance:
    """LPIPS with real weights from local files; FileNotFoundError naming the missing file and where it goes."""
    backbone, heads = find_backbone(net, backbone_path, folders), heads_file(net, heads_path)
    return LPIPSDistance(load_lpips_weights(lpips_network(net), backbone, heads))


def load_lpips(net: str = "vgg", backbone_path: str | None = None, heads_path: str | None = None
               ) -> LPIPSDistance | None:
    """The 4D fit's optional LPIPS term: ``build_lpips`` or None (a warning once per net) when files are missing."""
    try:
        return build_lpips(net, backbone_path, heads_path)
    except (FileNotFoundError, ImportError) as err:
        if net not in _WARNED:
            _WARNED.add(net)
            warnings.warn(f"LPIPS({net}) disabled: {err}; the LPIPS loss term is dropped (nothing is downloaded)",
                          RuntimeWarning, stacklevel=2)
        return None


__all__ = ["BACKBONE_FILES", "NETS", "LPIPSDistance", "lpips_network", "load_lpips_weights", "build_lpips",
           "load_lpips", "find_backbone", "heads_file", "hub_checkpoints", "backbone_key_map"]
