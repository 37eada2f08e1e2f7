"""Fourier radii on the FFTW half grids, and the Fourier shell correlation built on them.

Every radial average in the engine (noise spectra, reference SNR, Wiener floors, FSC) bins by these
radii, so the frequency order (numpy's ``fftfreq``: the Nyquist row of an even box is negative) is
decided here once.
"""
from __future__ import annotations

import numpy as np
import scipy.fft

__all__ = ["radius_rfft_2d", "radius_rfft_3d", "rfft_multiplicity_2d", "fourier_shell_correlation"]


def radius_rfft_2d(box_px: int) -> np.ndarray:
    """Radius in Fourier px of each 2D half-grid coefficient, float64 ``(s, s//2+1)`` = (ky, kx)."""
    ky = np.fft.fftfreq(box_px) * box_px
    kx = np.arange(box_px // 2 + 1)
    return np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)


def rfft_multiplicity_2d(height: int, width: int) -> np.ndarray:
    """How often each coefficient of an ``H × W`` image's rfft half plane stands in the full plane: 2 for the
    interior columns (their Hermitian twins are not stored), 1 for column 0 and, for even ``W``, the Nyquist
    column. Weighting by it makes half-plane shell means equal full-plane ones. float64 ``(H, W//2+1)``."""
    mult = np.full((height, width // 2 + 1), 2.0)
    mult[:, 0] = 1.0
    if width % 2 == 0:
        mult[:, -1] = 1.0
    return mult


def radius_rfft_3d(box_px: int) -> np.ndarray:
    """Radius in Fourier px of each 3D half-grid coefficient, float64 ``(s, s, s//2+1)`` = (kz, ky, kx)."""
    k = np.fft.fftfreq(box_px) * box_px
    kx = np.arange(box_px // 2 + 1)
    return np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + kx[None, None, :] ** 2)


def fourier_shell_correlation(map1, map2) -> np.ndarray:
    """Unmasked FSC of two real ``(s, s, s)`` maps over integer shells ``0 … s/2``, float64 ``(s//2+1,)``.

    Shells are the rounded :func:`radius_rfft_3d`; the ``kx > 0`` half-space is counted twice so each
    shell sums over the full sphere. An empty or zero shell gives 0.
    """
    box = map1.shape[0]
    f1 = scipy.fft.rfftn(np.asarray(map1, np.float64))
    f2 = scipy.fft.rfftn(np.asarray(map2, np.float64))
    shell = np.round(radius_rfft_3d(box)).astype(np.int64)
    wx = np.where(np.arange(box // 2 + 1) == 0, 1.0, 2.0)[None, None, :]
    if box % 2 == 0:
        wx[..., -1] = 1.0
    n = box // 2 + 1
    inside = shell < n
    num = np.bincount(shell[inside], weights=(wx * (f1 * np.conj(f2)).real)[inside], minlength=n)
    d1 = np.bincount(shell[inside], weights=(wx * np.abs(f1) ** 2)[inside], minlength=n)
    d2 = np.bincount(shell[inside], weights=(wx * np.abs(f2) ** 2)[inside], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        fsc = num / np.sqrt(d1 * d2)
    return np.nan_to_num(fsc, nan=0.0)
