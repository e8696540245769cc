"""The ``sv4d`` command (same as ``python -m sv4d_models``): the main job on a video, or on the embedded demo.

    sv4d demo [--fast] [--out sv4d_demo]           bundled sample video + bundled demo model, CPU, minutes
    sv4d run VIDEO --out DIR [--sv4d PATH --sv3d PATH] [--model demo] [--resume | --overwrite] ...

Exit codes: 0 done; 2 a user error (bad path, value, file or folder: one line on stderr, nothing run); 3 the job
ran but failed (the 4D fit diverged or came out empty: one line, what was kept); 130 interrupted (Ctrl-C; finished
sampling passes and the fit checkpoint are kept, ``--resume`` continues). Anything else is a bug and keeps its
traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import cli_text
from .cli_text import KIND_EXIT_CODES, USER_ERRORS, failure_kind, one_line
from .kinds import FOUR_D_KINDS, IMAGE_SIZE, OFFICIAL_VIDEO_FRAMES, ORBIT_KINDS, kind_list, kind_values
from .console import ConsoleReporter
from .images import FOREGROUND_THRESHOLD
from .presets import FAST_FIT_STEPS, FAST_PRESET, PRESETS, default_preset, presets_help

def _add_job_options(p: argparse.ArgumentParser, folder: bool = True) -> None:
    """The job's options (``sv4d run`` and ``sv4d batch``; ``folder``: --resume / --overwrite of one --out)."""
    g = p.add_argument_group("models")
    g.add_argument("--sv4d", default=None, help=f"4D checkpoint ({kind_list()} .safetensors); default: the official "
                                                "file name in $SV4D_MODELS or ./checkpoints")
    g.add_argument("--sv3d", default=None, help=f"SV3D checkpoint for sv4d's reference orbit ({kind_list(ORBIT_KINDS)}); "
                   "default: its official file name in $SV4D_MODELS or ./checkpoints")
    g.add_argument("--model", choices=("official", "demo"), default="official",
                   help="demo: the bundled demo model instead of official weights (it runs at 64 px with its own "
                        "steps and guidance; it knows only its synthetic toy scenes)")
    g.add_argument("--model-kind", choices=FOUR_D_KINDS, default=None,
                   help="the model kind (default: from the file: our metadata, the official file name, the weights; "
                        "sv4d2 and sv4d2_8views files have identical weights layouts)")
    g = p.add_argument_group("sampling")
    g.add_argument("--frames", type=int, default=None, help="use the first N frames (default: all)")
    g.add_argument("--elevation", type=float, default=None, help="camera elevation in degrees (default: official)")
    g.add_argument("--steps", type=int, default=None,
                   help=f"sampler steps per pass (default: the kind's official: {kind_values('default_steps')})")
    g.add_argument("--seed", type=int, default=23, help="base seed (pass k samples with a seed derived from it)")
    g.add_argument("--image-size", type=int, default=IMAGE_SIZE,
                   help=f"frame size in pixels (the official models: {IMAGE_SIZE})")
    g.add_argument("--mode", choices=("auto", "official", "extended"), default="auto",
                   help=f"official: the scripts' schedule exactly ({OFFICIAL_VIDEO_FRAMES} frames for sv4d); extended: any "
                        "length")
    g.add_argument("--device", default=None, help="cpu / cuda / cuda:N (default: cuda when available)")
    g.add_argument("--dtype", choices=("auto", "float32", "float16", "bfloat16"), default="auto",
                   help="UNet precision (auto: float16 on CUDA, float32 on CPU)")
    g = p.add_argument_group("4D reconstruction")
    g.add_argument("--preset", choices=tuple(PRESETS), default=None,
                   help=f"NeRF fit + export sizes ({presets_help()}; default: gpu with CUDA, else cpu)")
    g.add_argument("--fit-steps", type=int, default=None, help="total NeRF steps (default: the preset's)")
    g.add_argument("--turntable-frames", type=int, default=None, help="turntable video frames (default: the preset's)")
    g.add_argument("--turntable-size", type=int, default=None, help="turntable video size (default: the preset's)")
    g.add_argument("--mesh-resolution", type=int, default=None, help="marching-cubes grid (default: the preset's)")
    g.add_argument("--mesh-threshold", type=float, default=None,
                   help="surface density (default: where one render sample of the fit is half opaque, ln 2 / step)")
    g.add_argument("--mask-threshold", type=float, default=FOREGROUND_THRESHOLD,
                   help="the fit's masks: a pixel with any channel below this is the object (white backgrounds)")
    g.add_argument("--skip-nerf", action="store_true", help="stop after the sampled videos")
    g = p.add_argument_group("output")
    if folder:
        g.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
        g.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_threads(p)


