"""Checkpoints: the only package that reads safetensors model files.

``source``: ``CheckpointSource`` (one reader for files and state dicts), metadata keys, foreign-file classifier;
``strict``: the one strict sub-model loader and key-mismatch report; ``unet``: UNet kind / config inference and
``load_unet``. The encoders (``sv4d_models.encoders``) load through ``strict.load_submodule``.
"""
from .source import (CHECKPOINT_FILES, META_KIND, META_NETWORK, META_TINY_SEED, META_VECTOR_SPLIT,
                     CheckpointNotFoundError, CheckpointSource, StateDictSource, as_source, describe_checkpoint)
from .strict import ShapeReader, key_mismatch, load_submodule
from .unet import (UNET_PREFIX, infer_model_kind, infer_network_config, load_unet, peek_checkpoint, unet_shapes,
                   vector_dims)

__all__ = ["CHECKPOINT_FILES", "META_KIND", "META_NETWORK", "META_TINY_SEED", "META_VECTOR_SPLIT",
           "CheckpointNotFoundError", "CheckpointSource", "StateDictSource", "as_source", "describe_checkpoint",
           "ShapeReader", "key_mismatch", "load_submodule", "UNET_PREFIX", "infer_model_kind",
           "infer_network_config", "load_unet", "peek_checkpoint", "unet_shapes", "vector_dims"]
