"""Numba kernels for Fourier-slice insertion (trilinear splatting into a 3D rfft half grid).

Scalar loops over contiguous arrays writing into preallocated outputs; the wrapper in
:mod:`.insert` validates, casts and batches.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True)
def _splat_one(val_re, val_im, wt, px, py, pz, scale, s3, sh3, acc):
    """Splat one 2D sample at 3D frequency ``(px, py, pz)`` (Fourier voxels) into ``acc``.

    ``acc`` is float64 ``(s3, s3, sh3, 4)`` = (kz, ky, kx, [re, im, ctf, mult]), FFT order in kz, ky; the
    four sums of a voxel share a cache line, which is what makes the scattered updates cheap. Samples with
    ``px < 0`` are reflected to their Friedel mate; the ``kx = 0`` plane gets the Hermitian copy too.
    """
    if px < 0.0:
        px = -px
        py = -py
        pz = -pz
        val_im = -val_im
    x0 = int(np.floor(px))
    y0 = int(np.floor(py))
    z0 = int(np.floor(pz))
    fx = px - x0
    fy = py - y0
    fz = pz - z0
    half = s3 // 2
    for dz in range(2):
        gz = z0 + dz
        if gz < -half or gz >= half:
            continue
        wz = scale * (fz if dz == 1 else 1.0 - fz)
        iz = gz + s3 if gz < 0 else gz
        for dy in range(2):
            gy = y0 + dy
            if gy < -half or gy >= half:
                continue
            wzy = wz * (fy if dy == 1 else 1.0 - fy)
            iy = gy + s3 if gy < 0 else gy
            for dx in range(2):
                gx = x0 + dx
                if gx >= sh3:
                    continue
                m = wzy * (fx if dx == 1 else 1.0 - fx)
                acc[iz, iy, gx, 0] += m * val_re
                acc[iz, iy, gx, 1] += m * val_im
                acc[iz, iy, gx, 2] += m * wt
                acc[iz, iy, gx, 3] += m
                if gx == 0:
                    # Hermitian completion of the kx = 0 plane (RELION adds the mirror; the origin gets both)
                    jz = (-gz) % s3
                    jy = (-gy) % s3
                    acc[jz, jy, 0, 0] += m * val_re
                    acc[jz, jy, 0, 1] -= m * val_im
                    acc[jz, jy, 0, 2] += m * wt
                    acc[jz, jy, 0, 3] += m


@njit(cache=True, parallel=True)
def insert_slices_kernel(slices, weights, rows, visible, x_ranges, target, scale, acc):
    """Insert 2D half-grid slices into 3D half-grid accumulators.

    Parameters
    ----------
    slices
        complex64 ``(n, F, s2, sh2)`` = (particle, frame, ky, kx), FFT order in ky.
    weights
        float32 ``(n, F, s2, sh2)``, accumulated into the ctf channel.
    rows
        float64 ``(n, F, 2, 3)``: the 3D frequency (x, y, z, in 3D Fourier voxels) of one 2D Fourier
        pixel along kx (row 0) and along ky (row 1).
    visible
        uint8 ``(n, F)``; frames with 0 are skipped.
    x_ranges
        int32 ``(F, s2)``: exclusive upper bound of kx per (frame, ky row).
    target
        int64 ``(n,)``: accumulator index of each particle. Particles sharing an accumulator are
        inserted sequentially (in particle order), so the result is deterministic.
    scale
        Multiplier of every splat weight (RELION: ``|u|·|v| = rbs²``).
    acc
        float64 ``(n_acc, s3, s3, sh3, 4)``: [data.real, data.imag, ctf, mult], accumulated in place.
    """
    n = slices.shape[0]
    n_frames = slices.shape[1]
    s2 = slices.shape[2]
    n_acc = acc.shape[0]
    s3 = acc.shape[1]
    sh3 = acc.shape[3]
    for a in prange(n_acc):
        for i in range(n):
            if target[i] != a:
                continue
            grid = acc[a]
            for f in range(n_frames):
                if visible[i, f] == 0:
                    continue
                ux = rows[i, f, 0, 0]
                uy = rows[i, f, 0, 1]
                uz = rows[i, f, 0, 2]
                vx = rows[i, f, 1, 0]
                vy = rows[i, f, 1, 1]
                vz = rows[i, f, 1, 2]
                for y in range(s2):
                    ky = y if y < s2 // 2 else y - s2
                    x_start = 0 if y < s2 // 2 else 1
                    x_stop = x_ranges[f, y]
                    for x in range(x_start, x_stop):
                        v = slices[i, f, y, x]
                        px = x * ux + ky * vx
                        py = x * uy + ky * vy
                        pz = x * uz + ky * vz
                        _splat_one(v.real, v.imag, weights[i, f, y, x], px, py, pz, scale, s3, sh3, grid)


@njit(cache=True)
def dose_x_ranges_kernel(dose, cutoff, out):
    """RELION's ``findDoseXRanges``: per (frame, ky row), 1 + the last kx inside the inscribed circle
    whose dose weight exceeds ``cutoff`` (0 if none).

    ``dose`` float32 ``(F, s2, sh2)``; ``out`` int32 ``(F, s2)``.
    """
    n_frames, s2, sh2 = dose.shape
    r2 = s2 * s2 / 4.0
    for f in range(n_frames):
        for y in range(s2):
            ky = y if y < s2 // 2 else y - s2
            last = -1
            for x in range(sh2):
                if x * x + ky * ky > r2:
                    break
                if dose[f, y, x] > cutoff:
                    last = x
            out[f, y] = last + 1


@njit(cache=True)
def _sample_bilinear(slices, weights, i, f, qx, qy, s2, sh2):
    """Bilinear sample of half-grid slice ``(i, f)`` at 2D frequency ``(qx, qy)`` (Fourier px), using the
    Friedel mate for ``qx < 0``. Neighbours beyond kx = s2/2 contribute nothing. Returns (re, im, wt)."""
    conj = 1.0
    if qx < 0.0:
        qx = -qx
        qy = -qy
        conj = -1.0
    x0 = int(np.floor(qx))
    y0 = int(np.floor(qy))
    fx = qx - x0
    fy = qy - y0
    re = 0.0
    im = 0.0
    wt = 0.0
    for dy in range(2):
        wy = fy if dy == 1 else 1.0 - fy
        yy = (y0 + dy) % s2
        for dx in range(2):
            xx = x0 + dx
            if xx >= sh2:
                continue
            wx = fx if dx == 1 else 1.0 - fx
            m = wx * wy
            v = slices[i, f, yy, xx]
            re += m * v.real
            im += m * v.imag
            wt += m * weights[i, f, yy, xx]
    return re, conj * im, wt


@njit(cache=True, parallel=True)
def gather_slices_kernel(slices, weights, rows, normals, visible, target, data, ctf, mult):
    """Backward (gather) Fourier backprojection: every 3D voxel closer than one voxel to a slice plane
    takes the bilinearly interpolated slice value, weighted by ``1 − |distance|``.

    Parameters
    ----------
    slices, weights
        complex64 / float32 ``(n, F, s2, sh2)``.
    rows
        float64 ``(n, F, 2, 3)``: the in-plane axes (3D coordinates of a unit 2D step), orthonormal.
    normals
        float64 ``(n, F, 3)``: unit normal of each slice plane.
    visible
        uint8 ``(n, F)``.
    target
        int64 ``(n,)`` accumulator per particle.
    data, ctf, mult
        complex128 / float64 / float64 ``(n_acc, s3, s3, sh3)``, accumulated in place; voxels with
        ``|k| ≥ s3/2`` are left alone.
    """
    n = slices.shape[0]
    n_frames = slices.shape[1]
    s2 = slices.shape[2]
    sh2 = slices.shape[3]
    n_acc = data.shape[0]
    s3 = data.shape[1]
    sh3 = data.shape[3]
    r_max2 = (s3 // 2) * (s3 // 2)
    for a in prange(n_acc):
        for i in range(n):
            if target[i] != a:
                continue
            for f in range(n_frames):
                if visible[i, f] == 0:
                    continue
                for z in range(s3):
                    kz = z if z < s3 // 2 else z - s3
                    for y in range(s3):
                        ky = y if y < s3 // 2 else y - s3
                        for x in range(sh3):
                            if x * x + ky * ky + kz * kz >= r_max2:
                                continue
                            dist = x * normals[i, f, 0] + ky * normals[i, f, 1] + kz * normals[i, f, 2]
                            if dist <= -1.0 or dist >= 1.0:
                                continue
                            wz = 1.0 - abs(dist)
                            qx = x * rows[i, f, 0, 0] + ky * rows[i, f, 0, 1] + kz * rows[i, f, 0, 2]
                            qy = x * rows[i, f, 1, 0] + ky * rows[i, f, 1, 1] + kz * rows[i, f, 1, 2]
                            re, im, wt = _sample_bilinear(slices, weights, i, f, qx, qy, s2, sh2)
                            data[a, z, y, x] += complex(wz * re, wz * im)
                            ctf[a, z, y, x] += wz * wt
                            mult[a, z, y, x] += wz
