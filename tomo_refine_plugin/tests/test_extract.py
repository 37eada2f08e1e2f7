"""2D extraction: window origins, edge clamping, centred spectra, sub-pixel centring, binning, cropCircle."""
from __future__ import annotations

import numpy as np
import pytest

from tomo_refine_plugin.compute.fourier import rfft_frequencies_2d
from tomo_refine_plugin.compute.fourier.extract import (
    align_observation_rfft_2d,
    c_round,
    centre_crop_2d,
    centred_irfft_2d,
    centred_rfft_2d,
    circle_crop_radius_px,
    circle_mask_rfft_2d,
    crop_circle,
    extract_centred_rfft_2d,
    extract_ctf_premultiplied_rfft_2d,
    extract_windows,
    fourier_crop_rfft_2d,
    phase_shift_rfft_2d,
    stack2d_images,
    window_origins_px,
)


def _gauss_stack(centres, shape=(96, 128), sigma=2.0, n_tilts=None):
    """One Gaussian blob per tilt at ``centres[f] = (u, v)``; ``(n_tilts, H, W)`` float32."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w]
    return np.stack(
        [np.exp(-((x - u) ** 2 + (y - v) ** 2) / (2 * sigma**2)) for u, v in centres]
    ).astype(np.float32)


def _centred_gauss(box, sigma, amplitude=1.0):
    y, x = np.mgrid[0:box, 0:box]
    c = box // 2
    return amplitude * np.exp(-((x - c) ** 2 + (y - c) ** 2) / (2 * sigma**2))


def test_rfft_grid_layout():
    ky, kx = rfft_frequencies_2d(8, 2.0)
    assert ky.shape == (8, 1) and kx.shape == (1, 5)
    np.testing.assert_allclose(ky[:, 0] * 16, [0, 1, 2, 3, -4, -3, -2, -1])
    np.testing.assert_allclose(kx[0] * 16, [0, 1, 2, 3, 4])


def test_c_round_half_away_from_zero():
    np.testing.assert_array_equal(c_round([2.5, -2.5, 1.4999, -1.5, 0.5, -0.49]), [3, -3, 1, -2, 1, 0])
    # origin = round(q) - s//2
    np.testing.assert_array_equal(window_origins_px(np.array([[10.5, 7.49]]), 8), [[7, 3]])


def test_windows_clamp_edges_and_zero_invisible():
    """Pixel values encode their coordinates: 1000·f + 100·y + x (image 20×30)."""
    f, y, x = np.mgrid[0:2, 0:20, 0:30]
    stack = (1000 * f + 100 * y + x).astype(np.float32)
    uv = np.array([[[1.2, 2.6], [28.5, 10.0]], [[15.0, 10.0], [15.0, 10.0]]])
    win, org = extract_windows(stack, uv, 6, visible=np.array([[True, True], [True, False]]))
    assert win.shape == (2, 2, 6, 6) and win.dtype == np.float32
    assert org.shape == (2, 2, 2)
    np.testing.assert_array_equal(org[0, 0], [-2, 0])  # round(1.2) − 3, round(2.6) − 3
    np.testing.assert_array_equal(org[0, 1], [26, 7])  # round(28.5) = 29 (half away from zero)
    # x columns −2, −1, 0 clamp to 0; rows 0..5
    np.testing.assert_array_equal(win[0, 0, 0, :4], [0, 0, 0, 1])
    np.testing.assert_array_equal(win[0, 0, :, 3], 100 * np.arange(6) + 1)
    # x columns 26..31 clamp at 29; tilt 1 offset 1000
    np.testing.assert_array_equal(win[0, 1, 0], 1000 + 700 + np.array([26, 27, 28, 29, 29, 29]))
    # window centre pixel s//2 is the rounded position
    assert win[1, 0, 3, 3] == 100 * 10 + 15
    assert np.all(win[1, 1] == 0)


@pytest.mark.parametrize("u, v", [(40.0, 50.0), (40.3, 50.7), (61.5, 33.25), (62.5, 33.5)])
def test_subpixel_blob_lands_centred(u, v):
    """A Gaussian at (u, v) extracts to a Gaussian centred on pixel box//2 (phase origin) up to 1e-4."""
    stack = _gauss_stack([(u, v)])
    spec = extract_centred_rfft_2d(stack, np.array([[[u, v]]]), 32)
    assert spec.shape == (1, 1, 32, 17) and spec.dtype == np.complex64
    img = centred_irfft_2d(spec)[0, 0]
    np.testing.assert_allclose(img, _centred_gauss(32, 2.0), atol=1e-4)


