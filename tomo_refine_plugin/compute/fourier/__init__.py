"""Fourier primitives on FFTW half grids (``(box, box//2+1)`` = (ky, kx), ky in FFT order).

Submodules: :mod:`.extract` (2D windows → centred spectra, circle crop), :mod:`.insert`
(Fourier-slice insertion), :mod:`.slices` (central-slice extraction). This package module holds only
the frequency grid they all share, so importing it stays cheap and cycle-free.
"""
from __future__ import annotations

import numpy as np

__all__ = ["rfft_frequencies_2d"]


def rfft_frequencies_2d(box_px: int, pixel_size_angst: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Spatial frequencies of the 2D FFTW half grid, as RELION's ``CTF::draw`` and ``Damage`` sample it.

    ``kx = x/(box·pix)`` for ``x ∈ [0, box//2]`` and ``ky = (y < box/2 ? y : y − box)/(box·pix)``, so
    the Nyquist row ``y = box/2`` is negative (numpy's ``fftfreq`` convention).

    Parameters
    ----------
    box_px
        Box size (even in every RELION path).
    pixel_size_angst
        Pixel size in Å; with 1 the frequencies are in cycles per pixel.

    Returns
    -------
    ky
        float64 ``(box, 1)``, Å⁻¹.
    kx
        float64 ``(1, box//2+1)``, Å⁻¹.
    """
    box_px = int(box_px)
    y = np.arange(box_px)
    ky = np.where(y < box_px / 2, y, y - box_px) / (box_px * pixel_size_angst)
    kx = np.arange(box_px // 2 + 1) / (box_px * pixel_size_angst)
    return ky[:, None].astype(np.float64), kx[None, :].astype(np.float64)
