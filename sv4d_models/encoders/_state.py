"""Strict, memory-light loading of one sub-model out of a (possibly 12 GB) checkpoint.

A source is either an in-memory ``{name: tensor}`` mapping or a path to a ``.safetensors`` file. For files only the
header is read up front (names and shapes); tensor data is read one tensor at a time and only for the keys the
module needs, so the whole file is never materialised. Modules are built on the meta device and filled with
``load_state_dict(assign=True)``, so weights are never held twice.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..state_source import CheckpointSource, StateDictSource, describe_checkpoint

__all__ = ["StateDictSource", "ShapeReader", "describe_checkpoint", "load_prefixed", "open_state"]

_MAX_LISTED = 8


@contextmanager
def open_state(source: StateDictSource) -> Iterator[CheckpointSource]:
    """Yield a reader with ``keys()``, ``shape(key)`` and ``tensor(key)`` over a dict or a .safetensors path."""
    with CheckpointSource(source) as src:
        yield src


def _suggest_prefix(keys: list[str], anchor: str) -> str:
    hits = sorted(k[: -len(anchor)] for k in keys if k.endswith(anchor))
    if not hits:
        return ""
    return f" Keys of this kind were found under prefix={hits[0]!r}; pass that prefix instead."


def _listed(items: list[str]) -> str:
    more = f" (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
    return ", ".join(items[:_MAX_LISTED]) + more


class ShapeReader:
    """Shapes of the keys under one prefix; a missing key raises the loader's ValueError (used for inference)."""

    def __init__(self, rel_shapes: dict[str, tuple[int, ...]], error: Callable[[list[str]], ValueError]) -> None:
        self.shapes = rel_shapes
        self._error = error

    def __call__(self, rel_key: str) -> tuple[int, ...]:
        if rel_key not in self.shapes:
            raise self._error([rel_key])
        return self.shapes[rel_key]

    def indices(self, rel_prefix: str) -> list[int]:
        """Sorted distinct integers N of keys ``<rel_prefix>N.*`` (e.g. ``down.`` -> levels)."""
        found = set()
        for k in self.shapes:
            if k.startswith(rel_prefix):
                head = k[len(rel_prefix):].split(".", 1)[0]
                if head.isdigit():
                    found.add(int(head))
        return sorted(found)


def _compare(
    expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]], prefix: str, ignore: Callable[[str], bool]
) -> tuple[list[str], list[str], list[str]]:
    """(missing, unexpected, wrong-shape) descriptions, full key names, for a strict load."""
    missing = [prefix + k for k in sorted(set(expected) - set(found))]
    unexpected = [prefix + k for k in sorted(found) if k not in expected and not ignore(k)]
    wrong = [
        f"{prefix}{k} is {list(found[k])}, expected {list(shape)}"
        for k, shape in expected.items()
        if k in found and found[k] != shape
    ]
    return missing, unexpected, wrong


def load_prefixed(
    source: StateDictSource,
    prefix: str,
    build: Callable[[ShapeReader], nn.Module],
    *,
    model_name: str,
    anchor: str,
    ignore: Callable[[str], bool] = lambda _k: False,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Module:
    """Build ``build(shapes)`` on meta and load the keys under ``prefix`` strictly into it (assign=True).

    ``ignore(rel_key)`` marks keys under the prefix that are known and deliberately not loaded. ``anchor`` is a
    relative key that identifies this kind of weights (used to suggest the right prefix in errors).
    """
    with open_state(source) as src:
        keys = src.keys()

        def mismatch(missing: list[str], unexpected: list[str] = (), wrong: list[str] = ()) -> ValueError:
            parts = [f"cannot load the {model_name} from prefix {prefix!r}:"]
            if missing:
                parts.append(f"missing keys: {_listed(missing)};")
            if unexpected:
                parts.append(f"unexpected keys: {_listed(unexpected)};")
            if wrong:
                parts.append(f"wrong shapes: {_listed(wrong)};")
            parts.append(f"the checkpoint looks like {describe_checkpoint(keys)}.")
            return ValueError(" ".join(parts) + _suggest_prefix(keys, anchor))

        rel = {k[len(prefix):]: k for k in keys if k.startswith(prefix)}
        if not rel:
            raise ValueError(
                f"no {model_name} weights in this checkpoint: no key starts with prefix {prefix!r}; "
                f"it looks like {describe_checkpoint(keys)}.{_suggest_prefix(keys, anchor)}"
            )
        shapes = ShapeReader(
            {r: src.shape(k) for r, k in rel.items()}, lambda ks: mismatch([prefix + k for k in ks])
        )
        with torch.device("meta"):
            module = build(shapes)
        expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        problems = _compare(expected, shapes.shapes, prefix, ignore)
        if any(problems):
            raise mismatch(*problems)
        sd = {r: src.get(rel[r], device, dtype) for r in expected}
    module.load_state_dict(sd, strict=True, assign=True)
    return module.eval().requires_grad_(False)
