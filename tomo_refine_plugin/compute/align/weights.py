"""Per-tilt frequency weights of the CC maps (relion_align.md §3.1): noise whitening × high-pass ×
reference shell weight, and the per-row frequency limits ("xRanges").

All 2D arrays live on the rfft half grid of the box ``s``: ``(s, s//2+1)`` = (ky, kx), ky in FFT order.
"""
from __future__ import annotations

import numpy as np
import scipy.fft

__all__ = ["noise_power_spectra", "whitening_weights", "highpass_weight", "frequency_limit_mask"]


def _radius_2d(box_px: int) -> np.ndarray:
    ky = np.fft.fftfreq(box_px) * box_px
    kx = np.arange(box_px // 2 + 1)
    return np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)


def noise_power_spectra(stack: np.ndarray, box_px: int, workers: int = 1) -> np.ndarray:
    """Radially averaged periodogram of each tilt (s×s tiles, step s/2, FFT normalised by 1/s, no window).

    Parameters
    ----------
    stack
        float32 ``(n_tilts, H, W)``.

    Returns
    -------
    power
        float64 ``(n_tilts, s//2+1)``, power per integer Fourier radius (linear-interpolation binning).
    """
    n_tilts, h, w = stack.shape
    s = box_px
    step = max(s // 2, 1)
    ys = list(range(0, h - s + 1, step)) or [0]
    xs = list(range(0, w - s + 1, step)) or [0]
    r = _radius_2d(s).ravel()
    n_bins = s // 2 + 1
    r0 = np.floor(r).astype(int)
    fr = r - r0
    keep0 = r0 < n_bins
    keep1 = r0 + 1 < n_bins
    # The rfft half plane counts the interior columns once; weight them twice so the radial mean
    # equals that of the full plane.
    mult = np.full((s, s // 2 + 1), 2.0)
    mult[:, 0] = 1.0
    if s % 2 == 0:
        mult[:, -1] = 1.0
    mult = mult.ravel()
    # The tiles of one tilt as strided views (no copy); one batched FFT per row of tiles keeps the temporaries
    # small (a whole tilt at once was ~25 MB of short-lived arrays, which showed in the peak RSS).
    out = np.zeros((n_tilts, n_bins))
    den = np.bincount(r0[keep0], (mult * (1 - fr))[keep0], n_bins)
    den += np.bincount(r0[keep1] + 1, (mult * fr)[keep1], n_bins)
    acc = np.zeros((s, s // 2 + 1))
    for f in range(n_tilts):
        views = np.lib.stride_tricks.sliding_window_view(stack[f], (s, s))[::step, ::step][: len(ys), : len(xs)]
        acc[:] = 0.0
        for row in views:
            spectra = scipy.fft.rfft2(row, workers=workers)
            acc += (spectra.real ** 2 + spectra.imag ** 2).sum(0)
        ps = acc.ravel() / (len(ys) * len(xs) * s * s)
        num = np.bincount(r0[keep0], (ps * mult * (1 - fr))[keep0], n_bins)
        num += np.bincount(r0[keep1] + 1, (ps * mult * fr)[keep1], n_bins)
        out[f] = num / np.maximum(den, 1e-30)
    return out


def whitening_weights(power: np.ndarray, box_px: int, per_frame: bool = False, srp: float = 0.0) -> np.ndarray:
    """``1/PS`` on the 2D half grid; static noise (default) uses ``1/mean_f PS_f`` for every tilt.

    Returns float64 ``(n_tilts, s, s//2+1)``.
    """
    n_tilts, n_bins = power.shape
    r = _radius_2d(box_px)
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
    r = _radius_2d(box_px)
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
