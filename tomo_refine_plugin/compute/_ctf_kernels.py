"""Numba kernel evaluating many RELION CTFs on the FFTW half grid.

Scalar loops over contiguous arrays writing into a preallocated output; :mod:`.ctf` validates,
casts and batches. float64 inside, float32 out (RELION computes in double and stores float).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(inline="always", cache=True)
def relion_ctf_gamma(kx, ky, cos_angle, sin_angle, defocus_u, defocus_v, k1, k2, k3, phase_shift_rad):
    """RELION's CTF phase ``γ = −πλ(Δf_u k_u² + Δf_v k_v²) + (π/2)Csλ³|k|⁴ − φ − atan(Q0/√(1−Q0²))``.

    ``k`` in Å⁻¹; ``(k_u, k_v)`` is ``k`` turned into the astigmatism frame. Shared by every kernel that
    evaluates a CTF, so that the convention lives in one place.
    """
    ku = cos_angle * kx + sin_angle * ky
    kv = -sin_angle * kx + cos_angle * ky
    k2sum = kx * kx + ky * ky
    return k1 * (-(defocus_u * ku * ku + defocus_v * kv * kv)) + k2 * k2sum * k2sum - phase_shift_rad - k3


@njit(inline="always", cache=True)
def clamp_ctf(value):
    """RELION replaces ``|CTF| < 1e-8`` by ``±1e-8`` (sign of the value, + at 0) so it can divide by it."""
    if abs(value) < 1e-8:
        return -1e-8 if value < 0.0 else 1e-8
    return value


@njit(cache=True, parallel=True)
def ctf_rfft_2d_kernel(
    defocus_u_angst,
    defocus_v_angst,
    defocus_angle_rad,
    phase_shift_rad,
    bfactor_angst2,
    scale,
    k1,
    k2,
    k3,
    box_px,
    pixel_size_angst,
    gamma_offset,
    use_gamma_offset,
    out,
):
    """Fill ``out[r]`` with ``−scale·sin(γ)·exp(−B|k|²/4)`` for every row ``r``.

    Parameters
    ----------
    defocus_u_angst, defocus_v_angst, defocus_angle_rad, phase_shift_rad, bfactor_angst2, scale
        float64 ``(n,)``, one CTF per row (defocus already includes any per-row offset).
    k1, k2, k3
        ``πλ``, ``(π/2)·Cs·λ³`` (Å), ``atan(Q0/√(1−Q0²))``.
    gamma_offset
        float64 ``(box, box//2+1)`` added to γ (symmetric aberrations) when ``use_gamma_offset``.
    out
        float32 ``(n, box, box//2+1)`` = (row, ky, kx), written.
    """
    n = out.shape[0]
    half = box_px // 2 + 1
    inv = 1.0 / (box_px * pixel_size_angst)
    for r in prange(n):
        ca = np.cos(defocus_angle_rad[r])
        sa = np.sin(defocus_angle_rad[r])
        du = defocus_u_angst[r]
        dv = defocus_v_angst[r]
        k4 = -bfactor_angst2[r] / 4.0
        k5 = phase_shift_rad[r]
        sc = scale[r]
        for y in range(box_px):
            # FFT order (numpy fftfreq): the Nyquist row of an even box is negative
            yy = y if y < (box_px + 1) // 2 else y - box_px
            ky = yy * inv
            for x in range(half):
                kx = x * inv
                k2sum = kx * kx + ky * ky
                gamma = relion_ctf_gamma(kx, ky, ca, sa, du, dv, k1, k2, k3, k5)
                if use_gamma_offset:
                    gamma += gamma_offset[y, x]
                out[r, y, x] = clamp_ctf(-np.sin(gamma) * np.exp(k4 * k2sum) * sc)
