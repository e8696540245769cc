"""The evaluation runner behind ``sv4d eval`` and the SV4D Evaluate node: pairs of image matrices (generated, ground
truth) -> per-image PSNR / SSIM / LPIPS / CLIP-S (mean over every image of every object, plus per object and per
view) and the four FVD paths (one dataset-level Fréchet distance each) -> ``metrics.json`` and ``metrics.md``.

Every weight file is located before anything is computed, so a missing file fails in the first second.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .. import events
from ..events import Reporter
from .paths import PATH_LABELS, PATHS
from .weights import RANDOM_I3D, find_clip, find_i3d, weight_dirs

IMAGE_METRICS = ("psnr", "ssim", "lpips", "clip")
METRICS = IMAGE_METRICS + tuple(PATHS)
LABELS = {"psnr": "PSNR ↑", "ssim": "SSIM ↑", "lpips": "LPIPS ↓", "clip": "CLIP-S ↑",
          **{k: f"{v} ↓" for k, v in PATH_LABELS.items()}}
FORMAT = "sv4d_eval/1"


def parse_metrics(text: str) -> tuple[str, ...]:
    """``all`` or comma-separated metric names (any case, ``-`` for ``_``) -> names of ``METRICS``; ValueError naming
    the unknown ones (``sv4d eval --metrics`` and the SV4D Evaluate node's widget)."""
    names = METRICS if text == "all" else tuple(t.strip().lower().replace("-", "_") for t in text.split(",") if t)
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise ValueError(f"unknown metrics {unknown}; choose from all, {', '.join(METRICS)}")
    return names


@dataclass(frozen=True)
class EvalSettings:
    metrics: tuple[str, ...] = METRICS  # any of METRICS
    lpips_net: str = "alex"  # the lpips package's default for evaluation ("vgg" also available)
    lpips_backbone: str | None = None  # torchvision alexnet/vgg16 .pth; None -> weight folders, torch hub cache
    clip: str | None = None  # .safetensors with a CLIP image tower; None -> weight folders
    clip_model: str | None = None  # an open_clip model name for a non-default CLIP (then ``clip`` is its file)
    i3d: str | None = None  # I3D file, "random" (smoke figure), None -> weight folders
    weights: tuple[str, ...] = ()  # extra weight folders, searched first
    drop_input_view: bool = False  # score views 1.. only (view 0 is the input video in SV4D's layout)
    device: str = "cpu"
    batch: int = 4  # videos per I3D call; images per LPIPS / CLIP call = 4 x batch
    seed: int = 0  # weights of the random I3D

    def __post_init__(self) -> None:
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown or not self.metrics:
            raise ValueError(f"metrics {list(self.metrics)}: unknown {unknown}; choose from {', '.join(METRICS)}")
        if self.batch < 1:
            raise ValueError(f"batch {self.batch} must be at least 1")


@dataclass
class Networks:
    lpips: object = None
    clip: object = None
    i3d: object = None
    sources: dict = field(default_factory=dict)


def load_networks(s: EvalSettings) -> Networks:
    """Locate every weight file first (FileNotFoundError naming the file), then build the networks."""
    from .lpips import build_lpips, find_backbone, heads_file

    want = set(s.metrics)
    nets, src = Networks(), {}
    if "lpips" in want:
        src["lpips"] = f"{find_backbone(s.lpips_net, s.lpips_backbone, weight_dirs(s.weights))} + {heads_file(s.lpips_net)}"
    if "clip" in want:
        src["clip"] = str(find_clip(s.clip, s.weights)) + (f" ({s.clip_model})" if s.clip_model else "")
    if want & set(PATHS):
        src["i3d"] = str(find_i3d(s.i3d, s.weights))
    if "lpips" in want:
        nets.lpips = build_lpips(s.lpips_net, s.lpips_backbone, folders=weight_dirs(s.weights)).to(s.device)
    if "clip" in want:
        from .clip_score import load_clip_embedder

        nets.clip = load_clip_embedder(find_clip(s.clip, s.weights), s.clip_model, s.device)
    if want & set(PATHS):
        nets.i3d = _i3d(src["i3d"], s)
        if src["i3d"] == RANDOM_I3D:
            src["i3d"] = f"random weights (seed {s.seed}): a smoke figure, not comparable with published FVDs"
    nets.sources = src
    return nets


def _i3d(path: str, s: EvalSettings):
    from .i3d import InceptionI3d, load_i3d, random_i3d_state_dict

    if path != RANDOM_I3D:
        return load_i3d(path, s.device)
    model = InceptionI3d()
    model.load_state_dict(random_i3d_state_dict(torch.Generator().manual_seed(s.seed)))
    return model.to(s.device).eval()


@torch.no_grad()
def image_scores(pred: torch.Tensor, gt: torch.Tensor, nets: Networks, s: EvalSettings) -> dict[str, torch.Tensor]:
    """Per-image metrics of one matrix pair ``[F, V, H, W, 3]`` -> ``{metric: [F, V]}``."""
    from .clip_score import clip_score
    from .image import psnr_per_image, ssim

    f, v = pred.shape[:2]
    out = {}
    if "psnr" in s.metrics:
        out["psnr"] = psnr_per_image(pred, gt)
    if "ssim" in s.metrics:
        out["ssim"] = ssim(pred, gt).double()
    a, b, chunk = pred.reshape(f * v, *pred.shape[2:]), gt.reshape(f * v, *gt.shape[2:]), 4 * s.batch
    if "lpips" in s.metrics:
        to = lambda x: x.permute(0, 3, 1, 2).to(s.device)
        out["lpips"] = torch.cat([nets.lpips(to(x), to(y)).double().cpu() for x, y in zip(a.split(chunk),
                                                                                           b.split(chunk))]).view(f, v)
    if "clip" in s.metrics:
        out["clip"] = clip_score(nets.clip, a, b, chunk).view(f, v)
    return out


def summarise_images(per_object: dict[str, dict[str, torch.Tensor]], view_names: list[str]) -> dict:
    """Mean over every image, per object and per view (over all objects)."""
    out = {}
    for metric in next(iter(per_object.values())):
        stacked = torch.stack([scores[metric] for scores in per_object.values()])  # [O, F, V]
        out[metric] = {"value": float(stacked.mean()),
                       "per_object": {o: float(sc[metric].mean()) for o, sc in per_object.items()},
                       "per_view": dict(zip(view_names, [float(x) for x in stacked.mean(dim=(0, 1))]))}
    return out


def evaluate_pairs(pairs: list[tuple[str, torch.Tensor, torch.Tensor]], s: EvalSettings, view_names: list[str],
                   report: Reporter = lambda e: None, nets: Networks | None = None) -> dict:
    """Score ``[(object, pred [F, V, H, W, 3], gt)]`` -> the ``metrics`` part of metrics.json."""
    from .fvd import fvd_scores

    nets = load_networks(s) if nets is None else nets
    fvd_names = [m for m in s.metrics if m in PATHS]
    total, done = len(pairs) * (1 + 2 * len(fvd_names)), 0

    def tick():
        nonlocal done
        done += 1
        report(events.progress("evaluation", done, total, "step"))

    per_object = {}
    for name, pred, gt in pairs:
        per_object[name] = image_scores(pred, gt, nets, s)
        tick()
    out = summarise_images(per_object, view_names) if per_object[pairs[0][0]] else {}
    if fvd_names:
        out.update(fvd_scores(nets.i3d, [p for _, p, _ in pairs], [g for _, _, g in pairs], fvd_names, tick,
                              batch=s.batch, device=s.device))
    return {m: out[m] for m in s.metrics}


def markdown_table(result: dict) -> str:
    """A one-row Markdown table of the headline numbers (FVD null -> the reason below the table)."""
    metrics = result["metrics"]
    head = "| " + " | ".join(LABELS[m] for m in metrics) + " |"
    cells = []
    for m, entry in metrics.items():
        v = entry["value"]
        cells.append("n/a" if v is None else f"{v:.2f}" if m in PATHS or m == "psnr" else f"{v:.4f}")
    lines = [head, "|" + "---|" * len(metrics), "| " + " | ".join(cells) + " |", ""]
    m = result["matrix"]
    lines.append(f"{len(result['objects'])} object(s), {m['frames']} frames x {m['views']} views at "
                 f"{m['height']} x {m['width']} px; weights: " + "; ".join(f"{k}: {v}" for k, v in
                                                                       result["weights"].items()))
    lines += [f"- {LABELS[k]}: {e['note']}" for k, e in metrics.items() if e.get("note")]
    return "\n".join(lines) + "\n"


def load_pairs(pred: str | Path | torch.Tensor, gt: str | Path, drop_input_view: bool = False):
    """``([(object, pred [F, V, H, W, 3], gt)], view names)`` from folders, or from a pred matrix tensor and a gt
    folder; ValueError naming mismatched shapes or missing views."""
    from .matrix_io import check_pair, find_pairs, read_matrix

    if torch.is_tensor(pred):
        g, g_views = read_matrix(gt)
        found = [(Path(gt).name, pred.float(), [f"v{v:03d}" for v in range(pred.shape[1])], g, g_views)]
    else:
        found = [(n, *read_matrix(p), *read_matrix(g)) for n, p, g in find_pairs(pred, gt)]
    pairs, views = [], None
    for name, p, p_views, g, g_views in found:
        check_pair(name, p, g, p_views, g_views)
        if drop_input_view:
            p, g, g_views = p[:, 1:], g[:, 1:], g_views[1:]
        if pairs and p.shape != pairs[0][1].shape:
            raise ValueError(f"{name}: matrix {list(p.shape)} differs from {pairs[0][0]}'s {list(pairs[0][1].shape)};"
                             " every object of a dataset needs the same frames, views and size")
        pairs.append((name, p, g))
        views = g_views
    return pairs, views


OUTPUT_NAMES = ("metrics.json", "metrics.md")


def run_evaluation(pred: str | Path | torch.Tensor, gt: str | Path, out: str | Path | None, s: EvalSettings,
                   report: Reporter = lambda e: None, overwrite: bool = False) -> dict:
    """Read, check, score, write ``out/metrics.json`` and ``out/metrics.md`` (atomic); returns the result dict.
    ``pred`` may also be a matrix tensor ``[F, V, H, W, 3]`` (the ComfyUI node's SV4D_MATRIX). An earlier pair in
    ``out`` is refused (FileExistsError, before any work) unless ``overwrite``."""
    from ..files import atomic_write_json, atomic_write_text, check_writable

    started = time.perf_counter()
    for name in OUTPUT_NAMES if out is not None else ():
        check_writable(Path(out) / name, overwrite)
    nets = load_networks(s)  # missing weights fail before any video is decoded
    pairs, views = load_pairs(pred, gt, s.drop_input_view)
    metrics = evaluate_pairs(pairs, s, views, report, nets)
    f, v, h, w, _ = pairs[0][1].shape
    result = {"format": FORMAT, "pred": "matrix input" if torch.is_tensor(pred) else str(pred), "gt": str(gt),
              "objects": [n for n, _, _ in pairs],
              "matrix": {"frames": f, "views": v, "height": h, "width": w, "view_names": views},
              "settings": asdict(s), "weights": nets.sources, "metrics": metrics,
              "seconds": round(time.perf_counter() - started, 2)}
    if out is not None:
        atomic_write_json(Path(out) / "metrics.json", result, overwrite=overwrite)
        atomic_write_text(Path(out) / "metrics.md", markdown_table(result), overwrite=overwrite)
    return result


__all__ = ["EvalSettings", "METRICS", "parse_metrics", "IMAGE_METRICS", "LABELS", "load_networks", "image_scores",
           "evaluate_pairs", "markdown_table", "run_evaluation", "load_pairs", "Networks"]
