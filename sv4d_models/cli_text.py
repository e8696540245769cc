"""The ``sv4d`` command's words: help texts (descriptions, examples, exit codes, the output tree), the option
spelling of a setting and the one-line error messages (kept apart from the parser so that ``cli.py`` reads as code;
``sv4d run`` and ``sv4d batch`` rows share them)."""
from __future__ import annotations

import re
from textwrap import fill


def flag(name: str) -> str:
    """The CLI's spelling of a setting: ``fit_steps`` -> ``--fit-steps``, ``video`` -> ``VIDEO``."""
    return "VIDEO" if name == "video" else "--" + name.replace("_", "-")


USER_ERRORS = (ValueError, TypeError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
               PermissionError)


KIND_EXIT_CODES = {"input": 2, "failed": 3, "out_of_memory": 3, "error": 1, "interrupted": 130}


def failure_kind(exc: BaseException) -> str:
    """The kind (``KIND_EXIT_CODES``) of a job's exception, for ``sv4d run`` / ``demo`` / ``eval`` (which exit with
    its code, or keep the traceback of ``error`` and ``out_of_memory``) and each video of ``sv4d batch``."""
    import torch

    from .nerf.guard import FitDivergedError
    from .reconstruction import EmptyReconstructionError
    from .stopping import JobInterrupted

    if isinstance(exc, (JobInterrupted, KeyboardInterrupt)):
        return "interrupted"
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return "out_of_memory"
    if isinstance(exc, (FitDivergedError, EmptyReconstructionError)):
        return "failed"
    return "input" if isinstance(exc, USER_ERRORS) else "error"


def one_line(exc: BaseException) -> str:
    """The message on one line, settings named as the options that set them (``steps=0`` -> ``--steps 0``)."""
    text = " ".join(str(exc).split()).replace(" (overwrite=True)", "").replace("overwrite=True", "--overwrite")
    return _OPTION.sub(lambda m: f"{flag(m.group(1))} ", text)


_OPTIONS = ("frames", "elevation", "steps", "seed", "image_size", "device", "fit_steps", "turntable_frames",
            "turntable_size", "mesh_resolution", "mesh_threshold", "mask_threshold", "dtype", "mode", "preset")
_OPTION = re.compile(r"(?<![\w.\-])(" + "|".join(_OPTIONS) + r")=")


DESCRIPTION = fill("sv4d (same as python -m sv4d_models): one video of an object -> SV4D views of it from every side at "
               "every frame -> a 4D asset (turntable video, animated GLB, per-frame meshes, cameras).")

EXIT_CODES = """exit codes:
  0    done (or: --resume found this run already finished; nothing changed)
  2    bad input: a path, value, file or folder; one line on stderr, nothing written
  3    the job ran but failed (the 4D fit diverged or came out empty): one line, what was kept
  130  interrupted (Ctrl-C): finished work is kept, --resume continues"""

TOP_EPILOG = f"""examples:
  sv4d demo --fast                          the whole job on the bundled clip and demo model (CPU, ~30 s)
  sv4d run cat.mp4 --out runs/cat           your video with Stability's official weights (GPU recommended)
  sv4d run cat.mp4 --out runs/cat --resume  continue an interrupted run

{EXIT_CODES}"""

RUN_DESCRIPTION = fill("Run the whole job on VIDEO: SV3D orbit of frame 0 (sv4d only), SV4D anchor and dense sampling, "
                   "per-view videos and the grid, the 4D fit and its exports. The 4D model file is found by its "
                   "official name in $SV4D_MODELS or ./checkpoints unless --sv4d names it.")

RUN_EPILOG = f"""examples:
  sv4d run cat.mp4 --out runs/cat
  sv4d run cat.mp4 --out runs/cat --sv4d sv4d.safetensors --sv3d sv3d_u.safetensors --preset cpu
  sv4d run cat.mp4 --out runs/quick --model demo --fast     (the 64 px demo model: toy scenes only)

output (in --out):
  manifest.json       input hash, model files + sha256, seeds, every setting, timings, quality
  job.json            the options the run was started with (--resume checks them)
  grid.png            the views x frames matrix
  videos/v000.mp4     one video per view (v000 = the input view)
  sampling/           the resumable sampling work dir (one file per finished pass)
  reconstruction/     turntable.mp4, animated.glb, meshes/, cameras/transforms.json, metrics.json, nerf/

{EXIT_CODES}"""

EVAL_DESCRIPTION = fill("Score a generated image matrix (frames x views) against ground truth as the SV4D paper does: "
                    "per-image PSNR, SSIM, LPIPS and CLIP-S, and FVD read along the matrix in four ways (FVD-F over "
                    "frames per view, FVD-V over views per frame, FVD-Diag along the diagonals, FV4D over every image "
                    "in a bidirectional raster scan). Weights are read from local files only.")

