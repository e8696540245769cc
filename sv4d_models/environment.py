"""Start-up check of the installed torch / torchvision pair.

torchvision is compiled against one torch release and one build flavour (CPU or a CUDA version). pip installs a
mismatched pair without complaint when the two come from different indexes (for example torch from the PyTorch CPU
index, torchvision from PyPI), and the failure then surfaces deep inside open_clip as an operator-not-found
traceback. ``torch_pair_problem`` names the pair and the command that installs a matching one instead.
"""
from __future__ import annotations

import re

CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def expected_torchvision(torch_version: str) -> str | None:
    """The torchvision minor series that pairs with ``torch_version`` (torch 2.N pairs with torchvision 0.(N+15))."""
    m = re.match(r"(\d+)\.(\d+)", torch_version)
    if not m or m.group(1) != "2":
        return None
    return f"0.{int(m.group(2)) + 15}"


def torch_pair_problem() -> str | None:
    """None when torch and torchvision work together; else one line naming both and the fix."""
    import torch

    base = torch.__version__.split("+")[0]
    pair = expected_torchvision(base)
    fix = (f"install a matching pair from one index: pip install --force-reinstall torch=={base} "
           f"torchvision=={pair or '<the matching version>'}.* (CPU-only: add --index-url {CPU_INDEX})")
    try:
        import torchvision
    except ImportError:
        return f"torchvision is not installed (open_clip needs it); {fix}"
    except Exception as exc:  # noqa: BLE001 - a broken pair fails in many ways at import
        return f"torchvision cannot be imported with torch {torch.__version__} ({type(exc).__name__}: {exc}); {fix}"
    tv = torchvision.__version__
    if pair is not None and not tv.split("+")[0].startswith(pair + "."):
        return f"torch {torch.__version__} and torchvision {tv} are not a pair (torch {base} needs torchvision {pair}.x); {fix}"
    tv_cuda = getattr(getattr(torchvision, "version", None), "cuda", None)
    if (torch.version.cuda is None) != (tv_cuda is None):
        return (f"torch {torch.__version__} ({'CPU' if torch.version.cuda is None else 'CUDA ' + torch.version.cuda} "
                f"build) and torchvision {tv} ({'CPU' if tv_cuda is None else 'CUDA ' + str(tv_cuda)} build) come from "
                f"different builds; {fix}")
    return None


__all__ = ["CPU_INDEX", "expected_torchvision", "torch_pair_problem"]
