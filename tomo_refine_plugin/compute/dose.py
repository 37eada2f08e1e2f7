"""Radiation-damage (dose) weights on the 2D FFTW half grid (RELION ``Damage``).

* Grant & Grigorieff (2015), RELION's default: critical exposure ``N_c(k) = 0.245·k^−1.665 + 2.81``
  e⁻/Å² and weight ``exp(−0.5·N/N_c(k))``; ``k = 0`` has weight 1 (``N_c`` is infinite there).
* ``rlnCtfBfactorPerElectronDose = β > 0`` replaces it by ``exp(−β·N·k²/4)``.

``N`` is the cumulative exposure before the tilt (``rlnMicrographPreExposure``, e⁻/Å²) and ``k = r/(box·pix)``
the radial frequency in Å⁻¹.
"""
from __future__ import annotations

import numpy as np

from .fourier import rfft_frequencies_2d

__all__ = ["critical_exposure_e_per_angst2", "dose_weights_rfft_2d"]


def critical_exposure_e_per_angst2(k_inv_angst) -> np.ndarray:
    """Grant–Grigorieff critical exposure ``0.245·k^−1.665 + 2.81`` (e⁻/Å²); ``inf`` at ``k = 0``.

    ``k_inv_angst`` any shape (Å⁻¹); float64 of the same shape.
    """
    k = np.asarray(k_inv_angst, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(k > 0, 0.245 * np.power(np.where(k > 0, k, 1.0), -1.665) + 2.81, np.inf)


def dose_weights_rfft_2d(
    box_px: int, pixel_size_angst: float, pre_exposure_e_per_angst2, bfactor_per_dose_angst2: float = 0.0
) -> np.ndarray:
    """Per-tilt dose weights.

    Parameters
    ----------
    box_px, pixel_size_angst
        Grid (RELION: ``--b`` and tilt-series pixel × bin).
    pre_exposure_e_per_angst2
        ``(n,)`` cumulative exposure of each tilt, e⁻/Å².
    bfactor_per_dose_angst2
        ``β`` (Å² per e⁻/Å²); 0 selects the Grant–Grigorieff model.

    Returns
    -------
    weights
        float32 ``(n, box, box//2+1)`` = (tilt, ky, kx), in ``(0, 1]``.
    """
    dose = np.asarray(pre_exposure_e_per_angst2, dtype=np.float64).ravel()
    ky, kx = rfft_frequencies_2d(box_px, pixel_size_angst)
    k2 = kx * kx + ky * ky
    if bfactor_per_dose_angst2 > 0:
        w = np.exp(-float(bfactor_per_dose_angst2) * dose[:, None, None] * k2[None] / 4.0)
    elif bfactor_per_dose_angst2 < 0:
        raise ValueError(f"B-factor per dose must be >= 0, got {bfactor_per_dose_angst2}")
    else:
        nc = critical_exposure_e_per_angst2(np.sqrt(k2))
        w = np.exp(-0.5 * dose[:, None, None] / nc[None])
    return w.astype(np.float32)
