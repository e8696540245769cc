"""SV4D / SV4D 2.0 sampling, organised by stage (data flows one way: inputs -> stages -> store -> result).

    config.py    PipelineConfig (sampling / framing / placement groups)
    inputs.py    frames and file inputs -> model input [F, 3, S, S]; user reference views
    models.py    EngineModels (networks of one checkpoint) + Placement (device, dtype, chunks); loading
    stages.py    pure stage functions: sample_reference_orbit, sample_pass, assemble_matrix
    loop.py      run_plan: the one sampling loop (pipeline, ComfyUI nodes, trainer validation)
    store.py     work dir: pass files (the one pass-record format), manifest (resume, refuse, re-roll)
    result.py    MultiViewResult: the matrix read lazily from the store
    pipeline.py  SV4DPipeline: from_checkpoints, run = the stage loop over the store
"""
from .config import FramingConfig, PipelineConfig, PlacementConfig, SamplingConfig
from .loop import PassLedger, PassSettings, run_plan
from .inputs import check_image_size, load_input, reference_row, to_model_frames
from .models import ENCODE_CHUNK, EngineModels, Placement, load_encoder_models, load_engine_models
from .pipeline import SV4DPipeline
from .result import MultiViewResult
from .store import PassStore
from .stages import (ImageMatrix, OrbitResult, PassResult, SamplingModels, assemble_matrix, pass_seed,
                     reference_images, sample_pass, sample_reference_orbit, to_unit_hwc)

__all__ = ["PipelineConfig", "SamplingConfig", "FramingConfig", "PlacementConfig", "EngineModels", "Placement",
           "load_engine_models", "SV4DPipeline", "MultiViewResult", "ImageMatrix", "OrbitResult", "PassResult",
           "SamplingModels", "assemble_matrix", "pass_seed", "reference_images", "sample_pass",
           "sample_reference_orbit", "PassLedger", "PassSettings", "run_plan", "PassStore", "check_image_size",
           "load_input", "reference_row", "to_model_frames", "ENCODE_CHUNK", "load_encoder_models", "to_unit_hwc"]
