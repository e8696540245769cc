"""Strict, memory-light loading of one sub-model (UNet, CLIP tower, a VAE copy, the decoder) out of a checkpoint,
and the one report of what does not match.

For files only the header is read up front (names and shapes); tensor data is read one tensor at a time and only
for the keys the module needs, so a 12 GB file is never materialised. Modules are built on the meta device and
filled with ``load_state_dict(assign=True)``, so weights are never held twice.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .source import StateDictSource, as_source, describe_checkpoint

__all__ = ["ShapeReader", "key_mismatch", "load_submodule"]

_MAX_LISTED = 8


def _listed(items: list[str]) -> str:
    more = f" (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
    return ", ".join(items[:_MAX_LISTED]) + more


def key_mismatch(title: str, expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]],
                 prefix: str = "", ignore: Callable[[str], bool] = lambda _k: False, hint: str = "") -> ValueError | None:
    """The error for a strict load, or None when ``found`` has exactly the ``expected`` keys and shapes.

    Keys are relative to ``prefix`` (reported with it); ``ignore(rel_key)`` marks known keys deliberately not loaded.
    Message: ``title: N missing keys: ...; N unexpected keys: ...; wrong shapes: key: file (..) vs model (..); hint``.
    """
    missing = [prefix + k for k in sorted(set(expected) - set(found))]
    unexpected = [prefix + k for k in sorted(found) if k not in expected and not ignore(k)]
    wrong = [f"{prefix}{k}: file {tuple(found[k])} vs model {tuple(shape)}"
             for k, shape in sorted(expected.items()) if k in found and tuple(found[k]) != tuple(shape)]
    if not (missing or unexpected or wrong):
        return None
    parts = [f"{title}:"]
    if missing:
        parts.append(f"{len(missing)} missing keys: {_listed(missing)};")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys: {_listed(unexpected)};")
    if wrong:
        parts.append(f"wrong shapes: {_listed(wrong)};")
    return ValueError(" ".join(parts + ([hint] if hint else [])))


def _suggest_prefix(keys: list[str], anchor: str) -> str:
    hits = sorted(k[: -len(anchor)] for k in keys if k.endswith(anchor))
    if not hits:
        return ""
    return f" Keys of this kind were found under prefix={hits[0]!r}; pass that prefix instead."


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


def load_submodule(source: StateDictSource, prefix: str, build: Callable[[ShapeReader], nn.Module], *,
                   model_name: str, anchor: str, ignore: Callable[[str], bool] = lambda _k: False,
                   device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                   title: str | None = None, hint: str | None = None) -> nn.Module:
    """Build ``build(shapes)`` on meta and load the keys under ``prefix`` strictly into it (``assign=True``).

    Args:
        source: state dict, ``.safetensors`` path or an open ``CheckpointSource``.
        ignore: ``ignore(rel_key)`` for keys under the prefix that are known and deliberately not loaded.
        anchor: a relative key identifying this kind of weights (to suggest the right prefix in errors).
        title, hint: override the mismatch message's head and tail (default: names the model and the prefix,
            and says what the checkpoint looks like).
    Returns:
        the module in eval mode without gradients.
    """
    src, owned = as_source(source)
    try:
        keys = src.keys()
        looks = f"the checkpoint looks like {describe_checkpoint(keys)}.{_suggest_prefix(keys, anchor)}"
        head = title or f"cannot load the {model_name} from prefix {prefix!r}"
        tail = looks if hint is None else hint

        def shape_error(missing: list[str]) -> ValueError:
            return key_mismatch(head, {k: () for k in missing}, {}, prefix, hint=tail)

        rel = {k[len(prefix):]: k for k in keys if k.startswith(prefix)}
        if not rel:
            raise ValueError(f"no {model_name} weights in this checkpoint: no key starts with prefix {prefix!r}; "
                             f"it looks like {describe_checkpoint(keys)}.{_suggest_prefix(keys, anchor)}")
        shapes = ShapeReader({r: src.shape(k) for r, k in rel.items()}, shape_error)
        with torch.device("meta"):
            module = build(shapes)
        expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        error = key_mismatch(head, expected, shapes.shapes, prefix, ignore, tail)
        if error is not None:
            raise error
        state = {r: src.get(rel[r], device, dtype) for r in expected}
    finally:
        if owned:
            src.close()
    module.load_state_dict(state, strict=True, assign=True)
    return module.eval().requires_grad_(False)
