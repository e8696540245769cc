"""The SV4D MODEL in the memory modes of the ComfyUI people run today, on the 0.3.64 snapshot (CPU):

* DynamicVRAM (on by default on NVIDIA since ComfyUI 0.33): ``comfy.ops`` Linear / Embedding layers are built
  without weights and get them only from ``load_state_dict``; the loader must work and sample exactly as in the
  normal mode, with ``assign=True`` (what core does when the patcher is dynamic) and without;
* ``--lowvram`` / ``--novram``-style partial loading (``ModelPatcher.load(lowvram_model_memory=...)``): layers that do
  not fit are cast per call; the output must not change;
* fp8 weight storage, run on the CPU through the casting layers.

On a ComfyUI tree that has DynamicVRAM (0.33+: ``comfy.memory_management.aimdo_enabled``), the tests switch the real
flag and ComfyUI's own layers run; on 0.3.64 ``weightless_layers`` installs a copy of that construction, written
from the upstream code it mirrors (cited there). What needs CUDA and comfy-aimdo (the VBAR streaming itself) is not
covered here.
"""
from __future__ import annotations

import importlib
import sys
import types

import pytest
import torch

from comfyui_env import comfy_in_process, pack_module
from sv4d_models.tiny_checkpoint import write_tiny_checkpoint

pytestmark = pytest.mark.comfyui
SIZE = 32


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    mm = comfy_in_process()
    from comfy.cli_args import args
    import folder_paths

    root = tmp_path_factory.mktemp("comfy_modes")
    ckpts = root / "checkpoints"
    for i, kind in enumerate(("sv4d", "sv4d2")):
        write_tiny_checkpoint(ckpts / f"{kind}_modes.safetensors", kind, seed=10 + i)  # names no other test uses
    saved = dict(fp32=args.fp32_text_enc, temp=folder_paths.get_temp_directory())
    args.fp32_text_enc = True
    folder_paths.add_model_folder_path("checkpoints", str(ckpts))
    yield mm, root
    args.fp32_text_enc = saved["fp32"]
    folder_paths.set_temp_directory(saved["temp"])


