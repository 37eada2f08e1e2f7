"""Real-space projection of a particle map and its placement into a tilt image.

This is deliberately independent of the engine's Fourier slice/insertion code: the map is rotated by
interpolation in real space (cubic B-spline, :func:`scipy.ndimage.map_coordinates`) and summed along
the beam, so an error in the engine's Fourier conventions cannot cancel out against the simulator.
"""
from __future__ import annotations

import numpy as np
from scipy import fft as sp_fft
from scipy import ndimage

__all__ = ["prepare_map", "project_map", "fourier_shift_rfft"]


def prepare_map(volume: np.ndarray) -> np.ndarray:
    """Cubic B-spline coefficients of ``volume`` ``(z, y, x)`` (computed once per map), float64."""
    return ndimage.spline_filter(np.asarray(volume, dtype=np.float64), order=3, mode="constant")


def project_map(coefficients: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """Line integrals of the map along z after rotating it.

    The map is the particle in its own box frame; ``rotations[i]`` maps a box displacement ``s`` to
    the image-frame displacement ``d = M s`` (``M = R_tilt · A_particle``), whose ``x, y`` are image
    pixels and ``z`` the beam direction. The projection is ``I(dx, dy) = Σ_dz map(Mᵀ d)``.

    Parameters
    ----------
    coefficients
        ``(b, b, b)`` spline coefficients from :func:`prepare_map`; box centre at voxel ``b//2``.
    rotations
        float64 ``(n, 3, 3)``.

    Returns
    -------
    projections
        float64 ``(n, b, b)`` = (image y, image x), centre pixel ``(b//2, b//2)`` at the particle centre.
        Density beyond radius ``b/2 + 1`` from the box centre is ignored.
    """
    b = coefficients.shape[0]
    c = b // 2
    axis = np.arange(b, dtype=np.float64) - c
    dz, dy, dx = np.meshgrid(axis, axis, axis, indexing="ij")
    # Only the ball the box's contents can rotate into is sampled (about half the cube): any rotation of a
    # voxel of the box stays within radius √3·b/2, but only the inscribed ball (radius b/2 + 1, the support
    # assumed for the particle, as RELION's reference masks do) is needed; the rest of the cube samples zeros.
    keep = (dx * dx + dy * dy + dz * dz) <= (b / 2.0 + 1.0) ** 2
    d = np.stack([dx[keep], dy[keep], dz[keep]])  # (3, n) image-frame displacements (x, y, z)
    pixel = (dy[keep] + c).astype(np.intp) * b + (dx[keep] + c).astype(np.intp)
    out = np.zeros((len(rotations), b * b))
    for i, m in enumerate(np.asarray(rotations, dtype=np.float64)):
        s = m.T @ d  # box-frame displacement (x, y, z)
        coords = s[::-1] + c  # array order (z, y, x)
        values = ndimage.map_coordinates(coefficients, coords, order=3, mode="constant", cval=0.0, prefilter=False)
        out[i] = np.bincount(pixel, values, minlength=b * b)
    return out.reshape(len(rotations), b, b)


def fourier_shift_rfft(image_rfft: np.ndarray, shift_xy, box_px: int) -> np.ndarray:
    """Multiply an rfft half grid ``(box, box//2+1)`` by the phase that moves the image by ``shift_xy`` px."""
    ky = np.fft.fftfreq(box_px)[:, None]
    kx = np.fft.rfftfreq(box_px)[None, :]
    sx, sy = shift_xy
    return image_rfft * np.exp(-2j * np.pi * (kx * sx + ky * sy))


def rfft2(image):
    return sp_fft.rfft2(image)


def irfft2(image_rfft, box_px):
    return sp_fft.irfft2(image_rfft, s=(box_px, box_px))
