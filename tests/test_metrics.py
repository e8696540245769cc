"""sv4d_models.metrics against independent references: scikit-image (PSNR, SSIM), the lpips package's own forward,
closed-form and SciPy Fréchet distances, hand-written path orderings, CLIP-S identities."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sv4d_models.metrics import frechet, paths
from sv4d_models.metrics.image import psnr_per_image, ssim


def _images(seed: int, shape=(3, 24, 20, 3)):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(shape, generator=g, dtype=torch.float64)
    return a, (a + 0.15 * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)


def test_psnr_and_ssim_match_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    a, b = _images(0)
    ours_ssim, ours_psnr = ssim(a, b), psnr_per_image(a, b)
    for i in range(a.shape[0]):
        x, y = a[i].numpy(), b[i].numpy()
        ref = metrics.structural_similarity(x, y, channel_axis=-1, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                            use_sample_covariance=False)
        assert abs(float(ours_ssim[i]) - ref) < 1e-6, (i, float(ours_ssim[i]), ref)
        assert abs(float(ours_psnr[i]) - metrics.peak_signal_noise_ratio(x, y, data_range=1.0)) < 1e-9
    assert float(ssim(a, a).min()) == pytest.approx(1.0) and float(psnr_per_image(a, a)[0]) == 100.0
    assert float(ssim(a, b).mean()) < 0.99  # the comparison above is not trivially between identical images


def test_ssim_refuses_what_it_cannot_score():
    with pytest.raises(ValueError, match="equal shape"):
        ssim(torch.rand(12, 12, 3), torch.rand(12, 13, 3))
    with pytest.raises(ValueError, match="at least 11"):
        ssim(torch.rand(8, 8, 3), torch.rand(8, 8, 3))


def test_lpips_equals_the_lpips_package_forward(tmp_path):
    """Same random backbone, the heads shipped in the lpips wheel: our loader + wrapper == lpips.LPIPS's forward."""
    lpips = pytest.importorskip("lpips")
    from sv4d_models.metrics.lpips import build_lpips, heads_file

    torch.manual_seed(3)
    reference = lpips.LPIPS(pretrained=True, net="alex", pnet_rand=True, verbose=False).eval()
    torch.save({f"features.{k.split('.', 2)[1]}.{k.split('.', 2)[2]}": v
                for k, v in reference.net.state_dict().items()}, tmp_path / "alexnet-owt-7be5be79.pth")
    ours = build_lpips("alex", folders=[tmp_path])
    x, y = (t.permute(0, 3, 1, 2).float() for t in _images(1, (2, 48, 48, 3)))
    with torch.no_grad():
        want = reference(x, y, normalize=True).flatten()
        got = ours(x, y)
    assert torch.allclose(got, want, atol=1e-6) and float(want.min()) > 0
    assert heads_file("alex").is_file()
    torch.manual_seed(4)  # negative control: another backbone gives another distance
    other = lpips.LPIPS(pretrained=True, net="alex", pnet_rand=True, verbose=False).eval()
    with torch.no_grad():
        assert not torch.allclose(other(x, y, normalize=True).flatten(), got, atol=1e-4)


def test_lpips_missing_backbone_names_the_file_and_folder(tmp_path, monkeypatch):
    from sv4d_models.metrics.lpips import build_lpips

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    with pytest.raises(FileNotFoundError, match=r"vgg16-397923af\.pth.*hub/checkpoints"):
        build_lpips("vgg", folders=[tmp_path])


def _spd(rng, d, rank=None):
    a = rng.standard_normal((d, rank or d))
    return a @ a.T / (rank or d) + (0 if rank else 0.1) * np.eye(d)


def test_frechet_distance_closed_form_for_commuting_covariances():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    la, lb = rng.uniform(0.1, 3.0, 6), rng.uniform(0.1, 3.0, 6)
    s1, s2 = q @ np.diag(la) @ q.T, q @ np.diag(lb) @ q.T  # same eigenvectors: (S1 S2)^1/2 = Q diag(sqrt(la lb)) Q^T
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(la) - np.sqrt(lb)) ** 2).sum()
    assert frechet.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-10)
    assert frechet.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)
    # 1-D: the Fréchet distance of N(m1, v1) and N(m2, v2) is (m1 - m2)^2 + (sqrt v1 - sqrt v2)^2
    assert frechet.frechet_distance([1.0], [[4.0]], [-1.0], [[9.0]]) == pytest.approx(4.0 + 1.0)


