"""Numba kernels of the alignment: cubic B-spline lookups in the CC maps (see :mod:`.cost`) and the fused CC maps."""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .._ctf_kernels import clamp_ctf, relion_ctf_gamma
from ..fourier._trilinear import sample_half_volume_trilinear


@njit(cache=True)
def _cubic_bspline(t, w, dw):
    """Cubic B-spline weights of the 4 coefficients around ``t ∈ [0, 1)`` and their derivatives.

    The maps hold B-spline *coefficients* (:func:`.ccmaps.compute_cc_maps` prefilters them), so the lookup
    interpolates the samples exactly and reproduces a band-limited CC peak far better than Catmull-Rom, whose
    sub-pixel bias on sharp peaks was the largest error left on noiseless data (0.021 px RMS).
    """
    u = 1.0 - t
    t2 = t * t
    t3 = t2 * t
    w[0] = u * u * u / 6.0
    w[1] = (3.0 * t3 - 6.0 * t2 + 4.0) / 6.0
    w[2] = (-3.0 * t3 + 3.0 * t2 + 3.0 * t + 1.0) / 6.0
    w[3] = t3 / 6.0
    dw[0] = -0.5 * u * u
    dw[1] = 1.5 * t2 - 2.0 * t
    dw[2] = -1.5 * t2 + t + 0.5
    dw[3] = 0.5 * t2


