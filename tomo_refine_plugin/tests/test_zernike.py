"""RELION's Zernike index maps and polynomials, with hand-derived values."""
from __future__ import annotations

import numpy as np
import pytest

from tomo_refine_plugin.compute.zernike import (
    even_index_to_mn,
    odd_index_to_mn,
    zernike_cartesian,
    zernike_even_phase_rfft_2d,
    zernike_odd_phase_rfft_2d,
    zernike_radial,
)


def test_even_index_map():
    """k = ⌊√i⌋, m = 2(i − k² − k), n = 2k: i = 4 → k = 2, m = 2(4 − 4 − 2) = −4, n = 4."""
    expected = [(0, 0), (-2, 2), (0, 2), (2, 2), (-4, 4), (-2, 4), (0, 4), (2, 4), (4, 4), (-6, 6)]
    assert [even_index_to_mn(i) for i in range(10)] == expected


def test_odd_index_map():
    """k = ⌊(√(1+4i) − 1)/2⌋, n = 2k+1, m = 2(i − k² − k) − n: i = 6 → k = 2, n = 5, m = 2·0 − 5 = −5."""
    expected = [(-1, 1), (1, 1), (-3, 3), (-1, 3), (1, 3), (3, 3), (-5, 5), (-3, 5), (-1, 5), (1, 5), (3, 5), (5, 5)]
    assert [odd_index_to_mn(i) for i in range(12)] == expected
    # i = 12 starts n = 7 exactly where √(1+4i) = 7 is an integer (no float rounding trap)
    assert odd_index_to_mn(12) == (-7, 7)
    with pytest.raises(ValueError):
        even_index_to_mn(-1)


def test_radial_polynomials_by_hand():
    """ρ = 0.5: R_2^0 = 2ρ²−1 = −0.5; R_4^0 = 6ρ⁴−6ρ²+1 = −0.125; R_3^1 = 3ρ³−2ρ = −0.625; R_2^2 = ρ² = 0.25."""
    assert zernike_radial(2, 0, 0.5) == pytest.approx(-0.5)
    assert zernike_radial(4, 0, 0.5) == pytest.approx(-0.125)
    assert zernike_radial(3, 1, 0.5) == pytest.approx(-0.625)
    assert zernike_radial(3, -1, 0.5) == pytest.approx(-0.625)
    assert zernike_radial(2, 2, 0.5) == pytest.approx(0.25)
    assert zernike_radial(3, 0, 0.5) == 0.0


def test_cartesian_by_hand():
    """(kx, ky) = (0.3, 0.4): Z_1^1 = kx, Z_1^−1 = ky, Z_2^2 = kx² − ky² = −0.07, Z_2^−2 = 2·kx·ky = 0.24,
    Z_3^−3 = ρ³ sin 3φ = 3kx²ky − ky³ = 0.108 − 0.064 = 0.044."""
    assert zernike_cartesian(1, 1, 0.3, 0.4) == pytest.approx(0.3)
    assert zernike_cartesian(-1, 1, 0.3, 0.4) == pytest.approx(0.4)
    assert zernike_cartesian(2, 2, 0.3, 0.4) == pytest.approx(-0.07)
    assert zernike_cartesian(-2, 2, 0.3, 0.4) == pytest.approx(0.24)
    assert zernike_cartesian(-3, 3, 0.3, 0.4) == pytest.approx(0.044)


def test_phase_grids():
    """Odd coefficient 1 (Z_1^1 = kx) gives c·x/(box·pix); even coefficient 2 (Z_2^0) gives c·(2k² − 1)."""
    odd = zernike_odd_phase_rfft_2d(16, 2.0, [0.0, 3.0])
    assert odd.shape == (16, 9) and odd.dtype == np.float64
    np.testing.assert_allclose(odd[5], 3.0 * np.arange(9) / 32.0, atol=1e-15)
    even = zernike_even_phase_rfft_2d(16, 2.0, [0.0, 0.0, 0.5])
    assert even[3, 4] == pytest.approx(0.5 * (2 * (9 + 16) / 32.0**2 - 1))
    assert np.all(zernike_even_phase_rfft_2d(16, 2.0, []) == 0)


def test_parity_symmetry_on_kx0_column():
    """Even phases are symmetric under k → −k, odd ones antisymmetric (rows y and box − y of column x = 0)."""
    rng = np.random.default_rng(1)
    even = zernike_even_phase_rfft_2d(16, 1.5, rng.standard_normal(9))
    odd = zernike_odd_phase_rfft_2d(16, 1.5, rng.standard_normal(12))
    y = np.arange(1, 8)
    np.testing.assert_allclose(even[y, 0], even[16 - y, 0], atol=1e-12)
    np.testing.assert_allclose(odd[y, 0], -odd[16 - y, 0], atol=1e-12)