def _weightless_mirror(monkeypatch) -> None:
    """ComfyUI 0.33+ ``comfy/ops.py`` construction under DynamicVRAM, installed on 0.3.64's layers.

    Mirrors ``disable_weight_init.Linear.__init__`` / ``_load_from_state_dict`` and ``_lazy_load_from_state_dict``
    (0.33.0 ``comfy/ops.py`` lines 487-575, unchanged in the 0.38.x file read from Comfy-Org/ComfyUI) and the
    ``Embedding`` twin (lines 740-790): while ``comfy.memory_management.aimdo_enabled`` is set, a layer whose class
    does not override ``_load_from_state_dict`` is built with ``weight = bias = None`` (Embedding: a meta weight) and
    takes the state dict's tensor itself under ``load_state_dict(assign=True)``, a clone otherwise; a key it does not
    know is unexpected, a missing weight becomes zeros and is reported missing.
    """
    import comfy.ops

    flags = types.ModuleType("comfy.memory_management")
    flags.aimdo_enabled = True
    monkeypatch.setitem(sys.modules, "comfy.memory_management", flags)
    base = comfy.ops.disable_weight_init

    def lazy_load(module, state_dict, prefix, local_metadata, missing, unexpected, weight_shape, with_bias):
        assign = local_metadata.get("assign_to_params_buffers", False)
        for key, value in state_dict.items():
            name = key[len(prefix):]
            if name == "weight" or (with_bias and name == "bias" and value is not None):
                setattr(module, name, torch.nn.Parameter(value if assign else value.clone(), requires_grad=False))
            else:
                unexpected.append(key)
        if module.weight is None or module.weight.is_meta:
            module.weight = torch.nn.Parameter(torch.zeros(weight_shape), requires_grad=False)
            missing.append(prefix + "weight")

    def make(cls, torch_cls, build_empty, shape, with_bias):
        def __init__(self, *args, **kwargs):
            if not flags.aimdo_enabled or type(self)._load_from_state_dict is not cls._load_from_state_dict:
                torch_cls.__init__(self, *args, **kwargs)
                return
            torch.nn.Module.__init__(self)
            build_empty(self, *args, **kwargs)

        def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
            if not flags.aimdo_enabled or type(self)._load_from_state_dict is not cls._load_from_state_dict:
                return torch_cls._load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing,
                                                      unexpected, errors)
            lazy_load(self, state_dict, prefix, local_metadata, missing, unexpected, shape(self), with_bias)

        monkeypatch.setattr(cls, "__init__", __init__)
        monkeypatch.setattr(cls, "_load_from_state_dict", _load_from_state_dict)

    def empty_linear(self, in_features, out_features, bias=True, device=None, dtype=None):
        self.in_features, self.out_features = in_features, out_features
        self.weight = self.bias = None
        self.comfy_need_lazy_init_bias, self.weight_comfy_model_dtype = bias, dtype

    def empty_embedding(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None, norm_type=2.0,
                        scale_grad_by_freq=False, sparse=False, _weight=None, _freeze=False, device=None, dtype=None):
        self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, padding_idx
        self.max_norm, self.norm_type, self.scale_grad_by_freq, self.sparse = max_norm, norm_type, scale_grad_by_freq, sparse
        self.weight = torch.nn.Parameter(torch.empty(num_embeddings, embedding_dim, device="meta",
                                                     dtype=dtype or torch.get_default_dtype()), requires_grad=False)
        self.bias, self.weight_comfy_model_dtype = None, dtype

    # upstream's fallback shape for a missing Linear weight is (in, out) (sic): kept as upstream has it
    make(base.Linear, torch.nn.Linear, empty_linear, lambda m: (m.in_features, m.out_features), True)
    make(base.Embedding, torch.nn.Embedding, empty_embedding, lambda m: (m.num_embeddings, m.embedding_dim), False)


def dynamic_vram(monkeypatch) -> None:
    """DynamicVRAM's weightless layer construction: ComfyUI's own where the tree has it (0.33+: the real flag), else
    the mirror above (0.3.64)."""
    import comfy.ops

    if hasattr(comfy.ops.disable_weight_init, "_lazy_load_from_state_dict"):
        monkeypatch.setattr(importlib.import_module("comfy.memory_management"), "aimdo_enabled", True)
    else:
        _weightless_mirror(monkeypatch)


class DynamicOnCPU:
    """``main.py`` under DynamicVRAM rebinds ``comfy.model_patcher.CoreModelPatcher`` to ``ModelPatcherDynamic``; on
    the CPU that class hands back a plain ``ModelPatcher`` (loads copy). This stand-in says ``is_dynamic()`` like the
    GPU one, so the loader takes core's ``assign=True`` path (used for loading only: its streaming needs CUDA)."""

    @staticmethod
    def make(model, load_device, offload_device):
        import comfy.model_patcher

        patcher = comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=offload_device)
        patcher.is_dynamic = lambda: True
        return patcher


def video(n: int) -> torch.Tensor:
    return torch.rand(n, SIZE, SIZE, 3, generator=torch.Generator().manual_seed(5))


def one_step(root, tag: str, name: str, **load):
    """Load ``name`` through the node loader, then one sampler step of SV4D Sample Anchors (own work dir)."""
    import folder_paths

    folder_paths.set_temp_directory(str(root / f"temp_{tag}"))
    samp = pack_module("nodes.sampling")
    model, cv, vae, info = pack_module("nodes.loaders").load_checkpoint(name, **load)
    frames, orbit = (video(9), {"orbit": video(21)}) if name.startswith("sv4d_") else (video(12), {})
    passes = samp.SampleAnchors.execute(model, cv, vae, frames, 3, 1, 0.0, 0.0, "auto", **orbit).result[0]
    return model, info, torch.stack([passes.outputs[i] for i in passes.done()])