@njit(cache=True, parallel=True)
def cost_kernel(maps, centres, positions, motion, offsets, model_rot, model_trans, q, dq, shifts, pivot, active,
                visible, radius, scale, range_reg, out_value, out_gdelta, out_gangle, out_goffset):
    """Per-(particle, tilt) value and gradients; no reductions across particles (deterministic).

    maps : float32 (P, F, D, D) CC maps sampled ``scale`` times per px; index (radius+3)·scale is zero displacement.
    centres : float64 (P, F, 2) map centres p0 (image px).
    positions, offsets : float64 (P, 3) static positions and current offsets (px).
    motion : float64 (P, F, 3) fixed per-tilt displacements from input trajectories (px), zeros without.
    model_rot, model_trans : float64 (F, 3, 3), (F, 3): the reference projection P0_f (camera frame).
    q : float64 (F, 3, 3) current rotation Q_f; dq : (F, 3, 3, 3) dQ_f/dangle (rad) for φ, θ, ψ.
    shifts : float64 (F, 2) current shifts (px); pivot : float64 (3,) rotation pivot (camera frame).
    active : bool (F,), visible : bool (P, F).
    out_value : (P, F); out_gdelta : (P, F, 2) dE/dΔ; out_gangle : (P, F, 3) dE/dangle (per rad);
    out_goffset : (P, 3) dE/doffset summed over tilts.
    """
    n_p = maps.shape[0]
    n_f = maps.shape[1]
    diam = maps.shape[2]
    centre = (radius + 3.0) * scale
    for p in prange(n_p):
        wx = np.empty(4)
        dwx = np.empty(4)
        wy = np.empty(4)
        dwy = np.empty(4)
        s0 = positions[p, 0] + offsets[p, 0]
        s1 = positions[p, 1] + offsets[p, 1]
        s2 = positions[p, 2] + offsets[p, 2]
        go0 = 0.0
        go1 = 0.0
        go2 = 0.0
        for f in range(n_f):
            out_value[p, f] = 0.0
            out_gdelta[p, f, 0] = 0.0
            out_gdelta[p, f, 1] = 0.0
            out_gangle[p, f, 0] = 0.0
            out_gangle[p, f, 1] = 0.0
            out_gangle[p, f, 2] = 0.0
            if not (active[f] and visible[p, f]):
                continue
            x0 = s0 + motion[p, f, 0]
            x1 = s1 + motion[p, f, 1]
            x2 = s2 + motion[p, f, 2]
            v0 = model_rot[f, 0, 0] * x0 + model_rot[f, 0, 1] * x1 + model_rot[f, 0, 2] * x2 + model_trans[f, 0] - pivot[0]
            v1 = model_rot[f, 1, 0] * x0 + model_rot[f, 1, 1] * x1 + model_rot[f, 1, 2] * x2 + model_trans[f, 1] - pivot[1]
            v2 = model_rot[f, 2, 0] * x0 + model_rot[f, 2, 1] * x1 + model_rot[f, 2, 2] * x2 + model_trans[f, 2] - pivot[2]
            u = q[f, 0, 0] * v0 + q[f, 0, 1] * v1 + q[f, 0, 2] * v2 + pivot[0] + shifts[f, 0]
            v = q[f, 1, 0] * v0 + q[f, 1, 1] * v1 + q[f, 1, 2] * v2 + pivot[1] + shifts[f, 1]
            dx = u - centres[p, f, 0]
            dy = v - centres[p, f, 1]
            xi = dx * scale + centre
            yi = dy * scale + centre
            value = 0.0
            g0 = 0.0
            g1 = 0.0
            if xi > 1.0 and xi < diam - 2.0 and yi > 1.0 and yi < diam - 2.0:
                ix = int(math.floor(xi))
                iy = int(math.floor(yi))
                _cubic_bspline(xi - ix, wx, dwx)
                _cubic_bspline(yi - iy, wy, dwy)
                s = 0.0
                sx = 0.0
                sy = 0.0
                for j in range(4):
                    row = iy - 1 + j
                    a = 0.0
                    ad = 0.0
                    for i in range(4):
                        m = maps[p, f, row, ix - 1 + i]
                        a += wx[i] * m
                        ad += dwx[i] * m
                    s += wy[j] * a
                    sx += wy[j] * ad
                    sy += dwy[j] * a
                value = -s
                g0 = -sx * scale
                g1 = -sy * scale
            if range_reg > 0.0:
                norm = math.sqrt(dx * dx + dy * dy)
                if norm > radius:
                    excess = norm - radius
                    value += range_reg * excess * excess
                    g0 += 2.0 * range_reg * excess * dx / norm
                    g1 += 2.0 * range_reg * excess * dy / norm
            out_value[p, f] = value
            out_gdelta[p, f, 0] = g0
            out_gdelta[p, f, 1] = g1
            for k in range(3):
                a0 = dq[f, k, 0, 0] * v0 + dq[f, k, 0, 1] * v1 + dq[f, k, 0, 2] * v2
                a1 = dq[f, k, 1, 0] * v0 + dq[f, k, 1, 1] * v1 + dq[f, k, 1, 2] * v2
                out_gangle[p, f, k] = a0 * g0 + a1 * g1
            # d(u, v)/dX = (Q·R0)[0:2, :]
            for c in range(3):
                m0 = q[f, 0, 0] * model_rot[f, 0, c] + q[f, 0, 1] * model_rot[f, 1, c] + q[f, 0, 2] * model_rot[f, 2, c]
                m1 = q[f, 1, 0] * model_rot[f, 0, c] + q[f, 1, 1] * model_rot[f, 1, c] + q[f, 1, 2] * model_rot[f, 2, c]
                gc = m0 * g0 + m1 * g1
                if c == 0:
                    go0 += gc
                elif c == 1:
                    go1 += gc
                else:
                    go2 += gc
        out_goffset[p, 0] = go0
        out_goffset[p, 1] = go1
        out_goffset[p, 2] = go2


@njit(cache=True)
def _offset_score(maps, p, rot2, shifts, active, visible, centre, scale, ox, oy, oz, wx, dwx, wy, dwy):
    n_f = maps.shape[1]
    diam = maps.shape[2]
    total = 0.0
    for f in range(n_f):
        if not (active[f] and visible[p, f]):
            continue
        xi = (rot2[f, 0, 0] * ox + rot2[f, 0, 1] * oy + rot2[f, 0, 2] * oz + shifts[f, 0]) * scale + centre
        yi = (rot2[f, 1, 0] * ox + rot2[f, 1, 1] * oy + rot2[f, 1, 2] * oz + shifts[f, 1]) * scale + centre
        if xi > 1.0 and xi < diam - 2.0 and yi > 1.0 and yi < diam - 2.0:
            ix = int(math.floor(xi))
            iy = int(math.floor(yi))
            _cubic_bspline(xi - ix, wx, dwx)
            _cubic_bspline(yi - iy, wy, dwy)
            for j in range(4):
                a = 0.0
                for i in range(4):
                    a += wx[i] * maps[p, f, iy - 1 + j, ix - 1 + i]
                total += wy[j] * a
    return total


