"""Neighbour subtraction: take every predicted particle out of the tilt images, so that each particle's CC map
sees the data minus its *neighbours* (not in RELION; docs/DEVIATIONS.md).

Why: a 2·r-wide alignment box holds, besides its own particle, parts of the neighbouring ones. Their signal
correlates with the prediction at low frequencies, which biases every CC peak and, worse, forces the CC
weighting to be the inverse power spectrum *of the data* (signal included), which discards much of the
low-frequency information. After the first round the geometry is good enough to predict every particle:

1. per tilt, render ``Σ_p Pred_pf`` (slice·CTF·dose at the particle's projected position) into a model image
   ``M_f``;
2. fit ``a_f(|k|) = Σ_shell Re(D·M*) / Σ_shell |M|²`` between the tilt image ``D_f`` and ``M_f`` (the data's
   contrast, sign and envelope relative to the reference, per Fourier shell of the alignment box);
3. replace the image by the residual ``D_f − F⁻¹[a_f·F(M_f)]``, whose power spectrum is the noise's alone.

The CC maps of the next round take their observations from the residual and add the particle's own
``a·Pred`` back (:func:`.ccmaps.compute_cc_maps`, ``own_scale``), and whiten with the residual's spectrum.
"""
from __future__ import annotations

import numpy as np
import scipy.fft

from ..fourier.extract import centred_irfft_2d, window_origins_px
from ..fourier.shells import radius_rfft_2d, rfft_multiplicity_2d
from ..frames import as_frames
from ..geometry import TiltSeriesGeometry, TiltSeriesOptics
from .ccmaps import observed_positions, predicted_spectra

__all__ = ["subtract_predicted_particles", "shell_scale"]


