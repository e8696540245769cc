"""SV4D sampling core: conditioning dicts, denoiser, EDM schedule, guiders, Euler samplers, pass planner."""
from .conditioning import build_sv3d_cond, build_sv4d_cond, camera_vectors, repeat_per_view, timestep_embedding
from .denoiser import CFGDenoiser, Denoiser, VScalingWithEDMcNoise, stack_cfg_cond
from .guiders import (LinearPredictionGuider, SpatiotemporalPredictionGuider, TrianglePredictionGuider,
                      VanillaCFG, default_guider)
from .passes import pass_denoisers, run_pass
from .plan import REFERENCE, Direction, Plan, PlannedPass, make_plan, official_supported
from .samplers import (SamplingCallback, default_step_directions, euler_edm_step, initial_latent,
                       sample_dense_alternating, sample_euler_edm)
from .schedule import get_sigmas_edm

__all__ = [
    "build_sv3d_cond", "build_sv4d_cond", "camera_vectors", "repeat_per_view", "timestep_embedding",
    "CFGDenoiser", "Denoiser", "VScalingWithEDMcNoise", "stack_cfg_cond",
    "LinearPredictionGuider", "SpatiotemporalPredictionGuider", "TrianglePredictionGuider", "VanillaCFG",
    "default_guider", "pass_denoisers", "run_pass", "REFERENCE", "Direction", "Plan", "PlannedPass", "official_supported",
    "make_plan", "default_step_directions", "euler_edm_step", "initial_latent", "sample_dense_alternating",
    "sample_euler_edm", "get_sigmas_edm", "SamplingCallback",
]