def network_output(model) -> torch.Tensor:
    """The MODEL's network on fixed inputs, called directly (no model management)."""
    net = model.model.diffusion_model
    g = torch.Generator().manual_seed(7)
    t, v = (5, 8) if model.model.sv4d_kind == "sv4d" else (12, 4)
    n = t * v
    with torch.no_grad():
        return net(torch.randn(n, 8, 4, 4, generator=g), torch.randn(n, generator=g),
                   context=torch.randn(1, t, 64, generator=g), y=torch.randn(n, net.config.adm_in_channels, generator=g),
                   cond_view=torch.randn(v, 4, 4, 4, generator=g), num_video_frames=n,
                   image_only_indicator=torch.ones(1, n)).float()


def test_weightless_layers_hold_no_weight_until_loaded(comfy, monkeypatch):
    """The helper really puts ComfyUI's layers in DynamicVRAM's state (else the tests below prove nothing)."""
    import comfy.ops

    dynamic_vram(monkeypatch)
    layer = comfy.ops.manual_cast.Linear(4, 3)
    assert layer.weight is None and "weight" not in layer.state_dict()
    layer.load_state_dict({"weight": torch.ones(3, 4), "bias": torch.zeros(3)})
    assert layer.weight.shape == (3, 4) and torch.equal(layer(torch.ones(1, 4)), torch.full((1, 3), 4.0))


@pytest.mark.parametrize("name", ["sv4d_modes.safetensors", "sv4d2_modes.safetensors"])
def test_dynamic_vram_loads_and_samples_as_the_normal_mode(comfy, name, monkeypatch):
    """Weightless layers (DynamicVRAM): the node loader works and one sampler step equals the normal mode's."""
    _, root = comfy
    normal_model, _, normal = one_step(root, "normal_" + name, name)
    dynamic_vram(monkeypatch)
    model, info, dynamic = one_step(root, "dynamic_" + name, name)
    assert torch.equal(dynamic, normal)
    want, got = normal_model.model.diffusion_model.state_dict(), model.model.diffusion_model.state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    assert name.split("_")[0] in info and "file metadata" in info


@pytest.mark.parametrize("dtype", ["default", "fp8_e4m3fn"])
def test_dynamic_patcher_assigns_the_streamed_weights(comfy, monkeypatch, dtype):
    """With a dynamic patcher the loader assigns the streamed tensors (core's ``assign=is_dynamic()``): the network
    holds every weight, in the chosen storage dtype, and computes what the normal mode's network computes."""
    loaders, compat = pack_module("nodes.loaders"), pack_module("nodes.compat")
    normal = loaders.load_checkpoint("sv4d2_modes.safetensors", "auto", dtype)[0]
    dynamic_vram(monkeypatch)
    monkeypatch.setattr(compat, "make_patcher", DynamicOnCPU.make)
    model, _, _, info = loaders.load_checkpoint("sv4d2_modes.safetensors", "auto", dtype)
    assert compat.is_dynamic(model) and "DynamicVRAM" in info
    linear = model.model.diffusion_model.input_blocks[1][1].proj_in
    assert linear.weight.dtype == (torch.float8_e4m3fn if dtype.startswith("fp8") else torch.float32)
    assert torch.equal(network_output(model), network_output(normal))


@pytest.mark.parametrize("budget", [64 * 1024, 0.1])
def test_partial_loading_gives_the_same_output(comfy, budget):
    """``--lowvram`` (a weight budget the network does not fit in) and ``--novram`` (0.1 bytes, as
    ``load_models_gpu`` sets it): layers left out are cast per call, the output stays the same."""
    model = pack_module("nodes.loaders").load_checkpoint("sv4d_modes.safetensors")[0]
    full = network_output(model)
    model.load(torch.device("cpu"), lowvram_model_memory=budget)
    try:
        cast = [m for m in model.model.diffusion_model.modules() if hasattr(m, "prev_comfy_cast_weights")]
        assert cast and model.model.model_lowvram  # partial loading really happened
        assert torch.equal(network_output(model), full)
    finally:
        model.unpatch_model()