@njit(cache=True, parallel=True)
def offset_search_kernel(maps, rot2, shifts, active, visible, radius, scale, grid, out_score):
    """Score of every candidate 3D offset of every particle: Σ_f S_pf(R_f[:2]·δ + shift_f) (Catmull-Rom).

    maps : float32 (P, F, D, D); rot2 : float64 (F, 2, 3) the first two rows of each tilt's rotation;
    shifts : float64 (F, 2) tilt shifts (px) relative to the maps' centres; active : bool (F,);
    visible : bool (P, F); grid : float64 (G, 3) candidate offsets (px), shared by all particles, or
    (P, G, 3), one set per particle; out_score : float64 (P, G).
    """
    n_p = maps.shape[0]
    centre = (radius + 3.0) * scale
    n_g = out_score.shape[1]
    per_particle = grid.ndim == 3
    flat = grid.reshape(-1, 3)
    for p in prange(n_p):
        wx = np.empty(4)
        dwx = np.empty(4)
        wy = np.empty(4)
        dwy = np.empty(4)
        base = p * n_g if per_particle else 0
        for gi in range(n_g):
            k = base + gi
            out_score[p, gi] = _offset_score(maps, p, rot2, shifts, active, visible, centre, scale, flat[k, 0],
                                             flat[k, 1], flat[k, 2], wx, dwx, wy, dwy)


@njit(cache=True, parallel=True)
def predict_cc_kernel(volumes, half, mats, tilt, defocus_u, defocus_v, angle_rad, phase_rad, bfactor, ctf_scale,
                      k1, k2, k3, pixel_size, shifts, visible, weight, dose, own_scale, spectra):
    """Fused prediction and CC spectrum, in place:
    ``spectra[i] ← −W·(Obs·e^{2πik·t/s} + a·Pred)·conj(Pred)``, ``Pred = slice·CTF·D``.

    One row ``i`` per (particle, tilt). Coefficients with ``W = 0`` are skipped (set to 0), so nothing is
    computed beyond the reference envelope or outside the frequency limits.

    volumes : complex64 (2, s, s, s//2+1) half maps; half : int64 (n,) which one.
    mats : float64 (n, 3, 3) slice matrices; tilt : int64 (n,) tilt index.
    defocus_u, defocus_v : float64 (n,) incl. the depth offset (Å); angle_rad, phase_rad, bfactor, ctf_scale :
    float64 (F,) per tilt; k1 = πλ, k2 = (π/2)·Cs·λ³, k3 = atan(Q0/√(1−Q0²)); pixel_size (Å).
    shifts : float64 (n, 2) sub-pixel centring shift (px); visible : bool (n,).
    weight, dose : float32 (F, s, s//2+1); spectra : complex64 (n, s, s//2+1) observations in, CC out.
    own_scale : float32 (F, s, s//2+1) ``a``: puts the particle's own prediction back into an observation taken
    from a residual image (:mod:`.neighbours`); all zeros for raw observations.
    """
    n = spectra.shape[0]
    s = spectra.shape[1]
    sh = spectra.shape[2]
    inv = 1.0 / (s * pixel_size)
    for i in prange(n):
        if not visible[i]:
            for iy in range(s):
                for ix in range(sh):
                    spectra[i, iy, ix] = 0.0
            continue
        f = tilt[i]
        h = half[i]
        m = mats[i]
        ca = math.cos(angle_rad[f])
        sa = math.sin(angle_rad[f])
        du = defocus_u[i]
        dv = defocus_v[i]
        k4 = -bfactor[f] / 4.0
        tx = shifts[i, 0]
        ty = shifts[i, 1]
        # The centring phase e^{2πi(ix·tx + ky·ty)/s} factorises: one cos/sin per column and per row, not per pixel.
        cos_x = np.empty(sh)
        sin_x = np.empty(sh)
        for ix in range(sh):
            cos_x[ix] = math.cos(2.0 * math.pi * ix * tx / s)
            sin_x[ix] = math.sin(2.0 * math.pi * ix * tx / s)
        for iy in range(s):
            ky = iy if iy < (s + 1) // 2 else iy - s
            cos_y = math.cos(2.0 * math.pi * ky * ty / s)
            sin_y = math.sin(2.0 * math.pi * ky * ty / s)
            for ix in range(sh):
                w = weight[f, iy, ix]
                if w == 0.0 or (ix == 0 and iy == 0):
                    spectra[i, iy, ix] = 0.0
                    continue
                gx = m[0, 0] * ix + m[1, 0] * ky
                gy = m[0, 1] * ix + m[1, 1] * ky
                gz = m[0, 2] * ix + m[1, 2] * ky
                re, im = sample_half_volume_trilinear(volumes, h, gx, gy, gz)
                # RELION CTF (CTF::getCTF), as compute/_ctf_kernels.py
                kx = ix * inv
                kya = ky * inv
                gamma = relion_ctf_gamma(kx, kya, ca, sa, du, dv, k1, k2, k3, phase_rad[f])
                c = -math.sin(gamma) * ctf_scale[f]
                if k4 != 0.0:
                    c *= math.exp(k4 * (kx * kx + kya * kya))
                c = clamp_ctf(c)
                # The float32 rounding of the shared CTF/dose arrays is kept, for bit-near parity.
                c = np.float32(c) * dose[f, iy, ix]
                pr = np.float32(re) * c
                pi = np.float32(im) * c
                cs = cos_x[ix] * cos_y - sin_x[ix] * sin_y
                sn = sin_x[ix] * cos_y + cos_x[ix] * sin_y
                o = spectra[i, iy, ix]
                orr = o.real * cs - o.imag * sn
                oi = o.real * sn + o.imag * cs
                a = own_scale[f, iy, ix]
                if a != 0.0:
                    orr += a * pr
                    oi += a * pi
                # −w · obs · conj(pred)
                spectra[i, iy, ix] = complex(-w * (orr * pr + oi * pi), -w * (oi * pr - orr * pi))