def test_binning_keeps_mean_and_centre():
    """bin 2: window 64, Fourier-cropped to 32, /bin: a σ=4 px blob becomes σ=2 px (binned px),
    centred at 16, same peak height (the binned image is mean-preserving)."""
    u, v = 60.7, 47.2
    stack = _gauss_stack([(u, v)], sigma=4.0)
    spec = extract_centred_rfft_2d(stack, np.array([[[u, v]]]), 32, bin=2.0)
    assert spec.shape == (1, 1, 32, 17)
    img = centred_irfft_2d(spec)[0, 0]
    np.testing.assert_allclose(img, _centred_gauss(32, 2.0), atol=2e-3)


def test_fourier_crop_rows():
    s = np.arange(8)[:, None] * 10 + np.arange(5)[None, :]
    c = fourier_crop_rfft_2d(s, 4)
    assert c.shape == (4, 3)
    np.testing.assert_array_equal(c[:, 0], [0, 10, 60, 70])  # rows 0, 1, then −2, −1


def test_phase_shift_round_trip_and_direction():
    """Shifting by t moves the point t to the origin: a blob at box//2 + (1.5, −2) comes to box//2."""
    box = 32
    y, x = np.mgrid[0:box, 0:box]
    blob = np.exp(-((x - 16 - 1.5) ** 2 + (y - 16 + 2.0) ** 2) / 8.0).astype(np.float32)
    spec = centred_rfft_2d(blob)
    moved = centred_irfft_2d(phase_shift_rfft_2d(spec, np.array([1.5, -2.0])))
    np.testing.assert_allclose(moved, _centred_gauss(box, 2.0), atol=1e-4)
    back = phase_shift_rfft_2d(phase_shift_rfft_2d(spec, np.array([0.3, 0.7])), np.array([-0.3, -0.7]))
    np.testing.assert_allclose(back, spec, atol=1e-5)


def test_centred_fft_round_trip_is_unitary():
    rng = np.random.default_rng(0)
    img = rng.standard_normal((3, 16, 16)).astype(np.float32)
    spec = centred_rfft_2d(img)
    np.testing.assert_allclose(centred_irfft_2d(spec), img, atol=1e-5)
    # ortho: DC = sum / box
    np.testing.assert_allclose(spec[:, 0, 0].real, img.sum((1, 2)) / 16, rtol=1e-5)


def test_crop_circle_mask_and_outer_mean():
    """Constant images vanish (outer mean subtracted). With R = 12, falloff 5, along row 16:
    m = 1 at r ≤ 7 (r = R − 5 gives 0.5 − 0.5·cos π = 1), m(10) = 0.5 − 0.5·cos(2π/5) = 0.345492, 0 at r ≥ 12.
    A row of ones: μ = mean over r > 12 = 7/583 (x = 0..3 and 29..31 of row 16 among the 1024 − 441 = 583 outer pixels)."""
    const = np.full((2, 32, 32), 3.0, np.float32)
    assert np.all(crop_circle(const, 16.0) == 0)
    row = np.zeros((32, 32), np.float32)
    row[16, :] = 1.0
    out = crop_circle(row, 12.0)
    yy, xx = np.mgrid[0:32, 0:32]
    assert int((np.hypot(xx - 16, yy - 16) > 12).sum()) == 583
    mu = 7.0 / 583.0
    assert out[16, 16] == pytest.approx(1 - mu, abs=1e-6)
    assert out[16, 23] == pytest.approx(1 - mu, abs=1e-6)
    assert out[16, 26] == pytest.approx(0.345492 * (1 - mu), abs=1e-6)
    assert out[16, 28] == 0.0 and out[16, 0] == 0.0
    assert out[0, 16] == 0.0


