"""Lazy package exports: ``__getattr__`` that imports a public name's module on first use (PEP 562)."""
from __future__ import annotations

import importlib
from typing import Callable


def lazy_getattr(package: str, exports: dict[str, str]) -> Callable[[str], object]:
    """``__getattr__`` for ``package`` resolving ``name`` from the relative module ``exports[name]``."""

    def __getattr__(name: str):
        if name in exports:
            return getattr(importlib.import_module(exports[name], package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
