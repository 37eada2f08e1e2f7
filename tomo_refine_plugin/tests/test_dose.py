"""Dose weights: Grant–Grigorieff critical exposure and the B-factor-per-dose model, with hand numbers."""
from __future__ import annotations

import numpy as np
import pytest

from tomo_refine_plugin.compute.dose import critical_exposure_e_per_angst2, dose_weights_rfft_2d


def test_critical_exposure_by_hand():
    """N_c(0.1) = 0.245·0.1^−1.665 + 2.81 = 0.245·46.2381 + 2.81 = 14.13834 e⁻/Å²; infinite at k = 0."""
    assert critical_exposure_e_per_angst2(0.1) == pytest.approx(14.138335, rel=1e-6)
    assert np.isinf(critical_exposure_e_per_angst2(0.0))


def test_grant_grigorieff_weight_by_hand():
    """Box 100, 1 Å/px, x = 10 → k = 0.1 Å⁻¹; dose 20: w = exp(−0.5·20/14.138335) = 0.492975."""
    w = dose_weights_rfft_2d(100, 1.0, np.array([0.0, 20.0]))
    assert w.shape == (2, 100, 51) and w.dtype == np.float32
    assert np.all(w[0] == 1.0)
    assert w[1, 0, 0] == 1.0
    assert w[1, 0, 10] == pytest.approx(0.492975, abs=1e-6)
    # radial: (x, y) = (6, 8) and (0, −10) have the same |k| = 0.1
    assert w[1, 8, 6] == pytest.approx(0.492975, abs=1e-6)
    assert w[1, 100 - 10, 0] == pytest.approx(0.492975, abs=1e-6)


def test_bfactor_per_dose_by_hand():
    """β = 100 Å², dose 20, k = 0.1: w = exp(−100·20·0.01/4) = exp(−5) = 0.006738."""
    w = dose_weights_rfft_2d(100, 1.0, np.array([20.0]), bfactor_per_dose_angst2=100.0)
    assert w[0, 0, 10] == pytest.approx(np.exp(-5.0), rel=1e-6)
    assert w[0, 0, 0] == 1.0


def test_weights_fall_with_dose_and_frequency():
    w = dose_weights_rfft_2d(32, 4.0, np.array([3.0, 30.0, 90.0]))
    assert np.all(np.diff(w[:, 0, 1:], axis=0) < 0)
    assert np.all(np.diff(w[2, 0, :], axis=0) < 0)


def test_negative_bfactor_rejected():
    with pytest.raises(ValueError):
        dose_weights_rfft_2d(8, 1.0, np.array([1.0]), bfactor_per_dose_angst2=-1.0)
