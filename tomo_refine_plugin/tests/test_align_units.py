"""Align building blocks with hand-derived numbers: shell cutoff, envelope, frequency limits, searches."""
import numpy as np
import pytest

from tomo_refine_plugin.compute.align.optimise import global_shift_search, particle_offset_search
from tomo_refine_plugin.compute.align.reference import (PreparedReference, fsc_last_shell, pad_to_box,
                                                        shell_weight_2d, taper_and_presharpen)
from tomo_refine_plugin.compute.align.weights import frequency_limit_mask, whitening_weights
from tomo_refine_plugin.compute.conventions import rotation_y
from tomo_refine_plugin.compute.errors import InputError


def test_fsc_last_shell_and_snr_weight():
    # 25 FSC shells for box 48: scale 2·24/48 = 1 shell per Fourier px; FSC < 0.143 from index 10 on.
    fsc = np.r_[np.ones(6), 0.8, 0.6, 0.4, 0.2, 0.1, np.zeros(14)]
    last, snr = fsc_last_shell(np.arange(25), fsc, 48)
    assert last == 9.0
    assert snr[6] == pytest.approx(2 * 0.8 / 1.8)
    assert snr[12] == 0.0
    # Box 96 against the same curve: scale 0.5, so the last shell doubles.
    assert fsc_last_shell(np.arange(25), fsc, 96)[0] == 18.0


def test_shell_weight_envelope():
    ref = PreparedReference(halves=np.zeros((2, 32, 32, 17), np.complex64), box_px=32, last_shell_px=8.0,
                            snr_weight=np.ones(17))
    w = shell_weight_2d(ref, width_px=4.0)
    assert w[0, 8] == 1.0 and w[8, 0] == 1.0           # r = 8: still flat
    assert w[0, 10] == pytest.approx(0.5)               # half-way down the cosine flank
    assert w[0, 12] == 0.0 and w[0, 16] == 0.0          # beyond last + width


def test_taper_removes_weighted_mean_and_zeroes_outside():
    vol = np.full((32, 32, 32), 3.0)
    out = taper_and_presharpen(vol)
    assert np.abs(out).max() < 1e-12                    # a constant is all mean
    with pytest.raises(InputError, match="larger than --b"):
        pad_to_box(vol, 24)
    padded = pad_to_box(np.ones((4, 4, 4)), 8)
    assert padded[2:6, 2:6, 2:6].sum() == 64 and padded.sum() == 64  # centre voxel 2 -> 4


def test_whitening_static_is_inverse_mean_power():
    power = np.array([[1.0] * 9, [3.0] * 9])
    w = whitening_weights(power, 16)
    np.testing.assert_allclose(w, 0.5)
    w = whitening_weights(power, 16, per_frame=True)
    np.testing.assert_allclose(w[0], 1.0)
    np.testing.assert_allclose(w[1], 1 / 3)


def test_frequency_limit_mask_is_a_prefix_per_row():
    s = 16
    weights = np.ones((1, s, s // 2 + 1))
    weights[0, :, 5] = 0.0            # a hole does not cut the row: RELION keeps x up to the LAST good x
    dose = np.ones_like(weights)
    dose[0, :, 7:] = 0.001            # dose kills x >= 7
    m = frequency_limit_mask(weights, dose, 0.02)[0]
    assert m[0].tolist() == [True] * 7 + [False] * 2
    # Row y = 7: x ≤ √(64 − 49) = 3.87, so x < 4.
    assert m[7].tolist() == [True] * 4 + [False] * 5


def test_global_shift_search_subpixel():
    n, c = 64, 32
    yy, xx = np.mgrid[0:n, 0:n] - c
    sums = np.exp(-((xx - 7.3) ** 2 + (yy + 11.6) ** 2) / 4.0)[None]
    got = global_shift_search(sums, 20.0)[0]
    np.testing.assert_allclose(got, (7.3, -11.6), atol=0.1)
    assert np.hypot(*global_shift_search(sums, 5.0)[0]) <= 5.5  # the peak is outside: search stays in the disc


def test_particle_offset_search_recovers_3d_offset():
    r, n_f = 6, 9
    diam = 2 * r + 6
    proj = np.tile(np.eye(4), (n_f, 1, 1))
    proj[:, :3, :3] = rotation_y(np.linspace(-60, 60, n_f))
    true = np.array([2.0, -3.0, 4.0])
    yy, xx = np.mgrid[0:diam, 0:diam] - (r + 3)
    maps = np.zeros((2, n_f, diam, diam))
    for f in range(n_f):
        d = proj[f, :2, :3] @ true
        maps[0, f] = np.exp(-((xx - d[0]) ** 2 + (yy - d[1]) ** 2) / 2.0)
    visible = np.ones((2, n_f), bool)
    visible[1, 2:] = False            # particle 1: seen twice only -> kept at 0
    maps[1] = maps[0]
    got = particle_offset_search(maps, visible, proj, np.zeros((n_f, 2)), np.ones(n_f, bool), r)
    np.testing.assert_allclose(got[0], true)
    np.testing.assert_allclose(got[1], 0.0)
