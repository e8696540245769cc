"""The main job: one video -> SV4D sampling -> per-view videos and grid -> 4D reconstruction -> exports, with a
``manifest.json`` that records everything needed to reproduce it (``sv4d run`` / ``sv4d demo``, ``cli.py``).

Everything cheap is checked before anything expensive: the output folder, the checkpoints (header only), the
device, the input video (decoded and preprocessed first), the settings. An output folder that holds an earlier run
is refused unless ``resume`` (continue it: finished sampling passes and the fit checkpoint are reused) or
``overwrite`` (its job outputs are deleted first; nothing else in the folder is touched).

Output folder::

    manifest.json          inputs, model files + sha256, seeds, settings, library version, timings, metrics
    grid.png               the frame x view image matrix (rows = frames, column 0 = the input)
    videos/v000.mp4 ...    one video per view (v000 = the preprocessed input)
    sampling/              the resumable sampling work dir
    reconstruction/        turntable.mp4, animated.glb, meshes/, cameras/transforms.json, metrics.json, nerf/
"""
from __future__ import annotations

import dataclasses
import hashlib
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from . import events
from .checkpoint import CheckpointNotFoundError
from .config import check_all
from .files import atomic_write_bytes, atomic_write_json, model_folders, read_json
from .kinds import CHECKPOINT_FOLDER_HINT, FOUR_D_KINDS, IMAGE_SIZE, KINDS, ORBIT_KINDS
from .images import FOREGROUND_THRESHOLD
from .presets import PRESETS
from .stopping import StopCheck
from .job_record import check_resume, write_job_record
from .validate import ANGLES, bounds, check_device, check_fields

JOB_OUTPUTS = ("manifest.json", "job.json", "grid.png", "videos", "sampling", "reconstruction")
Reporter = Callable[[dict], None]



@dataclass(frozen=True)
class JobSettings:
    """Everything ``sv4d run`` takes (CLI flags map 1:1; None = the model kind's / preset's default)."""

    video: str
    out: str
    sv4d: str | None = None  # 4D checkpoint path; None = found by its official name (model_folders())
    sv3d: str | None = None  # SV3D checkpoint (sv4d only); None = sv3d_u / sv3d_p found the same way
    model_kind: str | None = None
    frames: int | None = None  # keep the first N frames (None: all)
    elevation: float | None = None
    steps: int | None = None
    cfg: float | None = None  # max guidance scale (None: the kind's official value)
    min_cfg: float | None = None
    seed: int = 23
    device: str | None = None
    dtype: str = "auto"
    image_size: int = IMAGE_SIZE
    mode: str = "auto"
    preset: str = "gpu"  # NeRF fit preset: tiny / cpu / gpu
    mask_threshold: float = FOREGROUND_THRESHOLD  # fit masks: a pixel with any channel below this is the object
    fit_steps: int | None = None
    turntable_frames: int | None = None
    turntable_size: int | None = None
    mesh_resolution: int | None = None
    mesh_threshold: float | None = None
    skip_nerf: bool = False
    preprocess: bool = True  # False: the video is already framed at image_size (the demo's bundled clip)
    resume: bool = False
    overwrite: bool = False
    extra: dict = field(default_factory=dict)  # recorded in the manifest (e.g. the demo's model card)

    def __post_init__(self) -> None:
        check_fields(self, JOB_BOUNDS)
        if self.device is not None:
            check_device(self.device, available=False)  # the name now; presence before anything is loaded
        check_all([(self.preset in PRESETS, f"preset={self.preset!r}: use one of {', '.join(PRESETS)}"),
                   (self.mode in ("auto", "official", "extended"),
                    f"mode={self.mode!r}: use 'auto', 'official' or 'extended'"),
                   (self.model_kind is None or self.model_kind in FOUR_D_KINDS,
                    f"model_kind={self.model_kind!r}: use one of {', '.join(FOUR_D_KINDS)}"),
                   (self.dtype in ("auto", "float32", "float16", "bfloat16"),
                    f"dtype={self.dtype!r}: use auto, float32, float16 or bfloat16"),
                   (self.min_cfg is None or self.cfg is None or self.min_cfg <= self.cfg,
                    f"min_cfg={self.min_cfg} is above cfg={self.cfg}; the guidance ramps from min_cfg up to cfg"),
                   (not (self.resume and self.overwrite), "resume and overwrite exclude each other: pick one")])
        self.reconstruction_settings()  # the fit and export settings are built (and so checked) now, not after sampling

    def reconstruction_settings(self):
        """(``NeRFFitConfig``, ``ExportSettings``) of the 4D stage: the preset's, with this job's overrides."""
        preset = PRESETS[self.preset]
        export = preset.export_settings(turntable_frames=self.turntable_frames, turntable_size=self.turntable_size,
                                        mesh_resolution=self.mesh_resolution, mesh_threshold=self.mesh_threshold)
        return preset.fit_config(self.fit_steps), export


