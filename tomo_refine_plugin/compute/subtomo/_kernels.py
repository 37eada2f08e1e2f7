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