def test_frechet_distance_matches_scipy_sqrtm_and_survives_rank_deficiency():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(1)
    s1, s2 = _spd(rng, 8), _spd(rng, 8)
    ref = np.trace(scipy_linalg.sqrtm(s1 @ s2)).real
    assert frechet.trace_sqrt_product(s1, s2) == pytest.approx(ref, rel=1e-9)
    # FVD's typical case: fewer videos than feature dimensions -> singular covariances, still finite and >= 0
    f1, f2 = rng.standard_normal((5, 40)), rng.standard_normal((5, 40)) + 0.5
    d = frechet.frechet_distance_of_features(f1, f2)
    assert np.isfinite(d) and d > 0
    assert frechet.frechet_distance_of_features(f1, f1) == pytest.approx(0.0, abs=1e-8)
    with pytest.raises(ValueError, match="at least 2"):
        frechet.gaussian_stats(f1[:1])


def _toy(n_f=3, n_v=4):
    """Cell (f, v) holds the number 10 f + v in every pixel."""
    labels = torch.tensor([[10.0 * f + v for v in range(n_v)] for f in range(n_f)])
    return labels.view(n_f, n_v, 1, 1, 1).expand(n_f, n_v, 2, 2, 3)


def _labels(videos):
    return videos[..., 0, 0, 0].long().tolist()


def test_matrix_paths_put_every_cell_where_fig7_reads_it():
    m = _toy()
    assert _labels(paths.path_videos(m, "fvd_f")) == [[0, 10, 20], [1, 11, 21], [2, 12, 22], [3, 13, 23]]
    assert _labels(paths.path_videos(m, "fvd_v")) == [[0, 1, 2, 3], [10, 11, 12, 13], [20, 21, 22, 23]]
    assert _labels(paths.path_videos(m, "fvd_diag")) == [[0, 11, 22], [1, 12, 23], [2, 13, 20], [3, 10, 21]]
    assert _labels(paths.path_videos(m, "fv4d")) == [[0, 1, 2, 3, 13, 12, 11, 10, 20, 21, 22, 23]]


def test_every_path_covers_the_matrix_and_fv4d_steps_between_neighbours():
    n_f, n_v = 21, 9
    for name in paths.PATHS:
        cells = [c for video in paths.path_cells(name, n_f, n_v) for c in video]
        assert sorted(cells) == [(f, v) for f in range(n_f) for v in range(n_v)], name  # every cell exactly once
    scan = paths.path_cells("fv4d", n_f, n_v)[0]
    assert all(abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1 for a, b in zip(scan, scan[1:]))
    with pytest.raises(ValueError, match="unknown FVD path"):
        paths.path_cells("fvd_x", 2, 2)


def test_clip_score_is_one_for_identical_images_and_symmetric(tmp_path):
    pytest.importorskip("open_clip")
    from safetensors.torch import save_file

    from sv4d_models.encoders.tiny import tiny_clip_state_dict
    from sv4d_models.metrics.clip_score import clip_score, load_clip_embedder

    for prefix in ("conditioner.embedders.0.open_clip.model.", ""):  # an SV4D checkpoint / open_clip's own file
        path = tmp_path / f"clip{len(prefix)}.safetensors"
        save_file(tiny_clip_state_dict(torch.Generator().manual_seed(0), prefix=prefix, image_size=28), str(path))
        embed = load_clip_embedder(path)
        a, b = (t.float() for t in _images(2, (3, 32, 32, 3)))
        same, ab, ba = clip_score(embed, a, a), clip_score(embed, a, b), clip_score(embed, b, a)
        assert torch.allclose(same, torch.ones(3, dtype=same.dtype), atol=1e-6)
        assert torch.allclose(ab, ba, atol=1e-9) and float(ab.max()) < 1 - 1e-4
    with pytest.raises(FileNotFoundError, match="sv4d.safetensors"):
        load_clip_embedder(tmp_path / "absent.safetensors")