# The ranges of the job's numbers (sv4d_models.validate.RANGES has the shared ones and their reasons)
JOB_BOUNDS = {**bounds(seed="seed", frames="video_frames", steps="sampler_steps", cfg="cfg", min_cfg="cfg",
                       fit_steps="fit_steps", turntable_frames="turntable_frames", turntable_size="render_size",
                       mesh_resolution="mesh_resolution", mesh_threshold="mesh_threshold",
                       mask_threshold="mask_threshold"),
              "elevation": ANGLES["elevations_deg"],
              "image_size": (16, 4096, f"pixels per side; the official models were trained at {IMAGE_SIZE}, memory "
                                       "grows with the square")}


def find_checkpoint(given: str | None, kinds: tuple[str, ...], what: str, flag: str) -> Path:
    """``given`` (checked to be a file), else the first official file of ``kinds`` in ``model_folders()``."""
    if given is not None:
        path = Path(given)
        if path.is_dir():
            raise CheckpointNotFoundError(f"{flag} {given} is a folder; pass the .safetensors file inside it")
        if not path.is_file():
            raise CheckpointNotFoundError(f"{flag} {given} does not exist; check the path, or leave {flag} out to use "
                                          f"{KINDS[kinds[0]].official_file} from $SV4D_MODELS or ./checkpoints")
        return path
    names = [KINDS[k].official_file for k in kinds]
    for folder in model_folders():
        for name in names:
            if (folder / name).is_file():
                return folder / name
    searched = ", ".join(str(f) for f in model_folders())
    raise CheckpointNotFoundError(f"no {what} checkpoint: pass {flag} PATH, or put {' / '.join(names)} in "
                                  f"$SV4D_MODELS or ./checkpoints (searched: {searched}; Stability's releases, see "
                                  f"the README; in ComfyUI: {CHECKPOINT_FOLDER_HINT}), or use --model demo")


