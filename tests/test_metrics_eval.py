"""FVD's I3D against the reference implementation's fixture, FVD on identical / different sets, and ``sv4d eval``
(CLI and the SV4D Evaluate node) end to end, including its refusals."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from sv4d_models.metrics.fvd import fvd_scores
from sv4d_models.metrics.i3d import InceptionI3d, i3d_input, load_i3d, random_i3d_state_dict

FIXTURE = Path(__file__).parent / "data" / "i3d_reference.json"


def _random_i3d(seed: int = 0) -> InceptionI3d:
    model = InceptionI3d().eval()
    model.load_state_dict(random_i3d_state_dict(torch.Generator().manual_seed(seed)))
    return model


def test_i3d_has_the_reference_layout_and_computes_the_reference_function():
    """tests/data/i3d_reference.json was made by running piergiaj/pytorch-i3d (scripts/make_i3d_fixture.py)."""
    ref = json.loads(FIXTURE.read_text())
    with torch.device("meta"):
        ours = {k: list(v.shape) for k, v in InceptionI3d().state_dict().items()}
    assert ours == ref["keys"] and len(ours) == 344
    videos = torch.rand(2, ref["frames"], 224, 224, 3, generator=torch.Generator().manual_seed(ref["input_seed"]))
    with torch.no_grad():
        got = _random_i3d(ref["weight_seed"])(i3d_input(videos))
    want = torch.tensor(ref["logits_time_mean"])
    assert got.shape == (2, 400) and torch.allclose(got, want, atol=1e-4, rtol=1e-4)
    with torch.no_grad():  # negative control: other weights, other features
        assert not torch.allclose(_random_i3d(ref["weight_seed"] + 1)(i3d_input(videos)), want, atol=1e-2)


def test_i3d_state_dict_files_load_strictly_and_foreign_files_are_refused(tmp_path):
    torch.save(random_i3d_state_dict(torch.Generator().manual_seed(0)), tmp_path / "i3d_pretrained_400.pt")
    model = load_i3d(tmp_path / "i3d_pretrained_400.pt")
    assert torch.equal(model.logits.conv3d.bias, _random_i3d(0).logits.conv3d.bias)
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an I3D"):
        load_i3d(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="i3d_pretrained_400.pt"):
        load_i3d(tmp_path / "absent.pt")


def test_fvd_is_zero_for_identical_sets_and_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    objects = [torch.rand(9, 3, 16, 16, 3, generator=g) for _ in range(2)]
    shifted = [(m * 0.5 + 0.4).clamp(0, 1) for m in objects]
    i3d = _random_i3d()
    same = fvd_scores(i3d, objects, objects, size=32)
    other = fvd_scores(i3d, objects, shifted, size=32)
    assert {k: e["videos"] for k, e in same.items()} == {"fvd_f": 6, "fvd_v": 18, "fvd_diag": 6, "fv4d": 2}
    assert {k: e["frames"] for k, e in same.items()} == {"fvd_f": 9, "fvd_v": 3, "fvd_diag": 9, "fv4d": 27}
    for name in same:
        assert same[name]["value"] == pytest.approx(0.0, abs=1e-6), name
        assert other[name]["value"] > 1.0, name
    single = fvd_scores(i3d, objects[:1], objects[:1], ["fv4d"], size=32)["fv4d"]
    assert single["value"] is None and "at least 2" in single["note"]


def _write_cells(folder: Path, matrix: torch.Tensor) -> Path:
    folder.mkdir(parents=True)
    for f in range(matrix.shape[0]):
        for v in range(matrix.shape[1]):
            Image.fromarray((matrix[f, v].numpy() * 255).round().astype("uint8")).save(folder / f"f{f:03d}_v{v:02d}.png")
    return folder


@pytest.fixture(scope="module")
def matrices(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    g = torch.Generator().manual_seed(1)
    gt = torch.rand(9, 3, 16, 16, 3, generator=g)
    pred = (gt + 0.1 * torch.randn(gt.shape, generator=g)).clamp(0, 1)
    return {"root": root, "gt": _write_cells(root / "gt", gt), "pred": _write_cells(root / "pred", pred),
            "short": _write_cells(root / "short", pred[:, :2]), "small": _write_cells(root / "small", pred[:, :, :12, :12])}


def test_sv4d_eval_writes_metrics_json_and_markdown(matrices, capsys):
    from sv4d_models.cli import main

    out = matrices["root"] / "out"
    rc = main(["eval", "--pred", str(matrices["pred"]), "--gt", str(matrices["gt"]), "--out", str(out), "--metrics",
               "psnr,ssim,fvd_f,fvd_diag", "--i3d", "random", "--quiet", "--threads", "1"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    result = json.loads((out / "metrics.json").read_text())
    assert result["matrix"] == {"frames": 9, "views": 3, "height": 16, "width": 16, "view_names": ["v00", "v01", "v02"]}
    assert set(result["metrics"]) == {"psnr", "ssim", "fvd_f", "fvd_diag"}  # (the json file sorts keys)
    assert 15 < result["metrics"]["psnr"]["value"] < 30 and set(result["metrics"]["ssim"]["per_view"]) == {"v00", "v01", "v02"}
    assert result["metrics"]["fvd_f"]["value"] > 0 and "smoke figure" in result["weights"]["i3d"]
    table = (out / "metrics.md").read_text()
    assert table.startswith("| PSNR ↑ | SSIM ↑ | FVD-F ↓ | FVD-Diag ↓ |") and table.splitlines()[0] in printed


@pytest.mark.parametrize("case, args, message", [
    ("missing views", ["--pred", "{short}", "--gt", "{gt}", "--metrics", "psnr"], r"pred lacks views \['v02'\]"),
    ("mismatched size", ["--pred", "{small}", "--gt", "{gt}", "--metrics", "ssim"], r"\[9, 3, 12, 12, 3\] but ground truth \[9, 3, 16, 16, 3\]"),
    ("missing folder", ["--pred", "{root}/absent", "--gt", "{gt}", "--metrics", "psnr"], "is not a folder"),
    ("missing i3d", ["--pred", "{pred}", "--gt", "{gt}", "--metrics", "fvd_f", "--weights", "{root}"],
     r"i3d_pretrained_400\.pt.*put it in .*eval"),
    ("missing clip", ["--pred", "{pred}", "--gt", "{gt}", "--metrics", "clip", "--clip", "{root}/none.safetensors"],
     r"none\.safetensors do not exist"),
    ("unknown metric", ["--pred", "{pred}", "--gt", "{gt}", "--metrics", "fid"], r"unknown metrics \['fid'\]"),
])
def test_sv4d_eval_refuses_bad_input_in_one_line(matrices, capsys, case, args, message):
    import re

    from sv4d_models.cli import main

    try:
        rc = main(["eval", *[a.format(**{k: str(v) for k, v in matrices.items()}) for a in args], "--quiet",
                   "--threads", "1"])
    except SystemExit as exc:  # argparse's own refusals (an unknown metric name)
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2 and re.search(message, err) and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_evaluate_node_scores_a_matrix_input(matrices, tmp_path):
    from comfyui_env import comfy_in_process, pack_module

    comfy_in_process()
    node = {c.define_schema().node_id: c for c in pack_module("nodes").load_node_classes()}["SV4D_EvaluateMatrix"]
    assert node.validate_inputs(gt_dir="", metrics="psnr") == "gt_dir is empty: give the ground-truth folder"
    assert "unknown metrics ['fid']" in node.validate_inputs(gt_dir="x", metrics="psnr,fid")
    from sv4d_models.metrics.matrix_io import read_matrix

    pred, _ = read_matrix(matrices["pred"])
    matrix = type("M", (), {"images": pred})()
    import folder_paths

    saved = folder_paths.get_output_directory()
    folder_paths.set_output_directory(str(tmp_path))
    try:
        runs = [node.execute(gt_dir=str(matrices["gt"]), metrics="psnr,ssim", lpips_net="alex",
                             drop_input_view=True, batch=1, matrix=matrix) for _ in range(2)]
    finally:
        folder_paths.set_output_directory(saved)
    table, data = runs[0].result
    assert table.startswith("| PSNR ↑ | SSIM ↑ |") and json.loads(data)["matrix"]["views"] == 2
    written = sorted((tmp_path / "sv4d_eval").iterdir())  # a new numbered folder each run, never an overwrite
    assert [p.name for p in written] == ["metrics_00001_", "metrics_00002_"]
    assert json.loads((written[0] / "metrics.json").read_text()) == json.loads(data)
    assert (written[1] / "metrics.md").read_text().startswith("| PSNR")


def test_sv4d_eval_never_replaces_earlier_metrics_without_overwrite(matrices, capsys):
    from sv4d_models.cli import main

    out = matrices["root"] / "again"
    args = ["eval", "--pred", str(matrices["pred"]), "--gt", str(matrices["gt"]), "--out", str(out), "--metrics",
            "psnr", "--quiet", "--threads", "1"]
    assert main(args) == 0
    first = (out / "metrics.json").read_bytes()
    (out / "metrics.md").write_text("kept")
    capsys.readouterr()
    assert main(args) == 2  # refused before scoring: both files as they were
    err = capsys.readouterr().err
    assert "metrics.json already exists" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1, err
    assert (out / "metrics.json").read_bytes() == first and (out / "metrics.md").read_text() == "kept"
    assert main([*args, "--overwrite"]) == 0 and (out / "metrics.md").read_text().startswith("| PSNR")
