"""Per-tilt frequency weights of the CC maps (relion_align.md §3.1): noise whitening × high-pass ×
reference shell weight, and the per-row frequency limits ("xRanges").

All 2D arrays live on the rfft half grid of the box ``s``: ``(s, s//2+1)`` = (ky, kx), ky in FFT order.
"""
from __future__ import annotations

import numpy as np

from ..power_spectrum import noise_power_spectra, radius_rfft_2d

__all__ = ["noise_power_spectra", "whitening_weights", "highpass_weight", "frequency_limit_mask"]


def whitening_weights(power: np.ndarray, box_px: int, per_frame: bool = False, srp: float = 0.0) -> np.ndarray:
    """``1/PS`` on the 2D half grid; static noise (default) uses ``1/mean_f PS_f`` for every tilt.

    Returns float64 ``(n_tilts, s, s//2+1)``.
    """
    n_tilts, n_bins = power.shape
    r = radius_rfft_2d(box_px)
    if not per_frame:
        power = np.repeat(power.mean(0, keepdims=True), n_tilts, 0)
    radial = 1.0 / np.maximum(power, 1e-30)
    if srp != 0:
        sh = box_px // 2 + 1
        radial = radial * (np.arange(n_bins) / sh) ** srp
    grid = np.arange(n_bins)
    return np.stack([np.interp(r, grid, radial[f]) for f in range(n_tilts)])


def highpass_weight(box_px: int, sigma_px: float) -> np.ndarray:
    """``1 − exp(−|k|²/(2σ²))`` (``--hp``), ones if ``sigma_px <= 0``; float64 ``(s, s//2+1)``."""
    r = radius_rfft_2d(box_px)
    if sigma_px <= 0:
        return np.ones_like(r)
    return 1.0 - np.exp(-(r * r) / (2.0 * sigma_px * sigma_px))


def frequency_limit_mask(weights: np.ndarray, dose: np.ndarray, cutoff_fract: float) -> np.ndarray:
    """RELION's xRanges as a mask: per tilt and row keep ``x < 1 + max{x ≤ min(sh−1, √(s²/4−y²)) :
    w/mean(w) > cutoff and D > cutoff}``.

    Parameters
    ----------
    weights, dose
        ``(n_tilts, s, s//2+1)`` frequency weights and dose weights.

    Returns
    -------
    mask
        bool ``(n_tilts, s, s//2+1)``.
    """
    n_tilts, s, sh = weights.shape
    ky = np.fft.fftfreq(s) * s
    kx = np.arange(sh)
    geom = (kx[None, :] <= np.minimum(sh - 1, np.sqrt(np.maximum(s * s / 4.0 - ky[:, None] ** 2, 0.0))))
    mean = weights.reshape(n_tilts, -1).mean(1)[:, None, None]
    ok = (weights / np.maximum(mean, 1e-30) > cutoff_fract) & (dose > cutoff_fract) & geom[None]
    # Last x that passes, per (tilt, row); -1 when none.
    last = np.where(ok.any(2), sh - 1 - np.argmax(ok[:, :, ::-1], axis=2), -1)
    return kx[None, None, :] < (last + 1)[:, :, None]