def check_output(settings: JobSettings) -> list[str]:
    """The job outputs an earlier run left in ``--out``; FileExistsError unless resume / overwrite (no side effect)."""
    out = Path(settings.out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file; choose a folder")
    earlier = [name for name in JOB_OUTPUTS if (out / name).exists()] if out.is_dir() else []
    if earlier and not (settings.resume or settings.overwrite):
        raise FileExistsError(f"--out {out} holds an earlier run ({', '.join(earlier)}); pass --resume to continue "
                              "it, --overwrite to replace it, or choose another --out")
    return earlier


def prepare_output(settings: JobSettings) -> Path:
    """The output folder, refused / cleared as the module docstring says (call after every other check)."""
    out, earlier = Path(settings.out), check_output(settings)
    if settings.overwrite:
        for name in earlier:
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    write_job_record(out, settings)
    return out


def file_sha256(path: Path, cache: Path | None = None, report: Reporter | None = None) -> str:
    """sha256 of a (possibly 12 GB) file, cached in ``cache`` (JSON) by path, size and mtime."""
    st = path.stat()
    key = f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    known = read_json(cache, "the hash cache") if cache is not None and cache.is_file() else {}
    if key in known:
        return known[key]
    h, done = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
            done += len(block)
            if report is not None:
                report(events.progress("hashing", done, st.st_size, "B"))
    digest = h.hexdigest()
    if cache is not None:
        atomic_write_json(cache, {**known, key: digest}, overwrite=True)
    return digest


def library_version() -> str:
    try:
        from importlib.metadata import version

        return version("comfyui-sv4d")
    except Exception:  # noqa: BLE001 - not installed as a distribution (a plain checkout)
        return "0+checkout"


def write_grid(images: torch.Tensor, path: Path, overwrite: bool) -> Path:
    """``[F, V+1, S, S, 3]`` in [0, 1] -> one PNG, rows = frames."""
    from .images import grid_rows, png_bytes

    return atomic_write_bytes(path, png_bytes(grid_rows(images)), overwrite)


def _find_models(settings: JobSettings, report: Reporter) -> tuple[str, dict, dict]:
    """The 4D model kind (resolved: requested, metadata, file name, weights), the checkpoint files and the kind
    record for the manifest, found and checked by their headers only (cheap). A kind that only the weights decided
    between look-alike files (sv4d2 / sv4d2_8views) is reported as a warning."""
    from .checkpoint import plan_unet, resolve_kind
    from .pipeline import check_image_size

    kinds = (settings.model_kind,) if settings.model_kind else FOUR_D_KINDS
    sv4d = find_checkpoint(settings.sv4d, kinds, "SV4D", "--sv4d")
    info = resolve_kind(sv4d, settings.model_kind)
    kind = info.kind
    if kind not in FOUR_D_KINDS:
        raise ValueError(f"--sv4d {sv4d} is an {kind} checkpoint; pass sv4d / sv4d2 / sv4d2_8views weights there "
                         f"(SV3D files go to --sv3d)")
    plan = plan_unet(sv4d, kind)  # every UNet key, shape and dtype checked from the header (cheap), before --out
    check_image_size(settings.image_size, len(plan.config.channel_mult))
    sv3d = sv3d_info = None
    if KINDS[kind].needs_reference_orbit:
        sv3d = find_checkpoint(settings.sv3d, ORBIT_KINDS, "SV3D (sv4d needs a reference orbit)", "--sv3d")
        sv3d_info = resolve_kind(sv3d)
        if sv3d_info.kind not in ORBIT_KINDS:
            raise ValueError(f"--sv3d {sv3d} is an {sv3d_info.kind} checkpoint; pass sv3d_u.safetensors or "
                             "sv3d_p.safetensors")
        plan_unet(sv3d, sv3d_info.kind)
    if info.warning:
        report(events.warning(f"{info.warning} (here: --model-kind)"))
    report(events.summary("models", f"{kind} ({info.reason}) from {sv4d}" +
            (f", reference orbit {sv3d_info.kind} from {sv3d}" if sv3d else "")))
    kinds_record = {"sv4d": info.to_json(), "sv3d": None if sv3d_info is None else sv3d_info.to_json()}
    return kind, {"sv4d": sv4d, "sv3d": sv3d}, kinds_record


def _pipeline_config(settings: JobSettings) -> dict:
    return {"image_size": settings.image_size, "seed": settings.seed, "mode": settings.mode, "dtype": settings.dtype,
            "device": check_device(settings.device), "max_frames": settings.frames,
            **({"num_steps": settings.steps} if settings.steps else {}),
            **{k: getattr(settings, k) for k in ("cfg", "min_cfg") if getattr(settings, k) is not None},
            **({"elevations_deg": settings.elevation} if settings.elevation is not None else {})}


def _read_input(settings: JobSettings, kind: str, report: Reporter) -> torch.Tensor:
    """The model input ``[F, 3, S, S]`` in [-1, 1]: decoded and preprocessed (or, unpreprocessed, size-checked)."""
    from .frames_io import load_frames
    from .pipeline import load_input, to_model_frames

    if settings.preprocess:
        frames, _ = load_input(settings.video, settings.image_size, KINDS[kind].image_frame_ratio, settings.frames)
    else:
        raw = load_frames(settings.video, max_frames=settings.frames)[..., :3]
        if raw.shape[1] != settings.image_size or raw.shape[2] != settings.image_size:
            raise ValueError(f"{settings.video} is {raw.shape[2]}x{raw.shape[1]}, not the {settings.image_size} px "
                             "the job expects without preprocessing")
        frames = to_model_frames(raw)
    report(events.summary("input", f"{frames.shape[0]} frames at {frames.shape[-1]} px from {settings.video}"))
    return frames


def _load_pipeline(settings: JobSettings, kind: str, files: dict, loaded: dict | None = None):
    """The sampler for ``settings``; with ``loaded`` (a dict kept between jobs) the networks are loaded once per
    checkpoint files, kind, device and dtype, and later jobs only get their own config."""
    from .pipeline import SV4DPipeline

    config = _pipeline_config(settings)
    if loaded is None:
        return SV4DPipeline.from_checkpoints(files["sv4d"], files["sv3d"], config=config, model_kind=kind)
    key = (*(None if p is None else str(Path(p).resolve()) for p in files.values()), kind, config["device"],
           settings.dtype)
    if key not in loaded:
        loaded[key] = SV4DPipeline.from_checkpoints(files["sv4d"], files["sv3d"], config=config, model_kind=kind)
    return loaded[key].with_config(config)


def _sampling(pipe, frames: torch.Tensor, out: Path, report: Reporter, should_stop: StopCheck | None = None):
    result = pipe.run(frames, work_dir=out / "sampling", callback=report, should_stop=should_stop)
    report(events.summary("sampling", f"{len(result.plan.passes)} passes ({result.plan.mode} schedule) -> "
                                           f"{result.n_frames} frames x {result.n_views} views"))
    return pipe, result


def _reconstruction(settings: JobSettings, result, out: Path, report: Reporter,
                    should_stop: StopCheck | None = None) -> dict:
    from .images import foreground_masks
    from .reconstruction import reconstruct

    config, export = settings.reconstruction_settings()
    images = result.images
    masks = foreground_masks(images, settings.mask_threshold)  # white background -> foreground
    paths = reconstruct(images, masks, result.cameras, result.times, out / "reconstruction", config, export,
                        callback=report, should_stop=should_stop, overwrite=settings.overwrite)
    m = paths["metrics"]
    text = f"PSNR {m['fitted']['psnr']:.2f} dB on the fitted views"
    if "held_out_view" in m:
        text += f", {m['held_out_view']['psnr']:.2f} dB held-out view, {m['held_out_frame']['psnr']:.2f} dB held-out frame"
    report(events.summary("reconstruction",
                          f"{text}; {len(paths['mesh_vertices'])} meshes ({sum(paths['mesh_vertices_removed'])} "
                          f"floater vertices removed) -> {out / 'reconstruction'}"))
    return {"metrics": m, "nerf_config": config.to_dict(), "export": dataclasses.asdict(export),
            "outputs": {k: [str(x) for x in v] if isinstance(v, (list, tuple)) else str(v)
                        for k, v in paths.items() if k in ("turntable", "glb", "meshes", "transforms")}}


def run_job(settings: JobSettings, report: Reporter = lambda info: None,
            evaluate: Callable[[object], dict] | None = None, should_stop: StopCheck | None = None,
            loaded: dict | None = None) -> dict:
    """Run the whole job; ``report`` gets the events of ``sv4d_models.events`` (sampling and fit steps, progress,
    one summary line per stage, warnings); ``evaluate(result)`` (the sampled ``MultiViewResult``) may add a
    ``"quality"`` entry (the demo compares with the ground truth); ``should_stop()`` True ends sampling or the fit
    after its current step with ``JobInterrupted`` (``resume`` continues); ``loaded``: a dict kept between jobs that
    holds the loaded networks (``sv4d batch``). Returns the manifest (also ``out/manifest.json``)."""
    timings, started = {}, time.perf_counter()
    check_output(settings)  # everything cheap first; nothing is written until all of it passed
    finished = check_resume(settings)  # --resume of another job: error in the CLI's words; of this one, finished: done
    if finished is not None:
        report(events.summary("done", f"--out {settings.out} holds this run, finished: nothing to do, nothing was "
                                      "changed (--overwrite redoes it)"))
        return finished
    if not Path(settings.video).exists():
        raise FileNotFoundError(f"video {settings.video} does not exist; check the path")
    kind, files, kinds_record = _find_models(settings, report)
    _pipeline_config(settings)  # device and settings
    frames = _read_input(settings, kind, report)
    timings["input"] = time.perf_counter() - started
    t = time.perf_counter()
    pipe = _load_pipeline(settings, kind, files, loaded)  # a file that fails to load leaves no --out behind
    timings["models"] = time.perf_counter() - t
    out = prepare_output(settings)
    t = time.perf_counter()
    pipe, result = _sampling(pipe, frames, out, report, should_stop)
    timings["sampling"] = time.perf_counter() - t
    t = time.perf_counter()
    result.write_videos(out / "videos", overwrite=True)
    write_grid(result.images, out / "grid.png", overwrite=True)
    timings["videos"] = time.perf_counter() - t
    quality = {"quality": evaluate(result)} if evaluate is not None else {}
    recon = {}
    if not settings.skip_nerf:
        t = time.perf_counter()
        recon = _reconstruction(settings, result, out, report, should_stop)
        timings["reconstruction"] = time.perf_counter() - t
    cache = out / "sampling" / "hashes.json"
    manifest = {"format": "sv4d_job/1", "library_version": library_version(),
                "input": {"path": str(settings.video), "sha256": file_sha256(Path(settings.video)),
                          "frames": result.n_frames, "image_size": result.image_size},
                "models": {k: None if p is None else {"path": str(p), "sha256": file_sha256(p, cache, report),
                                                      "kind": kinds_record[k]}
                           for k, p in files.items()},
                "seeds": {"base": settings.seed, "passes": {
                    str(i): int(result.store.load_pass(i)["seed"]) for i in
                    ([-1] if result.plan.given_reference_row else []) + [p.index for p in result.plan.passes]}},
                "settings": {**{k: v for k, v in dataclasses.asdict(settings).items() if k != "extra"},
                             "pipeline": pipe.config.to_dict()},
                "plan": result.plan.to_json(), "timings_s": {k: round(v, 2) for k, v in timings.items()},
                **quality, **recon, **settings.extra}
    atomic_write_json(out / "manifest.json", manifest, overwrite=True)
    report(events.summary("done", f"outputs in {out} ({time.perf_counter() - started:.0f} s)"))
    return manifest


__all__ = ["JobSettings", "model_folders", "find_checkpoint", "check_device", "prepare_output", "file_sha256",
           "library_version", "write_grid", "run_job", "check_output", "JOB_OUTPUTS"]
