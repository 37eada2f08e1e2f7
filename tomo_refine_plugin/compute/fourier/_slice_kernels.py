"""Numba kernels for central-slice extraction from a 3D rfft half-volume (see :mod:`.slices`)."""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def extract_slices_kernel(volume, matrices, max_radius_sq, out):
    """Trilinear Fourier-slice sampling.

    volume : complex64 (s, s, s//2+1), (kz, ky, kx), origin at index 0 (wrapped).
    matrices : float64 (n, 3, 3); slice coefficient (kx, ky) samples the volume at ``M^T (kx, ky, 0)``.
    max_radius_sq : float; 2D coefficients with kx²+ky² > this are set to 0.
    out : complex64 (n, b, b//2+1), written in place.
    """
    n = matrices.shape[0]
    s = volume.shape[0]
    sx = volume.shape[2]
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
                conj = False
                if gx < 0.0:
                    gx = -gx
                    gy = -gy
                    gz = -gz
                    conj = True
                x0 = int(math.floor(gx))
                y0 = int(math.floor(gy))
                z0 = int(math.floor(gz))
                fx = gx - x0
                fy = gy - y0
                fz = gz - z0
                re = 0.0
                im = 0.0
                for dz in range(2):
                    wz = fz if dz == 1 else 1.0 - fz
                    zz = (z0 + dz) % s
                    for dy in range(2):
                        wy = fy if dy == 1 else 1.0 - fy
                        yy = (y0 + dy) % s
                        for dx in range(2):
                            wx = fx if dx == 1 else 1.0 - fx
                            xx = x0 + dx
                            if xx > sx - 1:
                                xx = sx - 1
                            w = wx * wy * wz
                            v = volume[zz, yy, xx]
                            re += w * v.real
                            im += w * v.imag
                if conj:
                    im = -im
                out[i, iy, ix] = complex(re, im)
