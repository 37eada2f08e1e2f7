"""Per-(particle, tilt) cross-correlation maps over small 2D displacements (relion_align.md §3.2–3.4).

For particle ``p`` and tilt ``f``: the observation is the raw tilt-image window around the projected
position ``q_pf`` (:func:`~..fourier.extract.align_observation_rfft_2d`); the prediction is the central
slice of the particle's own half map (``rlnRandomSubset``) × CTF (depth-dependent defocus) × dose;
``CC(k) = −W_f(k)·Obs(k)·conj(Pred(k))`` inside the tilt's frequency limits (the minus sign: particles are
dark, the prediction is white). The unnormalised inverse FFT gives ``S(d) = Σ_k CC(k)·e^{+2πik·d/s}``,
which peaks at the displacement ``d`` of the particle from ``q_pf``. Maps are cropped to
``diam = 2r+6`` around ``d = 0`` (centre index ``r+3``) with a zeroed 3-px border. By default the whole
chain after the FFT of the windows runs in one numba kernel (:func:`._kernels.predict_cc_kernel`); the
``fused=False`` path composes the shared slice/CTF/extraction functions and serves as its reference.

Deliberate deviations from RELION (docs/DEVIATIONS.md):
* RELION's ``padCorner2D_half`` keeps only ``kx < (s/2+1)/2`` before the inverse FFT, silently dropping
  half of the x frequencies (an anisotropic low-pass); we keep every coefficient.
* For an invisible tilt RELION zeroes the map slice of the *table* index instead of the chronological
  one, wiping a valid map; here invisible (particle, tilt) pairs are simply flagged and left at zero.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy import ndimage

from ..ctf import ctf_rfft_2d_batch, defocus_offsets_angst, electron_wavelength_angst
from ..fourier.extract import align_observation_rfft_2d, phase_shift_rfft_2d, window_origins_px
from ..fourier.slices import extract_central_slices_rfft_3d
from ..frames import as_frames
from ..geometry import TiltSeriesGeometry, TiltSeriesOptics, project_points, visible_in_frames
from ._kernels import masked_windows_kernel, predict_cc_kernel

__all__ = ["CCMaps", "compute_cc_maps", "observed_positions", "predicted_spectra", "spline_coefficients"]


@dataclass(frozen=True, eq=False)
class CCMaps:
    """Cropped CC maps and what they were computed from.

    Attributes
    ----------
    maps
        float32 ``(n_particles, n_tilts, diam, diam)`` = (p, f, dy, dx), ``diam = (2r+6)·oversampling``;
        index ``(r+3)·oversampling`` is d = 0. They hold the cubic B-spline *coefficients* of the CC
        (:func:`spline_coefficients`), which the cost's spline lookup turns back into CC values.
    radius_px
        ``r``.
    centres_px
        float64 ``(n_particles, n_tilts, 2)``: the 2D positions ``p0`` the maps are centred on.
    visible
        bool ``(n_particles, n_tilts)``: False where the box leaves the image (map is zero).
    tilt_sums
        float64 ``(n_tilts, n, n)``, ``n = s·oversampling``: per tilt, the sum over visible particles of the *uncropped* CC
        maps, d = 0 at index ``n//2`` (the global shift search uses it).
    oversampling
        Samples per pixel of ``maps`` and ``tilt_sums``.
    """

    maps: np.ndarray
    radius_px: int
    centres_px: np.ndarray
    visible: np.ndarray
    tilt_sums: np.ndarray
    oversampling: int = 1


def spline_coefficients(maps) -> np.ndarray:
    """Turn CC samples ``(…, n, n)`` into cubic B-spline coefficients, in place (and return them).

    The cost's lookup (:func:`._kernels._cubic_bspline`) then interpolates the samples exactly. Mirror boundaries.
    """
    for axis in (-1, -2):
        ndimage.spline_filter1d(maps, 3, axis=axis, output=maps, mode="mirror")
    return maps


def observed_positions(geometry: TiltSeriesGeometry, positions_px, box_px: int, motion_px=None):
    """Where each particle is observed: 2D positions ``(n_particles, n_tilts, 2)`` of ``p + motion``, whether its
    ``box_px`` window lies inside the image (RELION's test), and the depth offsets of the defocus (Å, from the
    static ``p``). The CC maps and the neighbour subtraction must agree on all three."""
    points = positions_px if motion_px is None else np.asarray(positions_px)[:, None, :] + motion_px
    uv = project_points(geometry.projection_matrices(), points)
    return uv, visible_in_frames(uv, geometry.image_size_px, box_px / 2.0), defocus_offsets_angst(geometry, positions_px)


def _kernel_ctf_arguments(optics: TiltSeriesOptics):
    """The per-tilt CTF arrays and the constants ``k1 = πλ``, ``k2 = (π/2)·Cs·λ³``, ``k3 = atan(Q0/√(1−Q0²))``
    that :func:`._kernels.predict_cc_kernel` takes."""
    lam = electron_wavelength_angst(optics.voltage_kv)
    q0 = float(optics.amplitude_contrast)
    k1, k2, k3 = np.pi * lam, 0.5 * np.pi * optics.cs_mm * 1e7 * lam ** 3, float(np.arctan(q0 / np.sqrt(1 - q0 * q0)))
    per_tilt = [np.ascontiguousarray(np.deg2rad(optics.defocus_angle_deg)),
                np.ascontiguousarray(np.deg2rad(optics.phase_shift_deg)),
                np.ascontiguousarray(optics.ctf_bfactor_angst2, np.float64),
                np.ascontiguousarray(optics.ctf_scale, np.float64)]
    return per_tilt, k1, k2, k3


def _slice_ctf_dose(reference_halves, half_rows, matrices, tilt_rows, defocus_rows, optics: TiltSeriesOptics,
                    pixel_size_angst: float, dose_weights, max_radius_px=None) -> np.ndarray:
    """The prediction from the shared slice/CTF/dose functions (any aberrations); the fused kernel's reference.
    Rows as in :func:`predicted_spectra`; complex64 ``(n, s, s//2+1)``."""
    s = reference_halves.shape[1]
    half_rows, matrices = np.asarray(half_rows), np.asarray(matrices)
    tilt_rows = np.asarray(tilt_rows)
    pred = np.empty((len(tilt_rows), s, s // 2 + 1), np.complex64)
    for h in (0, 1):
        sel = np.nonzero(half_rows == h)[0]
        if sel.size:
            pred[sel] = extract_central_slices_rfft_3d(reference_halves[h], matrices[sel], max_radius_px=max_radius_px)
    pred *= ctf_rfft_2d_batch(s, pixel_size_angst, optics, tilt_rows[None], np.asarray(defocus_rows)[None])[0]
    pred *= np.asarray(dose_weights, np.float32)[tilt_rows]
    return pred


def predicted_spectra(reference_halves, half_rows, matrices, tilt_rows, defocus_rows, optics: TiltSeriesOptics,
                      pixel_size_angst: float, dose_weights, support, shifts_px=None) -> np.ndarray:
    """Predicted particle images ``slice·CTF·D`` (centred, the CC maps' prediction) for a list of (particle, tilt) rows.

    Parameters
    ----------
    reference_halves
        complex64 ``(2, s, s, s//2+1)``.
    half_rows, tilt_rows
        int ``(n,)``: the half map and the tilt index of each row.
    matrices
        float64 ``(n, 3, 3)`` slice matrices (tilt rotation × particle rotation).
    defocus_rows
        float64 ``(n,)`` depth offsets of the defocus (Å).
    dose_weights
        float ``(n_tilts, s, s//2+1)``.
    support
        bool ``(n_tilts, s, s//2+1)``: where to compute the prediction (zero elsewhere).
    shifts_px
        float ``(n, 2)`` or None: multiply by ``e^{−2πik·t/s}``, i.e. move the prediction by ``+t`` from the box
        centre (into the frame of a raw window whose centre is ``t`` off the particle).

    Returns
    -------
    complex64 ``(n, s, s//2+1)``.
    """
    n = len(tilt_rows)
    s = reference_halves.shape[1]
    tilt_rows = np.ascontiguousarray(tilt_rows, np.int64)
    if optics.even_zernike.size and np.any(optics.even_zernike != 0):
        pred = _slice_ctf_dose(reference_halves, half_rows, matrices, tilt_rows, defocus_rows, optics,
                               pixel_size_angst, dose_weights)
        pred *= support[tilt_rows]
        return pred if shifts_px is None else phase_shift_rfft_2d(pred, -np.asarray(shifts_px, np.float64))
    # The CC kernel with Obs = 1 and W = 1 returns −conj(Pred·e^{−2πik·t/s}) for the centring shift t: one
    # implementation of the prediction for the maps and for the neighbour subtraction.
    per_tilt, k1, k2, k3 = _kernel_ctf_arguments(optics)
    out = np.ones((n, s, s // 2 + 1), np.complex64)
    zeros = np.zeros(np.shape(dose_weights), np.float32)
    defocus_rows = np.asarray(defocus_rows, np.float64)
    predict_cc_kernel(reference_halves, np.ascontiguousarray(half_rows, np.int64),
                      np.ascontiguousarray(matrices, np.float64), tilt_rows,
                      np.ascontiguousarray(optics.defocus_u_angst[tilt_rows] + defocus_rows),
                      np.ascontiguousarray(optics.defocus_v_angst[tilt_rows] + defocus_rows), *per_tilt, k1, k2, k3,
                      float(pixel_size_angst),
                      np.zeros((n, 2)) if shifts_px is None else np.ascontiguousarray(shifts_px, np.float64),
                      np.ones(n, np.bool_),
                      np.ascontiguousarray(support, np.float32), np.ascontiguousarray(dose_weights, np.float32), zeros,
                      out)
    np.conjugate(out, out=out)
    out *= -1
    return out


def compute_cc_maps(stack, geometry: TiltSeriesGeometry, optics: TiltSeriesOptics, positions_px,
                    particle_matrices, half_index, reference_halves, frequency_weights, dose_weights,
                    frequency_mask, radius_px: int, workers: int = 1, chunk: int = 64,
                    relion_kx_band_limit: bool = False, oversampling: int = 1, max_radius_px=None,
                    motion_px=None, fused: bool = True, tilts=None, update: CCMaps | None = None,
                    own_scale=None) -> CCMaps:
    """Compute all CC maps once for the given geometry.

    Parameters
    ----------
    stack
        float32 ``(n_tilts, H, W)``, or a frame source (:mod:`..frames`): read one tilt at a time.
    positions_px
        float64 ``(n_particles, 3)`` static positions (decentred px).
    particle_matrices
        float64 ``(n_particles, 3, 3)`` particle-box → tomogram rotations ``A_sub·A_part``.
    half_index
        int ``(n_particles,)`` in {0, 1} (``rlnRandomSubset − 1``).
    reference_halves
        complex64 ``(2, s, s, s//2+1)`` from :func:`.reference.prepare_reference`.
    frequency_weights, dose_weights
        float ``(n_tilts, s, s//2+1)``.
    frequency_mask
        bool ``(n_tilts, s, s//2+1)`` (RELION's xRanges).
    radius_px
        ``--r``; must be ≤ s/2 − 3 (checked by the caller).
    chunk
        Particles per batch of one tilt (bounds the temporaries to ``chunk`` boxes).
    oversampling
        CC-map samples per pixel (zero-padding of the CC spectrum); with the B-spline lookup 1 is as accurate.
    motion_px
        float64 ``(n_particles, n_tilts, 3)`` displacements from input trajectories (px): the maps are centred
        on the projected trajectory points (RELION does the same); the defocus uses the static position.
    fused
        Compute slice × CTF × dose × weight × observation in one numba pass (:func:`._kernels.predict_cc_kernel`)
        instead of with the shared slice/CTF/extraction functions (the reference path, used with even
        Zernike aberrations; a test checks that both agree).
    max_radius_px
        Frequencies beyond this radius (Fourier px) have zero weight; the prediction is not computed there.
    tilts, update
        Recompute only the tilts ``tilts`` (int indices) and write them into ``update`` (the maps of the
        other tilts are kept; ``update``'s arrays are modified and returned in a new :class:`CCMaps`).
    own_scale
        float ``(n_tilts, s, s//2+1)`` or None. When ``stack`` is a residual (the data minus every predicted
        particle, :func:`.neighbours.subtract_predicted_particles`), each observation gets its own particle back
        as ``a·Pred``, so that it sees the data minus its *neighbours* only.
    relion_kx_band_limit
        Reproduce RELION's ``padCorner2D_half`` truncation (``kx < (s/2+1)//2``), for parity checks only.
    """
    s = reference_halves.shape[1]
    n_p = positions_px.shape[0]
    n_f = geometry.n_tilts
    frames = as_frames(stack)
    ovs = int(oversampling)
    n_full = s * ovs
    diam = (2 * radius_px + 6) * ovs
    proj = geometry.projection_matrices()
    uv, visible, defocus = observed_positions(geometry, positions_px, s, motion_px)
    tilt_idx = np.arange(n_f) if tilts is None else np.asarray(tilts, np.int64)
    if tilts is not None:
        if update is None:
            raise ValueError("tilts= needs update= (the maps of the other tilts)")
        # Only the selected tilts from here on; the per-tilt tables (weights, dose, CTF) stay indexed by tilt_idx.
        uv_all, visible_all = update.centres_px, update.visible
        uv_all[:, tilt_idx] = uv[:, tilt_idx]
        visible_all[:, tilt_idx] = visible[:, tilt_idx]
        uv, visible, defocus = uv[:, tilt_idx], visible[:, tilt_idx], defocus[:, tilt_idx]
    n_t = len(tilt_idx)
    weight = (np.asarray(frequency_weights) * np.asarray(frequency_mask)).astype(np.float32)
    if relion_kx_band_limit:
        weight[:, :, (s // 2 + 1) // 2:] = 0
    dose = np.asarray(dose_weights, np.float32)
    own = np.zeros_like(dose) if own_scale is None else np.ascontiguousarray(own_scale, np.float32)
    crop = (np.arange(diam) - (radius_px + 3) * ovs) % n_full
    maps = np.zeros((n_p, n_t, diam, diam), np.float32)
    sums = np.zeros((n_t, n_full, n_full))
    # Rows of the zero-padded spectrum: non-negative ky first, negative ky (incl. Nyquist) at the end.
    pad_rows = np.where(np.arange(s) < s // 2, np.arange(s), np.arange(s) + n_full - s)
    fused = fused and not (optics.even_zernike.size and np.any(optics.even_zernike != 0))
    if fused:
        per_tilt, k1, k2, k3 = _kernel_ctf_arguments(optics)
        dose32 = np.ascontiguousarray(dose)
        # RELION cropCircle (radius s/2, 5-px cosine edge), as fourier.extract.crop_circle.
        c = s // 2
        yy, xx = np.mgrid[0:s, 0:s]
        r = np.hypot(xx - c, yy - c)
        circle_outer = r > s / 2.0
        circle_mask = np.where(r < s / 2.0 - 5.0, 1.0, np.where(r < s / 2.0, 0.5 - 0.5 * np.cos(np.pi * (s / 2.0 - r) / 5.0),
                                                                  0.0))
    # One frame at a time (the series need not be in memory), its particles in batches of `chunk` boxes.
    image = np.empty(frames.shape[1:], np.float32)
    for t, f in enumerate(tilt_idx):
        if not visible[:, t].any():
            continue
        frame = frames.read_frame(int(f), out=image)
        mats_f = np.einsum("ij,pjk->pik", proj[f, :3, :3], particle_matrices)
        for start in range(0, n_p, chunk):
            sl = slice(start, min(start + chunk, n_p))
            n_c = sl.stop - sl.start
            vis = np.ascontiguousarray(visible[sl, t])
            if not vis.any():
                continue
            tilt_rows = np.full(n_c, f, np.int64)
            if fused:
                origins = window_origins_px(uv[sl, t], s)
                windows = np.empty((n_c, s, s), np.float32)
                masked_windows_kernel(frame[None], np.zeros(n_c, np.int64), np.ascontiguousarray(origins), vis,
                                      circle_mask, circle_outer, windows)
                cc = scipy.fft.rfft2(windows, norm="ortho", workers=workers).astype(np.complex64, copy=False)
                del windows
                extra = defocus[sl, t]
                predict_cc_kernel(reference_halves, np.ascontiguousarray(half_index[sl], np.int64),
                                  np.ascontiguousarray(mats_f[sl]), tilt_rows,
                                  np.ascontiguousarray(optics.defocus_u_angst[f] + extra),
                                  np.ascontiguousarray(optics.defocus_v_angst[f] + extra), *per_tilt, k1, k2, k3,
                                  float(geometry.pixel_size_angst),
                                  np.ascontiguousarray(uv[sl, t] - origins - s // 2, np.float64),
                                  vis, weight, dose32, own, cc)
            else:
                obs = align_observation_rfft_2d(frame[None], uv[sl, t][:, None], s, visible=vis[:, None],
                                                workers=workers)[:, 0]
                pred = _slice_ctf_dose(reference_halves, half_index[sl], mats_f[sl], tilt_rows, defocus[sl, t], optics,
                                       geometry.pixel_size_angst, dose, max_radius_px)
                if own_scale is not None:
                    obs = obs + own[f][None] * pred
                cc = obs * np.conj(pred)
                cc *= -weight[f][None]
                cc[:, 0, 0] = 0
                cc[~vis] = 0
            if ovs > 1:
                padded = np.zeros((n_c, n_full, n_full // 2 + 1), np.complex64)
                padded[:, pad_rows, : s // 2 + 1] = cc
                cc = padded
            full = scipy.fft.irfft2(cc, s=(n_full, n_full), norm="forward", workers=workers)
            del cc
            maps[sl, t] = full[:, crop][:, :, crop]
            sums[t] += np.fft.fftshift(full.sum(0))
    # Prefiltered before the border is zeroed, or the zeros would ring into the search range.
    spline_coefficients(maps)
    b = 3 * ovs
    maps[:, :, :b, :] = 0
    maps[:, :, -b:, :] = 0
    maps[:, :, :, :b] = 0
    maps[:, :, :, -b:] = 0
    if tilts is not None:
        update.maps[:, tilt_idx] = maps
        update.tilt_sums[tilt_idx] = sums
        return CCMaps(maps=update.maps, radius_px=radius_px, centres_px=uv_all, visible=visible_all,
                      tilt_sums=update.tilt_sums, oversampling=ovs)
    return CCMaps(maps=maps, radius_px=radius_px, centres_px=uv, visible=visible, tilt_sums=sums, oversampling=ovs)
