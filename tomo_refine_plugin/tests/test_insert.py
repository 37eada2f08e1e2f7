"""Fourier-slice insertion (RELION backprojectSlice_forward_with_multiplicity) and 3D assembly."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.fft

from tomo_refine_plugin.compute.conventions import euler_zyz_to_matrix, rotation_x
from tomo_refine_plugin.compute.fourier.insert import (
    checkerboard_3d,
    dose_x_ranges,
    full_x_ranges,
    half_grid_to_full_centred,
    half_grid_to_real_centred,
    insert_slices_rfft_3d,
    real_centred_to_half_grid,
    slice_rows,
)


def _circle_mask(s):
    y = np.arange(s)
    ky = np.where(y < s // 2, y, y - s)[:, None]
    kx = np.arange(s // 2 + 1)[None, :]
    return kx**2 + ky**2 <= s * s / 4


def _random_slice(rng, s, n=1, frames=1):
    img = rng.standard_normal((n, frames, s, s)).astype(np.float32)
    return scipy.fft.rfft2(img, norm="ortho").astype(np.complex64)


def test_identity_slice_lands_on_central_plane():
    rng = np.random.default_rng(0)
    s = 16
    slc = _random_slice(rng, s)
    w = np.full(slc.shape, 0.5, np.float32)
    rows = slice_rows(np.eye(3)[None], np.eye(3)[None], 1.0)
    data, ctf, mult = insert_slices_rfft_3d(slc, w, rows, np.ones((1, 1), bool), full_x_ranges(1, s), s, 1.0)
    assert data.shape == (1, s, s, s // 2 + 1) and data.dtype == np.complex128
    assert ctf.shape == mult.shape == data.shape
    mask = _circle_mask(s)
    expected = np.where(mask, slc[0, 0], 0)
    # negative-ky rows skip kx=0; their kx=0 entries come from the Hermitian mirror of the +ky row
    y = np.arange(s)
    ky = np.where(y < s // 2, y, y - s)
    for yi in range(s):
        if ky[yi] < 0:
            mirror = (-ky[yi]) % s
            expected[yi, 0] = np.conj(slc[0, 0, mirror, 0]) if mask[mirror, 0] and ky[yi] > -s // 2 else 0
    expected[0, 0] = 2 * slc[0, 0, 0, 0].real  # the origin receives both copies
    np.testing.assert_allclose(data[0, 0], expected, atol=1e-6)
    assert np.abs(data[0, 1:]).max() == 0
    m_expected = np.where(expected != 0, 1.0, 0.0)
    m_expected[0, 0] = 2.0
    np.testing.assert_allclose(mult[0, 0], m_expected)
    np.testing.assert_allclose(ctf[0, 0], 0.5 * m_expected)


def test_rotated_slice_lands_on_rotated_plane():
    # Rx(−90°) sends the 2D ky axis to the 3D z axis: the slice must fill the ky=0 plane (kz, kx)
    rng = np.random.default_rng(1)
    s = 12
    slc = _random_slice(rng, s)
    rot = rotation_x(-90.0)[None]
    rows = slice_rows(rot, np.eye(3)[None], 1.0)
    np.testing.assert_allclose(rows[0, 0], [[1, 0, 0], [0, 0, 1]], atol=1e-12)
    data, _, mult = insert_slices_rfft_3d(
        slc, np.ones(slc.shape, np.float32), rows, np.ones((1, 1), bool), full_x_ranges(1, s), s, 1.0
    )
    np.testing.assert_allclose(data[0, 1:s // 2, 0, 1:], np.where(_circle_mask(s), slc[0, 0], 0)[1:s // 2, 1:],
                               atol=1e-5)
    other = np.ones(s, bool)
    other[0] = False
    assert np.abs(data[0][:, other]).max() < 1e-5
    assert mult[0, :, 0].sum() > 0 and mult[0][:, other].sum() < 1e-9


def test_kx0_plane_is_hermitian_for_any_rotation():
    rng = np.random.default_rng(2)
    s = 16
    frames = 5
    slc = _random_slice(rng, s, frames=frames)
    rot = euler_zyz_to_matrix(*rng.uniform(-180, 180, (3, frames)))
    box = euler_zyz_to_matrix(30.0, 50.0, -20.0)[None]
    rows = slice_rows(rot, box, 1.0)
    data, ctf, mult = insert_slices_rfft_3d(
        slc, np.abs(slc.real), rows, np.ones((1, frames), bool), full_x_ranges(frames, s), s, 1.0
    )
    plane = data[0, :, :, 0]
    idx = (-np.arange(s)) % s
    np.testing.assert_allclose(plane, np.conj(plane[idx][:, idx]), atol=1e-5)
    np.testing.assert_allclose(mult[0, :, :, 0], mult[0, idx][:, idx, 0], atol=1e-9)
    # the real-space volume of a Hermitian grid must be real: irfftn then rfftn gives it back
    back = scipy.fft.rfftn(scipy.fft.irfftn(data[0], s=(s, s, s), norm="ortho"), norm="ortho")
    np.testing.assert_allclose(back[:, :, 1:s // 2], data[0][:, :, 1:s // 2], atol=1e-5)


def test_scale_and_coarse_sampling_with_rbs_half():
    # rbs = 0.5: 2D sample kx=2 lands on 3D voxel kx=1 with weight rbs² = 0.25
    s2, s3 = 16, 8
    slc = np.zeros((1, 1, s2, s2 // 2 + 1), np.complex64)
    slc[0, 0, 0, 2] = 1 + 2j
    w = np.zeros(slc.shape, np.float32)
    w[0, 0, 0, 2] = 3.0
    rows = slice_rows(np.eye(3)[None], np.eye(3)[None], s3 / s2)
    data, ctf, mult = insert_slices_rfft_3d(slc, w, rows, np.ones((1, 1), bool), full_x_ranges(1, s2), s3, 0.25)
    assert data[0, 0, 0, 1] == pytest.approx(0.25 * (1 + 2j))
    assert ctf[0, 0, 0, 1] == pytest.approx(0.75)
    assert np.count_nonzero(data) == 1 and np.count_nonzero(ctf) == 1
    # 2D samples on odd k land half-way between 3D voxels: the 3×3 2D neighbourhood of (4, 0) gives
    # weights (½,1,½)⊗(½,1,½), total 4, times rbs²
    assert mult[0, 0, 0, 2] == pytest.approx(0.25 * 4.0)


def test_invisible_frames_and_dose_cutoff_are_skipped():
    rng = np.random.default_rng(3)
    s = 16
    slc = _random_slice(rng, s, frames=2)
    rows = slice_rows(np.stack([np.eye(3), np.eye(3)]), np.eye(3)[None], 1.0)
    vis = np.array([[True, False]])
    d1, _, m1 = insert_slices_rfft_3d(slc, np.ones(slc.shape, np.float32), rows, vis, full_x_ranges(2, s), s, 1.0)
    d2, _, m2 = insert_slices_rfft_3d(slc[:, :1], np.ones(slc[:, :1].shape, np.float32), rows[:, :1],
                                      np.ones((1, 1), bool), full_x_ranges(1, s), s, 1.0)
    np.testing.assert_array_equal(d1, d2)
    # dose weights: 1 inside radius 3, 0 outside → only |k| ≤ 3 samples inserted
    y = np.arange(s)
    ky = np.where(y < s // 2, y, y - s)[:, None]
    kx = np.arange(s // 2 + 1)[None]
    dose = np.where(kx**2 + ky**2 <= 9, 1.0, 0.0).astype(np.float32)[None]
    xr = dose_x_ranges(dose, 0.01)
    assert xr.shape == (1, s) and xr[0, 0] == 4 and xr[0, 3] == 1 and xr[0, 4] == 0
    _, _, m3 = insert_slices_rfft_3d(slc[:, :1], np.ones(slc[:, :1].shape, np.float32), rows[:, :1],
                                     np.ones((1, 1), bool), xr, s, 1.0)
    assert m3[0, 0, 4:s - 4].sum() == 0 and m3[0, 0, :, 4:].sum() == 0


def test_shared_accumulators_equal_sum_of_separate_ones():
    rng = np.random.default_rng(4)
    s, n, frames = 12, 5, 3
    slc = _random_slice(rng, s, n=n, frames=frames)
    rot = euler_zyz_to_matrix(*rng.uniform(-90, 90, (3, frames)))
    box = euler_zyz_to_matrix(*rng.uniform(-90, 90, (3, n)))
    rows = slice_rows(rot, box, 1.0)
    w = np.ones(slc.shape, np.float32)
    vis = np.ones((n, frames), bool)
    sep = insert_slices_rfft_3d(slc, w, rows, vis, full_x_ranges(frames, s), s, 1.0)
    tot = insert_slices_rfft_3d(slc, w, rows, vis, full_x_ranges(frames, s), s, 1.0, target=np.array([0, 1, 0, 1, 1]))
    np.testing.assert_allclose(tot[0][0], sep[0][[0, 2]].sum(0), atol=1e-9)
    np.testing.assert_allclose(tot[2][1], sep[2][[1, 3, 4]].sum(0), atol=1e-9)


def test_insert_then_extract_recovers_smooth_slice():
    # Many slices of the same smooth 3D spectrum: data/mult sampled back at a slice ≈ that slice
    s = 24
    rng = np.random.default_rng(5)
    frames = 40
    rot = euler_zyz_to_matrix(*rng.uniform(-180, 180, (3, frames)))
    rows = slice_rows(rot, np.eye(3)[None], 1.0)

    def spectrum(p):  # smooth Hermitian function: Gaussian times a phase ramp (real-space shift)
        return np.exp(-(p**2).sum(-1) / 30.0) * np.exp(-2j * np.pi * p @ np.array([0.5, -1.0, 0.25]) / s)

    y = np.arange(s)
    ky = np.where(y < s // 2, y, y - s)[:, None, None]
    kx = np.arange(s // 2 + 1)[None, :, None]
    pts = kx * rows[0][:, None, None, 0, :] + ky * rows[0][:, None, None, 1, :]  # (F, s, sh, 3)
    slc = spectrum(pts).astype(np.complex64)[None]
    data, _, mult = insert_slices_rfft_3d(slc, np.ones(slc.shape, np.float32), rows, np.ones((1, frames), bool),
                                          full_x_ranges(frames, s), s, 1.0)
    good = mult[0] > 1.0
    z = np.arange(s)
    kz3 = np.where(z < s // 2, z, z - s)[:, None, None]
    ky3 = kz3.reshape(1, s, 1)
    kx3 = np.arange(s // 2 + 1)[None, None, :]
    grid = np.stack(np.broadcast_arrays(kx3, ky3, kz3), -1).astype(float)
    truth = spectrum(grid)
    est = data[0] / np.maximum(mult[0], 1e-9)
    low = good & ((grid**2).sum(-1) < 36)
    # normalised trilinear splatting smooths by about one voxel: the error is O(|f''|) ≈ 1/15 here
    err = np.abs(est[low] - truth[low])
    assert err.max() < 0.07 and err.mean() < 0.02, (err.max(), err.mean())


def test_checkerboard_centres_the_real_space_origin():
    s = 8
    vol = np.zeros((s, s, s), np.float32)
    vol[s // 2, s // 2, s // 2] = 1.0
    half = real_centred_to_half_grid(vol)
    assert half.shape == (s, s, s // 2 + 1)
    np.testing.assert_allclose(half, np.full(half.shape, s**-1.5), atol=1e-7)
    back = half_grid_to_real_centred(half, s)
    assert back.dtype == np.float32 and back.shape == (s, s, s)
    np.testing.assert_allclose(back, vol, atol=1e-6)
    assert checkerboard_3d(4)[1, 0, 0] == -1 and checkerboard_3d(4)[1, 1, 0] == 1


def test_half_grid_to_full_centred_puts_dc_at_centre():
    s = 6
    rng = np.random.default_rng(6)
    vol = rng.standard_normal((s, s, s))
    full_fft = np.abs(np.fft.fftn(vol)) ** 2
    half = full_fft[:, :, : s // 2 + 1]
    full = half_grid_to_full_centred(half)
    np.testing.assert_allclose(full, np.fft.fftshift(full_fft), rtol=1e-10)
