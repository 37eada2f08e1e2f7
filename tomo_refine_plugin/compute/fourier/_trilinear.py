"""The one trilinear sampler of a Hermitian rfft half-volume, inlined into the kernels that read one.

Both the central-slice extractor and align's fused prediction kernel read the reference spectrum at
``g = Mᵀ·(kx, ky, 0)``; keeping the Hermitian branch, the wrap and the clamp in one place keeps their
conventions from drifting apart.
"""
from __future__ import annotations

import math

from numba import njit


@njit(inline="always", cache=True)
def _wrap(i, n):
    # One conditional wrap covers |g| < n (every caller's common case); the modulo is the general fallback.
    if i < 0:
        i += n
    elif i >= n:
        i -= n
    if i < 0 or i >= n:
        i %= n
    return i


@njit(inline="always", cache=True)
def sample_half_volume_trilinear(volumes, h, gx, gy, gz):
    """Trilinear value of half-volume ``volumes[h]`` at frequency ``(gx, gy, gz)`` (voxels).

    volumes : complex (n, s, s, s//2+1) = (volume, kz, ky, kx), origin at index 0 (y and z wrapped).
    A point with ``gx < 0`` is read at ``−g`` and conjugated (Hermitian symmetry); ``kx`` indices past the
    last stored column are clamped to it. Returns ``(re, im)`` as float64.
    """
    s = volumes.shape[1]
    sx = volumes.shape[3]
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
        zz = _wrap(z0 + dz, s)
        for dy in range(2):
            wy = fy if dy == 1 else 1.0 - fy
            yy = _wrap(y0 + dy, s)
            for dx in range(2):
                wx = fx if dx == 1 else 1.0 - fx
                xx = x0 + dx
                if xx > sx - 1:
                    xx = sx - 1
                wt = wx * wy * wz
                v = volumes[h, zz, yy, xx]
                re += wt * v.real
                im += wt * v.imag
    if conj:
        im = -im
    return re, im