def test_circle_radius_and_centre_crop():
    assert circle_crop_radius_px(48, 32) == 16
    assert circle_crop_radius_px(48, 48) == 24
    img = np.arange(36).reshape(6, 6)
    np.testing.assert_array_equal(centre_crop_2d(img, 2), [[14, 15], [20, 21]])


def test_premultiplied_and_stack2d_pipeline():
    """ctf_dose = 1, sign −1: the stack2d image without circle crop is minus the centred blob."""
    u, v = 50.3, 40.6
    stack = _gauss_stack([(u, v), (u + 1.2, v - 0.4)])
    uv = np.array([[[u, v], [u + 1.2, v - 0.4]]])
    spec = extract_ctf_premultiplied_rfft_2d(stack, uv, 32, np.ones((32, 17), np.float32))
    assert spec.shape == (1, 2, 32, 17) and spec.dtype == np.complex64
    full = stack2d_images(spec, 32, circle_crop=False)
    np.testing.assert_allclose(full[0], -np.stack([_centred_gauss(32, 2.0)] * 2), atol=1e-4)
    cropped = stack2d_images(spec, 16, circle_crop=True)
    assert cropped.shape == (1, 2, 16, 16) and cropped.dtype == np.float32
    # inside R − 5 = 3 the mask is 1; the outer mean of a σ = 2 blob beyond r = 8 is < 1e-3
    assert cropped[0, 0, 8, 8] == pytest.approx(-1.0, abs=1e-3)
    masked = circle_mask_rfft_2d(spec, 16)
    assert masked.shape == spec.shape
    np.testing.assert_allclose(centre_crop_2d(centred_irfft_2d(masked), 16), cropped, atol=1e-5)


def test_odd_phase_multiplies_by_exp_minus_i_phi():
    u, v = 50.0, 40.0
    stack = _gauss_stack([(u, v)])
    uv = np.array([[[u, v]]])
    phase = np.full((32, 17), 0.4)
    a = extract_ctf_premultiplied_rfft_2d(stack, uv, 32, np.ones((32, 17)), sign=1.0)
    b = extract_ctf_premultiplied_rfft_2d(stack, uv, 32, np.ones((32, 17)), sign=1.0, odd_phase=phase)
    np.testing.assert_allclose(b, a * np.exp(-0.4j), atol=1e-5)


def test_align_observation_dc_zero_and_centred():
    u, v = 60.4, 45.8
    stack = _gauss_stack([(u, v)])
    obs = align_observation_rfft_2d(stack, np.array([[[u, v]]]), 32)
    assert obs.shape == (1, 1, 32, 17) and obs.dtype == np.complex64
    assert obs[0, 0, 0, 0] == 0
    img = centred_irfft_2d(obs)[0, 0]
    ref = _centred_gauss(32, 2.0)
    ref = ref - ref.mean()
    np.testing.assert_allclose(img, ref, atol=2e-4)
    hidden = align_observation_rfft_2d(stack, np.array([[[u, v]]]), 32, visible=np.array([[False]]))
    assert np.all(hidden == 0)


def test_odd_box_blob_lands_centred():
    u, v = 47.3, 52.8
    stack = _gauss_stack([(u, v)])
    img = centred_irfft_2d(extract_centred_rfft_2d(stack, np.array([[[u, v]]]), 31))[0, 0]
    np.testing.assert_allclose(img, _centred_gauss(31, 2.0), atol=1e-4)


def test_extract_windows_rejects_bad_shapes():
    stack = np.zeros((3, 20, 20), np.float32)
    with pytest.raises(ValueError):
        extract_windows(stack, np.zeros((2, 4, 2)), 8)
    with pytest.raises(ValueError):
        extract_windows(stack[0], np.zeros((2, 3, 2)), 8)
    with pytest.raises(ValueError):
        extract_windows(stack, np.zeros((2, 3, 2)), 8, visible=np.ones((3, 2), bool))
