"""Numba kernels of the subtomo per-tilt chain: fused element-wise passes over ``(n, F, s, s//2+1)`` spectra
(one parallel pass instead of several single-threaded numpy temporaries)."""
from __future__ import annotations

from numba import njit, prange


@njit(cache=True, parallel=True)
def separable_phase_kernel(spectra, row_factor, col_factor):
    """In place ``spectra[i, f, y, x] *= row_factor[i, f, y] · col_factor[i, f, x]``.

    complex64 ``spectra (n, F, s, sh)``, ``row_factor (n, F, s)``, ``col_factor (n, F, sh)``.
    """
    n, n_frames, s, sh = spectra.shape
    for r in prange(n * n_frames):
        i = r // n_frames
        f = r % n_frames
        for y in range(s):
            ry = row_factor[i, f, y]
            for x in range(sh):
                spectra[i, f, y, x] *= ry * col_factor[i, f, x]


@njit(cache=True, parallel=True)
def ctf_dose_sign_kernel(spectra, ctf, dose, sign, weights):
    """In place ``spectra *= sign·ctf·dose``; ``weights = (ctf·dose)²``.

    complex64 ``spectra (n, F, s, sh)``; float32 ``ctf (n, F, s, sh)``, ``dose (F, s, sh)``,
    ``weights (n, F, s, sh)`` (written).
    """
    n, n_frames, s, sh = spectra.shape
    for r in prange(n * n_frames):
        i = r // n_frames
        f = r % n_frames
        for y in range(s):
            for x in range(sh):
                c = ctf[i, f, y, x] * dose[f, y, x]
                spectra[i, f, y, x] *= sign * c
                weights[i, f, y, x] = c * c


@njit(cache=True)
def gather_band_windows_kernel(band, band_y0, image_h, origins, visible, frame, out):
    """Frame ``frame`` of ``out``: windows cut from a row band of the tilt image, edge-clamped.

    ``out[i, frame, y, x] = image[clamp(oy + y, 0, H−1), clamp(ox + x, 0, W−1)]`` where
    ``image[band_y0 + r] = band[r]``; the band must hold every clamped row of the visible windows.
    Invisible windows are zero-filled.

    float32 ``band (rows, W)``; int64 ``origins (n, F, 2)`` = (ox, oy); bool ``visible (n, F)``;
    float32 ``out (n, F, s, s)``, written at ``frame`` only.
    """
    n = out.shape[0]
    s = out.shape[2]
    w = band.shape[1]
    for i in range(n):
        if not visible[i, frame]:
            for y in range(s):
                for x in range(s):
                    out[i, frame, y, x] = 0.0
            continue
        ox = origins[i, frame, 0]
        oy = origins[i, frame, 1]
        for y in range(s):
            r = min(max(oy + y, 0), image_h - 1) - band_y0
            if ox >= 0 and ox + s <= w:
                for x in range(s):
                    out[i, frame, y, x] = band[r, ox + x]
            else:
                for x in range(s):
                    out[i, frame, y, x] = band[r, min(max(ox + x, 0), w - 1)]
