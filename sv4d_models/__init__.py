"""ComfyUI-SV4D core library: pure PyTorch, importable without ComfyUI.

Public names are imported lazily so that ``import sv4d_models`` stays cheap (no open_clip, no trimesh).
"""
from __future__ import annotations

from .lazy import lazy_getattr

_EXPORTS: dict[str, str] = {  # public name -> module that defines it
    "build_unet": ".unet",
    "SV4DUNet": ".unet",
    "UNetConfig": ".config",
    "official_config": ".config",
    "KINDS": ".kinds",
    "KindSpec": ".kinds",
    "load_unet": ".checkpoint",
    "infer_model_kind": ".checkpoint",
    "resolve_kind": ".checkpoint",
    "CheckpointKind": ".checkpoint",
    "CheckpointSource": ".checkpoint",
    "JobInterrupted": ".stopping",
    "set_attention_backend": ".attention",
    "Cameras": ".camera",
    "load_clip_image_encoder": ".encoders",
    "load_vae_encoder": ".encoders",
    "load_vae_decoder": ".encoders",
    "ClipImageEncoder": ".encoders",
    "VAEEncoder": ".encoders",
    "VAEDecoder": ".encoders",
    "write_tiny_checkpoint": ".tiny_checkpoint",
    "make_plan": ".sampling.plan",
    "load_frames": ".preprocess",
    "validate_frames": ".preprocess",
    "preprocess_frames": ".preprocess",
    "pingpong_pad": ".preprocess",
    "Preprocessed": ".preprocess",
    "SyntheticScene": ".synthetic",
    "SV4DPipeline": ".pipeline",
    "PipelineConfig": ".pipeline",
    "MultiViewResult": ".pipeline",
    "EngineModels": ".pipeline",
    "load_engine_models": ".pipeline",
    "sample_reference_orbit": ".pipeline",
    "sample_pass": ".pipeline",
    "assemble_matrix": ".pipeline",
    "pass_seed": ".pipeline",
    "fit_dynamic_nerf": ".nerf.fit",
    "render": ".nerf.renderer",
    "load_fit_result": ".nerf.fit",
    "NeRFFitConfig": ".nerf.fit_config",
    "cpu_preset": ".nerf.fit_config",
    "tiny_preset": ".nerf.fit_config",
    "reconstruct": ".reconstruction",
    "ExportSettings": ".reconstruction",
    "MeshConfig": ".export.mesh",
    "MeshSequence": ".export.mesh",
    "extract_mesh_sequence": ".export.mesh",
    "write_glb": ".export.glb",
    "write_mesh_sequence": ".export.sequence",
    "export_transforms": ".export.cameras",
    "load_transforms": ".export.cameras",
    "render_turntable": ".export.video",
    "render_bullet_time": ".export.video",
    "render_time_sweep": ".export.video",
    "write_mp4": ".export.video",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
