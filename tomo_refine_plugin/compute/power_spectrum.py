"""Noise power spectra of tilt images: the periodogram both align (CC whitening) and subtomo
(``--whiten``) weight by, kept here so that neither program imports the other.
"""
from __future__ import annotations

import numpy as np
import scipy.fft

from .fourier.shells import radius_rfft_2d, rfft_multiplicity_2d
from .frames import as_frames

__all__ = ["noise_power_spectra", "radius_rfft_2d"]


def noise_power_spectra(stack, box_px: int, workers: int = 1) -> np.ndarray:
    """Radially averaged periodogram of each tilt (s×s tiles, step s/2, FFT normalised by 1/s, no window).

    Parameters
    ----------
    stack
        float32 ``(n_tilts, H, W)``, or a frame source (:mod:`.frames`), read one frame at a time.

    Returns
    -------
    power
        float64 ``(n_tilts, s//2+1)``, power per integer Fourier radius (linear-interpolation binning).
    """
    frames = as_frames(stack)
    n_tilts, h, w = frames.shape
    s = box_px
    step = max(s // 2, 1)
    ys = list(range(0, h - s + 1, step)) or [0]
    xs = list(range(0, w - s + 1, step)) or [0]
    r = radius_rfft_2d(s).ravel()
    n_bins = s // 2 + 1
    r0 = np.floor(r).astype(int)
    fr = r - r0
    keep0 = r0 < n_bins
    keep1 = r0 + 1 < n_bins
    # The rfft half plane counts the interior columns once; weight them twice so the radial mean
    # equals that of the full plane.
    mult = rfft_multiplicity_2d(s, s).ravel()
    # The tiles of one tilt as strided views (no copy); one batched FFT per row of tiles keeps the temporaries
    # small (a whole tilt at once was ~25 MB of short-lived arrays, which showed in the peak RSS).
    out = np.zeros((n_tilts, n_bins))
    den = np.bincount(r0[keep0], (mult * (1 - fr))[keep0], n_bins)
    den += np.bincount(r0[keep1] + 1, (mult * fr)[keep1], n_bins)
    acc = np.zeros((s, s // 2 + 1))
    image = np.empty((h, w), np.float32)
    for f in range(n_tilts):
        frame = frames.read_frame(f, out=image)
        views = np.lib.stride_tricks.sliding_window_view(frame, (s, s))[::step, ::step][: len(ys), : len(xs)]
        acc[:] = 0.0
        for row in views:
            spectra = scipy.fft.rfft2(row, workers=workers)
            acc += (spectra.real ** 2 + spectra.imag ** 2).sum(0)
        ps = acc.ravel() / (len(ys) * len(xs) * s * s)
        num = np.bincount(r0[keep0], (ps * mult * (1 - fr))[keep0], n_bins)
        num += np.bincount(r0[keep1] + 1, (ps * mult * fr)[keep1], n_bins)
        out[f] = num / np.maximum(den, 1e-30)
    return out