EVAL_EPILOG = f"""examples:
  sv4d eval --pred runs/cat --gt renders/cat --weights eval_weights
  sv4d eval --pred out/consistent4d --gt data/consistent4d_gt --drop-input-view
  sv4d eval --pred runs/cat --gt renders/cat --metrics psnr,ssim,fvd_f --i3d random   (a smoke figure)

layouts (--pred and --gt alike):
  RUN/videos/v000.mp4 ...      a sv4d run folder (one video per view)
  DIR/<view>.mp4 | .gif ...    per-view videos, views in name order
  DIR/f000_v00.png ...         one image per (frame, view)
  DIR/<object>/...             a dataset: one of the above per object; FVD is pooled over all objects

weight files (--weights DIR, $SV4D_EVAL_WEIGHTS, ./checkpoints/eval):
  FVD     i3d_pretrained_400.pt (VideoGPT) | rgb_imagenet.pt (pytorch-i3d) | i3d_torchscript.pt (StyleGAN-V)
  CLIP-S  sv4d.safetensors (its OpenCLIP ViT-H-14 tower; also $SV4D_MODELS) | open_clip_model.safetensors
  LPIPS   alexnet-owt-7be5be79.pth | vgg16-397923af.pth (also $TORCH_HOME/hub/checkpoints)

output (in --out, default the --pred folder): metrics.json (every number, per object and per view), metrics.md

exit codes:
  0    done
  2    bad input: a missing folder, view or weight file, mismatched shapes; one line on stderr"""

DEMO_DESCRIPTION = fill("The whole job on the bundled sample clip (a synthetic toy scene) with the bundled 64 px demo "
                    "model: no downloads, CPU only. It also compares the generated views with the scene's true views "
                    "and reports the reconstruction's PSNR on held-out views and frames.")

DEMO_EPILOG = f"""examples:
  sv4d demo --fast            ~30 s on 2 CPU cores (tiny fit preset, small exports)
  sv4d demo                   ~3 minutes on 2 CPU cores (the cpu fit preset)
  sv4d demo --out d --resume  continue an interrupted demo

{EXIT_CODES}"""

DEMO_ON_OTHER_INPUT = ("sv4d: note: the demo model knows only the synthetic toy scenes it was trained on (capsule, "
                       "ring, ball): on your video it paints those. For real objects use Stability's official "
                       "weights (README, 'Official checkpoints').")

BATCH_DESCRIPTION = fill("Run the job of sv4d run on every video of INPUT, each into --out/NAME/ (NAME: the file name; "
                     "names that would collide get a short hash of the path). Every run option applies to every video; "
                     "a .csv list may give some per video (columns video, name, elevation, frames, seed, steps, "
                     "fit_steps, mode, preset, mask_threshold, mesh_threshold, mesh_resolution, turntable_frames, "
                     "turntable_size). The models are loaded once per process. A video that fails is recorded and the "
                     "batch goes on. Running the same command again skips finished videos, continues interrupted ones "
                     "and retries failed ones only with --retry-failed. Under accelerate launch (or torchrun) each "
                     "process runs every N-th video on its own device.")

BATCH_EPILOG = """examples:
  sv4d batch clips/ --out runs                          every video in clips/ (sub-folders too), one process
  sv4d batch 'clips/**/*.mp4' list.csv --out runs       a glob and a list
  accelerate launch --multi_gpu --num_processes 4 -m sv4d_models batch clips/ --out runs    4 GPUs
  accelerate launch --multi_gpu --num_processes 2 -m sv4d_models batch clips/ --out runs    2 processes (CPU without GPUs)
  accelerate launch --num_machines 2 --machine_rank R --main_process_ip HOST --main_process_port 29500 \\
      --multi_gpu --num_processes 16 -m sv4d_models batch clips/ --out /shared/runs          2 machines, shared folder

output (in --out):
  NAME/               one sv4d run folder per video (manifest.json, videos/, reconstruction/, ...)
  batch.json          per video: status, kind + message of a failure, seconds, peak memory, PSNRs, output paths
  batch.csv           the same rows as a table
  .batch/results/     one row file per video (merged into batch.json / batch.csv by every process)

exit codes:
  0    every video is done (now or before)
  2    bad INPUT or option: one line on stderr, nothing run
  3    some videos failed (or were not run): their count on stderr, their rows in batch.csv
  130  interrupted (Ctrl-C / SIGTERM): the current step finished, everything kept; run the same command again"""
