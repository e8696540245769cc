"""Test-only ComfyUI custom node: core's SV3D objects for *tiny* SV3D checkpoints.

Core ``ImageOnlyCheckpointLoader`` detects SV3D by its full widths (model_channels 320, adm 256 / 1280), so it
cannot load the tiny test files of ``sv4d_models.tiny_checkpoint``. This loader builds exactly what it builds for
the real files (``comfy.supported_models.SV3D_u/_p`` -> ``comfy.model_base.SV3D_u/_p`` with ComfyUI's own video
``UNetModel``, ``ModelPatcher``; the VAE from the cond-frames embedder ``conditioner.embedders.1.encoder.`` as
``SV3D_u.vae_key_prefix`` says; a ``ClipVisionModel``), only with the tiny widths read from the file. The
integration tests swap it in for ``ImageOnlyCheckpointLoader`` when they run the workflows with tiny files.

Importable as a module (``load_tiny_sv3d``) and loadable by ComfyUI as a single-file custom node.
"""
from __future__ import annotations

import json
import os
import tempfile

import torch

import comfy.clip_vision
import comfy.model_detection
import comfy.model_management as mm
import comfy.model_patcher
import comfy.sd
import comfy.supported_models
import comfy.utils
import folder_paths
from comfy_api.latest import ComfyExtension, io

UNET = "model.diffusion_model."
CLIP = "conditioner.embedders.0.open_clip.model.visual."
VAE = "conditioner.embedders.1.encoder."


def _clip_vision(sd: dict) -> comfy.clip_vision.ClipVisionModel:
    tower = comfy.clip_vision.convert_to_transformers({k: v for k, v in sd.items() if k.startswith(CLIP)}, CLIP)
    width = tower["vision_model.embeddings.patch_embedding.weight"].shape[0]
    patch = tower["vision_model.embeddings.patch_embedding.weight"].shape[-1]
    n_pos = tower["vision_model.embeddings.position_embedding.weight"].shape[0]
    config = {"hidden_act": "gelu", "hidden_size": width, "image_size": int(round((n_pos - 1) ** 0.5)) * patch,
              "intermediate_size": tower["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
              "model_type": "clip_vision_model", "num_attention_heads": width // 80, "num_channels": 3,
              "num_hidden_layers": 1 + max(int(k.split(".")[3]) for k in tower if ".encoder.layers." in k),
              "patch_size": patch, "projection_dim": tower["visual_projection.weight"].shape[0], "layer_norm_eps": 1e-5}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "config.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(config, f)
        clip = comfy.clip_vision.ClipVisionModel(path)
    clip.load_sd(tower)
    return clip


def _vae(sd: dict) -> comfy.sd.VAE:
    ae = {k[len(VAE):]: v for k, v in sd.items() if k.startswith(VAE)}
    ch = ae["encoder.conv_in.weight"].shape[0]
    levels = sorted({int(k.split(".")[2]) for k in ae if k.startswith("encoder.down.")})
    ddconfig = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": ch,
                "ch_mult": [ae[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] // ch for i in levels],
                "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
    return comfy.sd.VAE(sd=ae, config={"params": {"embed_dim": 4, "ddconfig": ddconfig}})


def load_tiny_sv3d(path: str):
    """(MODEL, CLIP_VISION, VAE) of a tiny SV3D file, built as core builds them for the real ones."""
    sd, metadata = comfy.utils.load_torch_file(path, return_metadata=True)
    network = json.loads(metadata["sv4d_network_config"])["params"]
    unet_config = comfy.model_detection.detect_unet_config(sd, UNET)
    config_cls = comfy.supported_models.SV3D_p if metadata["sv4d_model_kind"] == "sv3d_p" else comfy.supported_models.SV3D_u
    config = config_cls(unet_config)
    config.unet_config["num_head_channels"] = network["num_head_channels"]  # not readable from shapes
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model(sd, UNET, device=mm.unet_offload_device())
    model.load_model_weights(sd, UNET)
    model.sv4d_vector_dims = tuple(json.loads(metadata["sv4d_vector_split"]))  # tiny widths of the y parts
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                               offload_device=mm.unet_offload_device())
    return patcher, _clip_vision(sd), _vae(sd)


class TinySV3DLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        names = [n for n in folder_paths.get_filename_list("checkpoints") if "sv3d" in os.path.basename(n)]
        return io.Schema(
            node_id="SV4DTest_TinySV3DLoader", display_name="(test) tiny SV3D loader", category="SV4D/testing",
            inputs=[io.Combo.Input("ckpt_name", options=names, tooltip="a tiny sv3d_u / sv3d_p test checkpoint")],
            outputs=[io.Model.Output(tooltip="core SV3D model"), io.ClipVision.Output(tooltip="CLIP vision"),
                     io.Vae.Output(tooltip="VAE")])

    @classmethod
    def execute(cls, ckpt_name: str) -> io.NodeOutput:
        return io.NodeOutput(*load_tiny_sv3d(folder_paths.get_full_path_or_raise("checkpoints", ckpt_name)))


class _Extension(ComfyExtension):
    async def get_node_list(self):
        return [TinySV3DLoader]


async def comfy_entrypoint():
    return _Extension()
