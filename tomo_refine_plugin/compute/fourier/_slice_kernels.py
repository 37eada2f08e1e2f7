"""Numba kernels for central-slice extraction from a 3D rfft half-volume (see :mod:`.slices`)."""
from __future__ import annotations

from numba import njit, prange

from ._trilinear import sample_half_volume_trilinear


@njit(cache=True, parallel=True)
def extract_slices_kernel(volume, matrices, max_radius_sq, out):
    """Trilinear Fourier-slice sampling.

    volume : complex64 (s, s, s//2+1), (kz, ky, kx), origin at index 0 (wrapped).
    matrices : float64 (n, 3, 3); slice coefficient (kx, ky) samples the volume at ``M^T (kx, ky, 0)``.
    max_radius_sq : float; 2D coefficients with kx²+ky² > this are set to 0.
    out : complex64 (n, b, b//2+1), written in place.
    """
    n = matrices.shape[0]
    volumes = volume.reshape((1,) + volume.shape)
    b = out.shape[1]
    bx = out.shape[2]
    for i in prange(n):
        m = matrices[i]
        for iy in range(b):
            ky = iy if iy < (b + 1) // 2 else iy - b
            for ix in range(bx):
                kx = ix
                if kx * kx + ky * ky > max_radius_sq:
                    out[i, iy, ix] = 0.0
                    continue
                gx = m[0, 0] * kx + m[1, 0] * ky
                gy = m[0, 1] * kx + m[1, 1] * ky
                gz = m[0, 2] * kx + m[1, 2] * ky
                re, im = sample_half_volume_trilinear(volumes, 0, gx, gy, gz)
                out[i, iy, ix] = complex(re, im)
