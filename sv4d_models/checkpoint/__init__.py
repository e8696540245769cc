"""Checkpoints: the only package that reads safetensors model files.

``source``: ``CheckpointSource`` (one reader for files and state dicts), metadata keys, foreign-file classifier;
``kind``: the one resolver of "which model kind is this file" (requested, metadata, file name, weights);
``strict``: the one strict sub-model loader and key-mismatch report; ``unet``: the UNet plan (config and expected
weights from the header), streaming and ``load_unet``. The encoders (``sv4d_models.encoders``) load through
``strict.load_submodule``.
"""
from .kind import (SAME_KEYS, UNET_PREFIX, CheckpointKind, decide_kind, infer_model_kind, resolve_kind, unet_shapes,
                   vector_dims, warn_if_unsure, weights_kind)
from .source import (CHECKPOINT_FILES, META_KIND, META_NETWORK, META_TINY_SEED, META_VECTOR_SPLIT,
                     CheckpointNotFoundError, CheckpointSource, StateDictSource, as_source, describe_checkpoint)
from .strict import ShapeReader, key_mismatch, load_submodule
from .unet import UNetPlan, check_loaded, expected_unet_shapes, infer_network_config, load_unet, plan_unet, unet_tensors

__all__ = ["CHECKPOINT_FILES", "META_KIND", "META_NETWORK", "META_TINY_SEED", "META_VECTOR_SPLIT",
           "CheckpointNotFoundError", "CheckpointSource", "StateDictSource", "as_source", "describe_checkpoint",
           "ShapeReader", "key_mismatch", "load_submodule", "SAME_KEYS", "UNET_PREFIX", "CheckpointKind",
           "decide_kind", "infer_model_kind", "resolve_kind", "unet_shapes", "vector_dims", "warn_if_unsure",
           "weights_kind", "UNetPlan", "check_loaded", "expected_unet_shapes", "infer_network_config", "load_unet",
           "plan_unet", "unet_tensors"]