def _add_fast(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fast", action="store_true", help=f"short settings: the {FAST_PRESET} fit preset, {FAST_FIT_STEPS} "
                   "fit steps, its small exports (with --model demo: the demo's --fast); explicit options still win")


def _add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads (default: $SV4D_THREADS, else the physical cores this process may use; fewer "
                        "keep a shared machine from stalling)")


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``sv4d run: error: <what>; see sv4d run --help`` (no 14-line usage block)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    fmt = _DefaultsFormatter
    p = OneLineParser(prog="sv4d", description=cli_text.DESCRIPTION, epilog=cli_text.TOP_EPILOG, formatter_class=fmt)
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="cmd", metavar="{run,batch,demo,eval}")
    r = sub.add_parser("run", help="video -> SV4D views -> 4D asset", formatter_class=fmt,
                       description=cli_text.RUN_DESCRIPTION, epilog=cli_text.RUN_EPILOG)
    r.add_argument("video", help="video / gif / image folder of the object")
    r.add_argument("--out", required=True, help="output folder (required; no default)")
    _add_fast(r)
    _add_job_options(r)
    b = sub.add_parser("batch", help="many videos: the run job on each, resumable, across accelerate processes",
                       formatter_class=fmt, description=cli_text.BATCH_DESCRIPTION, epilog=cli_text.BATCH_EPILOG)
    b.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="video files, folders of videos, globs ('clips/**/*.mp4') or .txt / .csv lists")
    b.add_argument("--out", required=True, help="batch folder: one folder per video, batch.json, batch.csv")
    b.add_argument("--retry-failed", action="store_true", help="run the videos the report lists as failed again")
    _add_fast(b)
    _add_job_options(b, folder=False)
    d = sub.add_parser("demo", help="the whole job on the bundled sample video with the bundled demo model",
                       formatter_class=fmt, description=cli_text.DEMO_DESCRIPTION, epilog=cli_text.DEMO_EPILOG)
    d.add_argument("--out", default="sv4d_demo", help="output folder")
    d.add_argument("--fast", action="store_true", help="the demo's short settings (about 30 s on 2 CPU cores)")
    d.add_argument("--resume", action="store_true", help="continue an interrupted demo in --out")
    d.add_argument("--overwrite", action="store_true", help="replace an earlier demo in --out")
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_threads(d)
    _add_eval(sub.add_parser("eval", help="score generated views against ground truth (LPIPS, CLIP-S, FVD paths)",
                             formatter_class=fmt, description=cli_text.EVAL_DESCRIPTION, epilog=cli_text.EVAL_EPILOG))
    return p


