"""Central slices of a 3D Fourier half-volume (the projection-slice theorem, RELION's forward projector).

The 2D slice at coefficient ``k = (kx, ky)`` of box ``b`` samples the 3D rfft volume at
``K = Mᵀ·(kx, ky, 0)`` by trilinear interpolation. ``M`` maps particle-box axes to the camera frame
``(u, v, depth)``, i.e. ``M = R_f · A_p`` (the 3×3 block of the projection times the particle matrix), so
the slice is the 2D Fourier transform of the projection of the box along the camera depth axis.
Half-volume conventions: ``Kx < 0`` reads ``conj(V(−K))``; ``y`` and ``z`` indices wrap (rfft order);
``x`` indices clamp at the Nyquist column.
"""
from __future__ import annotations

import numpy as np

from ._slice_kernels import extract_slices_kernel

__all__ = ["extract_central_slices_rfft_3d"]


def extract_central_slices_rfft_3d(volume_rfft, matrices, box_px=None, max_radius_px=None) -> np.ndarray:
    """Sample one central slice per matrix.

    Parameters
    ----------
    volume_rfft
        complex64 ``(s, s, s//2+1)`` = (kz, ky, kx), origin at index 0 (``numpy.fft.rfftn`` order
        of a volume whose centre was moved to voxel 0).
    matrices
        float ``(n, 3, 3)`` or ``(3, 3)``; see module docstring.
    box_px
        Output box ``b`` (default ``s``); the same Fourier-pixel scale as the volume, so use ``b = s``
        unless you mean to resample.
    max_radius_px
        Coefficients beyond this radius (Fourier px) are zero; default ``s/2`` (the volume's Nyquist).

    Returns
    -------
    slices
        complex64 ``(n, b, b//2+1)`` = (ky, kx), rfft order.
    """
    vol = np.ascontiguousarray(volume_rfft, dtype=np.complex64)
    if vol.ndim != 3 or vol.shape[0] != vol.shape[1] or vol.shape[2] != vol.shape[0] // 2 + 1:
        raise ValueError(f"expected a (s, s, s//2+1) half volume, got {vol.shape}")
    mats = np.asarray(matrices, dtype=np.float64)
    single = mats.ndim == 2
    mats = np.ascontiguousarray(mats.reshape(-1, 3, 3))
    s = vol.shape[0]
    b = s if box_px is None else int(box_px)
    radius = s / 2.0 if max_radius_px is None else float(max_radius_px)
    out = np.empty((mats.shape[0], b, b // 2 + 1), dtype=np.complex64)
    extract_slices_kernel(vol, mats, radius * radius, out)
    return out[0] if single else out