@njit(cache=True, parallel=True)
def masked_windows_kernel(stack, tilt_of_row, origins, visible, mask, outer, out):
    """Windows of the tilt images, RELION-``cropCircle``-ed and ifftshifted, in one pass (the FFT's input).

    ``w = stack[tilt, clamp(oy + y), clamp(ox + x)]``; ``out[r, (y − s/2) mod s, (x − s/2) mod s] =
    mask[y, x]·(w − μ)`` with ``μ`` the mean of ``w`` where ``outer``; invisible rows are zero. Same values as
    ``extract_windows`` → ``crop_circle`` → ``ifftshift``, without the two intermediate ``(rows, s, s)`` arrays.

    stack : float32 (F, H, W); tilt_of_row : int64 (n,); origins : int64 (n, 2) = (ox, oy); visible : bool (n,);
    mask : float64 (s, s); outer : bool (s, s); out : float32 (n, s, s), written.
    """
    n_rows, s, _ = out.shape
    h = stack.shape[1]
    w = stack.shape[2]
    half = s // 2
    n_outer = 0
    for y in range(s):
        for x in range(s):
            if outer[y, x]:
                n_outer += 1
    for r in prange(n_rows):
        if not visible[r]:
            for y in range(s):
                for x in range(s):
                    out[r, y, x] = 0.0
            continue
        f = tilt_of_row[r]
        ox = origins[r, 0]
        oy = origins[r, 1]
        acc = 0.0
        if n_outer > 0:
            for y in range(s):
                yy = min(max(oy + y, 0), h - 1)
                for x in range(s):
                    if outer[y, x]:
                        acc += stack[f, yy, min(max(ox + x, 0), w - 1)]
            acc /= n_outer
        for y in range(s):
            yy = min(max(oy + y, 0), h - 1)
            ty = y - half if y >= half else y - half + s
            for x in range(s):
                tx = x - half if x >= half else x - half + s
                out[r, ty, tx] = mask[y, x] * (stack[f, yy, min(max(ox + x, 0), w - 1)] - acc)