def _metric_list(text: str) -> tuple[str, ...]:
    from .metrics.evaluate import parse_metrics

    try:
        return parse_metrics(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_eval(e: argparse.ArgumentParser) -> None:
    e.add_argument("--pred", required=True, help="generated matrix: a sv4d run folder, a folder of per-view videos "
                                                 "or of f000_v00.png images, or a folder of such folders (a dataset)")
    e.add_argument("--gt", required=True, help="ground truth in the same layout (objects matched by folder name)")
    e.add_argument("--out", default=None, help="where metrics.json and metrics.md go (default: the --pred folder)")
    e.add_argument("--overwrite", action="store_true", help="replace an earlier metrics.json / metrics.md there")
    e.add_argument("--metrics", type=_metric_list, default="all", help="comma-separated: psnr, ssim, lpips, clip, "
                   "fvd_f, fvd_v, fvd_diag, fv4d, or all (default: all)")
    g = e.add_argument_group("weights (never downloaded)")
    g.add_argument("--weights", action="append", default=[], help="a folder holding the weight files (repeatable; "
                   "also $SV4D_EVAL_WEIGHTS and ./checkpoints/eval)")
    g.add_argument("--i3d", default=None, help="FVD network: i3d_pretrained_400.pt, rgb_imagenet.pt or "
                   "i3d_torchscript.pt (default: found in the weight folders); 'random': random weights, a smoke "
                   "figure only")
    g.add_argument("--clip", default=None, help="CLIP-S tower: an SV4D/SV3D checkpoint or open_clip_model.safetensors "
                   "(default: found in the weight folders, $SV4D_MODELS, ./checkpoints)")
    g.add_argument("--clip-model", default=None, help="an open_clip model name when --clip is another open_clip "
                                                      "checkpoint (default: the ViT-H-14 tower of the file)")
    g.add_argument("--lpips-net", choices=("alex", "vgg"), default="alex", help="LPIPS backbone")
    g.add_argument("--lpips-backbone", default=None, help="torchvision alexnet-owt-7be5be79.pth / vgg16-397923af.pth "
                   "(default: the weight folders, then $TORCH_HOME/hub/checkpoints)")
    g = e.add_argument_group("scoring")
    g.add_argument("--drop-input-view", action="store_true", help="score views 1.. only (view 0 is the input video)")
    g.add_argument("--device", default="cpu", help="cpu / cuda / cuda:N")
    g.add_argument("--batch", type=int, default=4, help="videos per I3D call (images per LPIPS / CLIP call: 4x)")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_threads(e)


def _version() -> str:
    """``sv4d X (torch Y, python Z)`` from the installed distributions' metadata (torch is not imported)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str, missing: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return missing

    return (f"sv4d {installed('comfyui-sv4d', '0+checkout')} (torch {installed('torch', 'not installed')}, "
            f"python {platform.python_version()})")


def _parse(argv: list[str] | None) -> argparse.Namespace | None:
    """Parsed arguments; None after printing the short help (no command). Unknown options are reported by the
    subcommand's parser (``sv4d demo: error: ...``), not the top-level one."""
    p = parser()
    a, extra = p.parse_known_args(argv)
    if a.cmd is None:
        p.print_help()
        return None
    if extra:
        sub = next(action for action in p._actions if isinstance(action, argparse._SubParsersAction))
        sub.choices[a.cmd].error(f"unrecognized arguments: {' '.join(extra)}")
    return a


def job_settings(a: argparse.Namespace, video: str, out: str):
    """The ``JobSettings`` of parsed ``sv4d run`` / ``sv4d batch`` options for ``video`` into ``out``."""
    from .job import JobSettings

    a = argparse.Namespace(**{"resume": False, "overwrite": False, **vars(a), "video": video, "out": out})
    if a.model == "demo":
        from .demo import DEMO_INPUT, DEMO_REFUSES, demo_settings

        defaults = vars(parser().parse_args(["run", a.video, "--out", a.out]))
        given = {k: v for k, v in vars(a).items() if k not in DEMO_REFUSES or v != defaults[k]}
        settings = demo_settings(out=a.out, video=a.video, fast=a.fast, overrides=given)  # refuses what it cannot do
        if Path(a.video).resolve() != DEMO_INPUT.resolve():
            print(cli_text.DEMO_ON_OTHER_INPUT, file=sys.stderr)
        return settings
    import torch

    gpu = torch.cuda.is_available() and a.device != "cpu"
    preset = a.preset or (FAST_PRESET if a.fast else default_preset(gpu))
    return JobSettings(video=a.video, out=a.out, sv4d=a.sv4d, sv3d=a.sv3d, model_kind=a.model_kind, frames=a.frames,
                       elevation=a.elevation, steps=a.steps, seed=a.seed, device=a.device, dtype=a.dtype,
                       image_size=a.image_size, mode=a.mode, preset=preset,
                       fit_steps=a.fit_steps or (FAST_FIT_STEPS if a.fast else None),
                       turntable_frames=a.turntable_frames, turntable_size=a.turntable_size,
                       mesh_resolution=a.mesh_resolution, mesh_threshold=a.mesh_threshold,
                       mask_threshold=a.mask_threshold, skip_nerf=a.skip_nerf, resume=a.resume, overwrite=a.overwrite)


def _run(a: argparse.Namespace, progress: ConsoleReporter) -> dict:
    from .job import run_job

    return run_job(job_settings(a, a.video, a.out), progress)


def _demo(a: argparse.Namespace, progress: ConsoleReporter) -> dict:
    from .demo import run_demo

    return run_demo(out=a.out, fast=a.fast, resume=a.resume, overwrite=a.overwrite, report=progress)


def _eval(a: argparse.Namespace, progress: ConsoleReporter) -> dict:
    from .metrics.evaluate import EvalSettings, run_evaluation
    from .validate import check_device

    settings = EvalSettings(metrics=a.metrics if isinstance(a.metrics, tuple) else _metric_list(a.metrics),
                            lpips_net=a.lpips_net, lpips_backbone=a.lpips_backbone, clip=a.clip,
                            clip_model=a.clip_model, i3d=a.i3d, weights=tuple(a.weights),
                            drop_input_view=a.drop_input_view, device=check_device(a.device), batch=a.batch)
    return run_evaluation(a.pred, a.gt, a.out or a.pred, settings, progress, overwrite=a.overwrite)


def main(argv: list[str] | None = None) -> int:
    from .threads import apply_threads, quiet_waiting, resolve_threads

    quiet_waiting()  # before torch is first imported in this process (the console script); see sv4d_models.threads
    a = _parse(argv)
    if a is None:
        return 0
    from .environment import torch_pair_problem

    problem = torch_pair_problem()
    if problem:
        print(f"sv4d: error: {problem}", file=sys.stderr)
        return 2
    import torch

    progress = ConsoleReporter(quiet=getattr(a, "quiet", False))
    previous = torch.get_num_threads()  # restored at the end: main() may run inside another program (the tests)
    try:
        threads, source = resolve_threads(a.threads)
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)  # processes on this machine (accelerate / torchrun)
        if source == "physical cores" and local > 1:
            threads, source = max(1, threads // local), f"physical cores / {local} processes"
        apply_threads(threads)
        if not a.quiet:
            print(f"sv4d: {threads} CPU threads ({source}; --threads N or SV4D_THREADS to change)", flush=True)
        if a.cmd == "batch":
            from .batch_cli import batch_command

            return batch_command(a, job_settings)
        manifest = {"demo": _demo, "run": _run, "eval": _eval}[a.cmd](a, progress)
    except (Exception, KeyboardInterrupt) as exc:
        kind = failure_kind(exc)  # the same kinds as each video of sv4d batch
        if kind in ("error", "out_of_memory"):
            raise  # a bug or no memory: the traceback
        progress.close()
        if kind == "failed":
            print(f"sv4d: the job failed: {one_line(exc)}", file=sys.stderr)
        elif kind == "interrupted":
            again = "run the same command again" if a.cmd == "batch" else "run again with --resume"
            print(f"sv4d: interrupted; finished work is kept in {a.out}: {again} to continue", file=sys.stderr)
        else:
            print(f"sv4d: error: {one_line(exc)}", file=sys.stderr)
        return KIND_EXIT_CODES[kind]
    finally:
        torch.set_num_threads(previous)
    progress.close()
    if a.cmd == "eval":
        from .metrics.evaluate import markdown_table

        print(markdown_table(manifest), end="")
        print(f"sv4d: wrote {Path(a.out or a.pred) / 'metrics.json'} and metrics.md ({manifest['seconds']:.1f} s)")
    elif not getattr(a, "quiet", False):
        print(json.dumps({k: manifest[k] for k in ("outputs", "timings_s") if k in manifest}, indent=1))
    return 0


class _DefaultsFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` only where the help text does not already say what the default is; descriptions and
    epilogs (examples, exit codes, the output tree) are printed as written."""

    def _get_help_string(self, action):
        text = action.help or ""
        return text if "default" in text else super()._get_help_string(action)


def entry() -> None:
    """The ``sv4d`` console script."""
    raise SystemExit(main())


__all__ = ["main", "entry", "parser", "OneLineParser", "job_settings", "one_line", "USER_ERRORS"]
