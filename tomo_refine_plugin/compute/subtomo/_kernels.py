"""Numba kernels of the subtomo per-tilt chain: fused element-wise passes over ``(n, F, s, s//2+1)`` spectra
(one parallel pass instead of several single-threaded numpy temporaries)."""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .._ctf_kernels import clamp_ctf, relion_ctf_gamma


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


@njit(cache=True, parallel=True)
def ctf_dose_weight_kernel(spectra, defocus_u_angst, defocus_v_angst, defocus_angle_rad, phase_shift_rad,
                           envelope, scale, k1, k2, k3, pixel_size_angst, gamma_offset, use_gamma_offset,
                           extra_defocus_angst, dose, pixel_sign, weights, row_factor, col_factor):
    """In place ``spectra *= pixel_sign·c`` and ``weights = c²`` with ``c = float32(CTF)·dose``; first
    ``spectra *= row_factor·col_factor`` (:func:`separable_phase_kernel`, same bits) if those are given.

    One pass instead of the CTF batch and a separate weighting pass (no ``(n, F, s, sh)`` CTF array, and
    the B-factor envelope is evaluated once per tilt rather than per particle). The CTF value is computed
    with exactly the operations of ``compute._ctf_kernels.ctf_rfft_2d_kernel`` (same bits; a test checks
    it), with ΔfU/ΔfV of the tilt plus the particle's extra defocus.

    Parameters
    ----------
    spectra
        complex64 ``(n, F, s, sh)``, modified.
    defocus_u_angst, defocus_v_angst, defocus_angle_rad, phase_shift_rad, scale
        float64 ``(F,)`` per-tilt CTF parameters.
    envelope
        float64 ``(F, s, sh)``: ``exp(−B_f·|k|²/4)`` as the CTF kernel evaluates it.
    k1, k2, k3, pixel_size_angst
        As in ``ctf_rfft_2d_kernel``.
    gamma_offset
        float64 ``(s, sh)``, added to γ when ``use_gamma_offset``.
    extra_defocus_angst
        float64 ``(n, F)``.
    dose
        float32 ``(F, s, sh)``.
    pixel_sign
        float32 ``(s, sh)``: the contrast sign, times the centring checkerboard where wanted.
    weights
        float32 ``(n, F, s, sh)`` written, or shape ``(0, 0, 0, 0)`` to skip them.
    row_factor, col_factor
        complex64 ``(n, F, s)`` and ``(n, F, sh)``, or shape ``(0, 0, 0)`` for no phase factor.
    """
    n, n_frames, box_px, half = spectra.shape
    write_weights = weights.shape[0] == n
    use_phase = row_factor.shape[0] == n
    inv = 1.0 / (box_px * pixel_size_angst)
    for r in prange(n * n_frames):
        i = r // n_frames
        f = r % n_frames
        ca = np.cos(defocus_angle_rad[f])
        sa = np.sin(defocus_angle_rad[f])
        du = defocus_u_angst[f] + extra_defocus_angst[i, f]
        dv = defocus_v_angst[f] + extra_defocus_angst[i, f]
        k5 = phase_shift_rad[f]
        sc = scale[f]
        for y in range(box_px):
            yy = y if y < (box_px + 1) // 2 else y - box_px
            ky = yy * inv
            if use_phase:
                ry = row_factor[i, f, y]
                for x in range(half):
                    spectra[i, f, y, x] *= ry * col_factor[i, f, x]
            for x in range(half):
                gamma = relion_ctf_gamma(x * inv, ky, ca, sa, du, dv, k1, k2, k3, k5)
                if use_gamma_offset:
                    gamma += gamma_offset[y, x]
                c = np.float32(clamp_ctf(-np.sin(gamma) * envelope[f, y, x] * sc)) * dose[f, y, x]
                spectra[i, f, y, x] *= pixel_sign[y, x] * c
                if write_weights:
                    weights[i, f, y, x] = c * c


@njit(cache=True)
def ctf_envelope_kernel(bfactor_angst2, box_px, pixel_size_angst, out):
    """``out[f] = exp(−B_f/4·|k|²)`` on the half grid, evaluated as ``ctf_rfft_2d_kernel`` does (same bits).

    float64 ``bfactor_angst2 (F,)``, ``out (F, box, box//2+1)``.
    """
    half = box_px // 2 + 1
    inv = 1.0 / (box_px * pixel_size_angst)
    for f in range(out.shape[0]):
        k4 = -bfactor_angst2[f] / 4.0
        for y in range(box_px):
            yy = y if y < (box_px + 1) // 2 else y - box_px
            ky = yy * inv
            for x in range(half):
                kx = x * inv
                k2sum = kx * kx + ky * ky
                out[f, y, x] = np.exp(k4 * k2sum)


@njit(cache=True, parallel=True)
def split_accumulator_kernel(acc, data_factor, data, weights):
    """Interleaved insertion sums → the pseudo-subtomogram's half grid and its ``_weights.mrc`` array.

    ``data[a] = complex64(acc[a, ..., 0:2] · data_factor)`` (data_factor: checkerboard × normfft; the
    complex-times-real product written out as numpy evaluates it, so the bits match
    ``half_grid_to_real_centred``'s input), ``weights[a, :s3] = float32(ctf)``,
    ``weights[a, s3:] = float32(mult)``.

    float64 ``acc (n, s3, s3, sh3, 4)``; float32 ``data_factor (s3, s3, sh3)``; complex64
    ``data (n, s3, s3, sh3)`` and float32 ``weights (n, 2·s3, s3, sh3)``, written.
    """
    n, s3, _, sh3, _ = acc.shape
    for r in prange(n * s3):
        a = r // s3
        z = r % s3
        for y in range(s3):
            for x in range(sh3):
                f = np.float64(data_factor[z, y, x])
                re = acc[a, z, y, x, 0]
                im = acc[a, z, y, x, 1]
                data[a, z, y, x] = complex(re * f - im * 0.0, re * 0.0 + im * f)
                weights[a, z, y, x] = acc[a, z, y, x, 2]
                weights[a, s3 + z, y, x] = acc[a, z, y, x, 3]