def _image_shells(height: int, width: int, box_px: int) -> np.ndarray:
    """Shell index (alignment-box Fourier px, rounded) of each rfft coefficient of an ``H × W`` image, flattened;
    coefficients beyond the box's last shell ``s//2`` get the extra index ``s//2 + 1``. int64 ``(H·(W//2+1),)``."""
    fy = np.fft.fftfreq(height)[:, None] * box_px
    fx = np.fft.rfftfreq(width)[None, :] * box_px
    return np.minimum(np.rint(np.hypot(fx, fy)).astype(np.int64), box_px // 2 + 1).ravel()


def shell_scale(data_rfft, model_rfft, shells, n_shells: int) -> np.ndarray:
    """Least-squares scale per shell, ``a(b) = Σ Re(D·M*) / Σ |M|²`` over the coefficients of shell ``b``.

    ``shells`` as from :func:`_image_shells` (flattened; index ``n_shells`` collects what lies beyond). Shells
    where the model has (almost) no power get 0 rather than a noisy ratio. Returns float64 ``(n_shells,)``.
    """
    d, m = data_rfft.ravel(), model_rfft.ravel()
    num = np.bincount(shells, d.real * m.real + d.imag * m.imag, n_shells + 1)[:n_shells]
    den = np.bincount(shells, m.real * m.real + m.imag * m.imag, n_shells + 1)[:n_shells]
    floor = 1e-6 * den.max() if den.size and den.max() > 0 else 1.0
    a = np.where(den > floor, num / np.maximum(den, floor), 0.0)
    # Shell 0 holds only the image's near-DC coefficients, where the (zero-mean) boxes have next to no power and
    # the ratio is meaningless; the CC maps never use it either.
    a[:1] = 0.0
    return a


def subtract_predicted_particles(stack, geometry: TiltSeriesGeometry, optics: TiltSeriesOptics, positions_px,
                                 particle_matrices, half_index, reference_halves, dose_weights, support,
                                 motion_px=None, workers: int = 1, chunk: int = 64, out=None):
    """Each tilt image's residual after every predicted particle is taken out, one frame at a time.

    Parameters
    ----------
    stack
        float32 ``(n_tilts, H, W)``, or a frame source (:mod:`..frames`).
    out
        Writable frame source for the residual (e.g. :class:`..frames.SpilledFrames`); None overwrites ``stack``
        (which must then be writable, as an array is).
    positions_px
        float64 ``(n_particles, 3)`` current static positions (decentred px).
    particle_matrices
        float64 ``(n_particles, 3, 3)``.
    half_index
        int ``(n_particles,)`` in {0, 1}.
    reference_halves
        complex64 ``(2, s, s, s//2+1)`` (:func:`.reference.prepare_reference`).
    dose_weights
        float ``(n_tilts, s, s//2+1)``.
    support
        bool ``(n_tilts, s, s//2+1)``: the frequencies the prediction is computed at (the CC maps' mask).
    motion_px
        float64 ``(n_particles, n_tilts, 3)`` or None: positions are ``p + motion`` (the defocus uses ``p``).
    chunk
        Particles rendered per batch (bounds the temporaries to ``chunk`` boxes).

    Returns
    -------
    own_scale
        float32 ``(n_tilts, s, s//2+1)``: ``a_f`` on the alignment box's half grid, to put each particle's own
        prediction back into its observation.
    residual_power
        float64 ``(n_tilts, s//2+1)``: the residual's power per pixel and shell of the alignment box (the noise
        spectrum the next round whitens with; the normalisation of :func:`..power_spectrum.noise_power_spectra`).
    """
    frames = as_frames(stack)
    out = frames if out is None else out
    n_f, height, width = frames.shape
    s = reference_halves.shape[1]
    n_shells = s // 2 + 1
    proj = geometry.projection_matrices()
    uv, visible, defocus = observed_positions(geometry, positions_px, s, motion_px)
    shells = _image_shells(height, width, s)
    box_radius = radius_rfft_2d(s)
    own = np.zeros((n_f, s, s // 2 + 1), np.float32)
    power = np.zeros((n_f, n_shells))
    mult = rfft_multiplicity_2d(height, width).ravel()  # shell means of the power as over the full plane
    counts = np.bincount(shells, mult, n_shells + 1)[:n_shells]
    model = np.zeros((height, width), np.float32)
    image = np.empty((height, width), np.float32)
    for f in range(n_f):
        data_ft = scipy.fft.rfft2(frames.read_frame(f, out=image), workers=workers)
        rows = np.nonzero(visible[:, f])[0]
        if rows.size:
            model[:] = 0.0
            for start in range(0, rows.size, chunk):
                sel = rows[start:start + chunk]
                origins = window_origins_px(uv[sel, f], s)
                # Placed in its window (the inverse of the observation's centring phase), as the observation sees it.
                pred = predicted_spectra(reference_halves, half_index[sel],
                                         np.einsum("ij,pjk->pik", proj[f, :3, :3], particle_matrices[sel]),
                                         np.full(sel.size, f), defocus[sel, f], optics, geometry.pixel_size_angst,
                                         dose_weights, support, shifts_px=uv[sel, f] - origins - s // 2)
                boxes = centred_irfft_2d(pred, workers=workers)
                del pred
                for (ox, oy), box in zip(origins, boxes):
                    y0, x0 = max(oy, 0), max(ox, 0)
                    y1, x1 = min(oy + s, height), min(ox + s, width)
                    if y1 > y0 and x1 > x0:
                        model[y0:y1, x0:x1] += box[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
            model_ft = scipy.fft.rfft2(model, workers=workers)
            a = shell_scale(data_ft, model_ft, shells, n_shells)
            model_ft *= np.append(a, 0.0).astype(np.float32)[shells].reshape(model_ft.shape)
            data_ft -= model_ft
            del model_ft
            out.write_frame(f, scipy.fft.irfft2(data_ft, s=(height, width), workers=workers))
            own[f] = np.interp(box_radius, np.arange(n_shells), a)
        elif out is not frames:
            out.write_frame(f, image)
        d = data_ft.ravel()
        power[f] = np.bincount(shells, mult * (d.real * d.real + d.imag * d.imag), n_shells + 1)[:n_shells]
        power[f] /= np.maximum(counts, 1e-30) * (height * width)
    return own, power
