"""Numba kernels for 2D extraction: window gathering with edge clamping, sub-pixel phase shifts.

Scalar loops over contiguous arrays writing into preallocated outputs; :mod:`.extract` validates,
casts and batches.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def gather_windows_kernel(stack, tilt_of_row, origins, visible, out):
    """``out[r, y, x] = stack[tilt_of_row[r], clamp(oy + y), clamp(ox + x)]`` (0 where not visible).

    Parameters
    ----------
    stack
        float32 ``(n_tilts, H, W)``.
    tilt_of_row
        int64 ``(n_rows,)``.
    origins
        int64 ``(n_rows, 2)`` = (ox, oy), window corner in image px.
    visible
        bool ``(n_rows,)``; invisible rows are zero-filled.
    out
        float32 ``(n_rows, s, s)``, written.
    """
    n_rows, s, _ = out.shape
    h = stack.shape[1]
    w = stack.shape[2]
    for r in prange(n_rows):
        if not visible[r]:
            for y in range(s):
                for x in range(s):
                    out[r, y, x] = 0.0
            continue
        f = tilt_of_row[r]
        ox = origins[r, 0]
        oy = origins[r, 1]
        for y in range(s):
            yy = min(max(oy + y, 0), h - 1)
            for x in range(s):
                xx = min(max(ox + x, 0), w - 1)
                out[r, y, x] = stack[f, yy, xx]


@njit(cache=True, parallel=True)
def phase_shift_kernel(spectra, shifts_px, box_px):
    """In place ``X(k) ← X(k)·exp(+2πi(kx·tx + ky·ty)/box)`` on half grids; ky signed (FFT order).

    Parameters
    ----------
    spectra
        complex64 ``(n_rows, box, box//2+1)``, modified.
    shifts_px
        float64 ``(n_rows, 2)`` = (tx, ty) in px of this box.
    """
    n_rows, s, half = spectra.shape
    for r in prange(n_rows):
        tx = shifts_px[r, 0]
        ty = shifts_px[r, 1]
        for y in range(s):
            ky = y if y < (s + 1) // 2 else y - s
            for x in range(half):
                a = 2.0 * np.pi * (x * tx + ky * ty) / box_px
                c = np.cos(a)
                si = np.sin(a)
                v = spectra[r, y, x]
                re = v.real * c - v.imag * si
                im = v.real * si + v.imag * c
                spectra[r, y, x] = complex(re, im)


@njit(cache=True, parallel=True)
def crop_circle_kernel(images, mask, outer, out):
    """``out[r] = mask·(images[r] − μ_r)``, ``μ_r`` = mean of ``images[r]`` where ``outer`` (0 if none).

    Parameters
    ----------
    images
        float32 ``(n_rows, s, s)``.
    mask
        float64 ``(s, s)`` soft circular mask.
    outer
        bool ``(s, s)``, the pixels the mean is taken over.
    out
        float32 ``(n_rows, s, s)``, written (may be ``images``).
    """
    n_rows, h, w = images.shape
    n_outer = 0
    for y in range(h):
        for x in range(w):
            if outer[y, x]:
                n_outer += 1
    for r in prange(n_rows):
        acc = 0.0
        if n_outer > 0:
            for y in range(h):
                for x in range(w):
                    if outer[y, x]:
                        acc += images[r, y, x]
            acc /= n_outer
        for y in range(h):
            for x in range(w):
                out[r, y, x] = mask[y, x] * (images[r, y, x] - acc)
