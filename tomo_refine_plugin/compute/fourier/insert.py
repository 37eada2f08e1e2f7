"""Fourier-slice insertion: 2D central slices splatted into 3D rfft half grids (RELION's
``backprojectSlice_forward_with_multiplicity``, xRanges variant), and the 3D assembly of a
pseudo-subtomogram (checkerboard, ``normfft``, ortho inverse FFT).

Grids are rfft half grids, unshifted (DC at index 0): a 2D slice is ``(s2, s2//2+1)`` = (ky, kx), a
3D grid ``(s3, s3, s3//2+1)`` = (kz, ky, kx). Frequencies are in Fourier voxels of the grid they index.
"""
from __future__ import annotations

import functools

import numpy as np
import scipy.fft

from ._insert_kernels import dose_x_ranges_kernel, insert_slices_kernel

__all__ = [
    "slice_rows",
    "dose_x_ranges",
    "full_x_ranges",
    "insert_slices_rfft_3d",
    "insert_slices_interleaved",
    "checkerboard_3d",
    "half_grid_to_real_centred",
    "real_centred_to_half_grid",
    "half_grid_to_full_centred",
    "backproject_slices_rfft_3d",
]


def slice_rows(frame_rotations, box_matrices, rbs: float) -> np.ndarray:
    """3D frequency of a unit step along the 2D ``kx`` and ``ky`` axes of each slice.

    The 2D frequency ``(kx, ky)`` of frame ``f`` sits at ``rbs · Aᵀ · R_fᵀ · (kx, ky, 0)`` in the box
    frame, i.e. at ``kx·row0 + ky·row1`` with ``row_j = rbs · (R_f · A)[j, :]``.

    Parameters
    ----------
    frame_rotations
        float64 ``(F, 3, 3)``, ``R_f`` (tomogram → image, the rotation block of the projection).
    box_matrices
        float64 ``(n, 3, 3)``, ``A``: box axes in tomogram coordinates (columns).
    rbs
        ``s3 / s2``: ratio of the 3D to the 2D box (< 1 crops in real space).

    Returns
    -------
    rows
        float64 ``(n, F, 2, 3)``.
    """
    m = np.einsum("fij,njk->nfik", np.asarray(frame_rotations, float), np.asarray(box_matrices, float))
    return np.ascontiguousarray(rbs * m[:, :, :2, :])


def dose_x_ranges(dose_weights, cutoff_fract: float) -> np.ndarray:
    """Per (frame, ky row) exclusive kx bound: inside the inscribed circle and dose weight > cutoff.

    Parameters
    ----------
    dose_weights
        float32 ``(F, s2, s2//2+1)``.
    cutoff_fract
        RELION ``--cutoff_fract``.

    Returns
    -------
    x_ranges
        int32 ``(F, s2)``.
    """
    dose = np.ascontiguousarray(dose_weights, dtype=np.float32)
    out = np.empty(dose.shape[:2], dtype=np.int32)
    dose_x_ranges_kernel(dose, np.float32(cutoff_fract), out)
    return out


def full_x_ranges(n_frames: int, s2: int) -> np.ndarray:
    """``x_ranges`` for the inscribed circle only (no dose cut-off), int32 ``(F, s2)``."""
    return dose_x_ranges(np.ones((n_frames, s2, s2 // 2 + 1), np.float32), -1.0)


def insert_slices_rfft_3d(
    slices, weights, rows, visible, x_ranges, box_3d: int, scale: float, target=None, n_acc=None, out=None
):
    """Splat 2D slices into 3D accumulators (trilinear, Hermitian ``kx = 0`` completion).

    For each visible frame ``f`` and 2D sample ``k = (kx, ky)`` with ``kx < x_ranges[f, ky]`` (and
    ``kx ≥ 1`` on negative-``ky`` rows, whose ``kx = 0`` samples are the mirrors of positive rows),
    the sample goes to ``p = kx·row0 + ky·row1``; if ``p.x < 0`` it is replaced by ``(−p, conj)``. Each
    of the 8 neighbours ``g`` with ``g.x < s3//2+1`` and ``−s3/2 ≤ g.y, g.z < s3/2`` receives
    ``m = scale·Π(1 − |p − g|)``: ``data += m·value``, ``ctf += m·weight``, ``mult += m``; on ``g.x = 0``
    the same amounts (value conjugated) also go to ``(0, −g.y, −g.z)``.

    Parameters
    ----------
    slices
        complex ``(n, F, s2, s2//2+1)``.
    weights
        float ``(n, F, s2, s2//2+1)``.
    rows
        float64 ``(n, F, 2, 3)`` (:func:`slice_rows`).
    visible
        bool ``(n, F)``.
    x_ranges
        int ``(F, s2)`` (:func:`dose_x_ranges`).
    box_3d
        ``s3`` (even).
    scale
        Weight multiplier (RELION ``rbs²``).
    target
        int ``(n,)`` accumulator of each particle; default ``arange(n)`` (one grid per particle).
    n_acc
        Number of accumulators (default ``target.max() + 1``).
    out
        Optional ``(data, ctf, mult)`` to accumulate into: complex128 / float64 / float64
        ``(n_acc, s3, s3, s3//2+1)`` = (acc, kz, ky, kx).

    Returns
    -------
    data, ctf, mult
        complex128, float64, float64 ``(n_acc, s3, s3, s3//2+1)``.
    """
    if box_3d % 2:
        raise ValueError(f"the 3D box must be even, got {box_3d}")
    n = np.shape(slices)[0]
    target = np.arange(n, dtype=np.int64) if target is None else np.ascontiguousarray(target, dtype=np.int64)
    if n_acc is None:
        n_acc = int(target.max()) + 1 if n else 0
    shape = (n_acc, box_3d, box_3d, box_3d // 2 + 1)
    if out is not None:
        for arr, dt in zip(out, (np.complex128, np.float64, np.float64)):
            if arr.shape != shape or arr.dtype != dt:
                raise ValueError(f"accumulator must be {dt.__name__} {shape}")
    acc = insert_slices_interleaved(slices, weights, rows, visible, x_ranges, scale, np.zeros(shape + (4,)), target)
    if out is None:
        data = np.empty(shape, np.complex128)
        data.real = acc[..., 0]
        data.imag = acc[..., 1]
        return data, acc[..., 2].copy(), acc[..., 3].copy()
    data, ctf, mult = out
    data.real += acc[..., 0]
    data.imag += acc[..., 1]
    ctf += acc[..., 2]
    mult += acc[..., 3]
    return data, ctf, mult


def insert_slices_interleaved(slices, weights, rows, visible, x_ranges, scale: float, acc, target=None):
    """:func:`insert_slices_rfft_3d` into a caller-owned interleaved accumulator (no copies out of it).

    For pipelines that turn the sums straight into their outputs (subtomo): the accumulator can be
    reused from batch to batch, and no complex128/float64 arrays are split out of it.

    Parameters
    ----------
    slices, weights, rows, visible, x_ranges, scale, target
        As in :func:`insert_slices_rfft_3d`.
    acc
        float64 C-contiguous ``(n_acc, s3, s3, s3//2+1, 4)`` = (acc, kz, ky, kx, [data.real, data.imag,
        ctf, mult]), accumulated in place (zero it first for fresh sums).

    Returns
    -------
    acc
        The same array.
    """
    slices = np.ascontiguousarray(slices, dtype=np.complex64)
    weights = np.ascontiguousarray(weights, dtype=np.float32)
    n, n_frames, s2, _ = slices.shape
    if weights.shape != slices.shape:
        raise ValueError(f"weights shape {weights.shape} != slices shape {slices.shape}")
    rows = np.ascontiguousarray(rows, dtype=np.float64)
    if rows.shape != (n, n_frames, 2, 3):
        raise ValueError(f"rows must be {(n, n_frames, 2, 3)}, got {rows.shape}")
    x_ranges = np.ascontiguousarray(x_ranges, dtype=np.int32)
    if x_ranges.shape != (n_frames, s2):
        raise ValueError(f"x_ranges must be {(n_frames, s2)}, got {x_ranges.shape}")
    target = np.arange(n, dtype=np.int64) if target is None else np.ascontiguousarray(target, dtype=np.int64)
    s3 = acc.shape[1] if acc.ndim == 5 else 0
    if (acc.ndim != 5 or acc.dtype != np.float64 or not acc.flags.c_contiguous or s3 % 2
            or acc.shape[1:] != (s3, s3, s3 // 2 + 1, 4) or (n and target.max() >= acc.shape[0])):
        raise ValueError(f"acc must be C-contiguous float64 (n_acc, s3, s3, s3//2+1, 4), got {acc.dtype} {acc.shape}")
    insert_slices_kernel(slices, weights, rows, np.ascontiguousarray(visible, dtype=np.uint8), x_ranges, target,
                         float(scale), acc)
    return acc


@functools.lru_cache(maxsize=4)
def checkerboard_3d(box: int) -> np.ndarray:
    """``(−1)^(x+y+z)`` on the half grid, float32 ``(box, box, box//2+1)``: moves the real-space
    origin to voxel ``box/2`` (even box)."""
    z = np.arange(box)[:, None, None]
    y = np.arange(box)[None, :, None]
    x = np.arange(box // 2 + 1)[None, None, :]
    cb = (1 - 2 * ((x + y + z) % 2)).astype(np.float32)
    cb.setflags(write=False)  # cached: shared by every caller
    return cb


def half_grid_to_real_centred(data, box: int, scale: float = 1.0, workers: int = 1) -> np.ndarray:
    """Inverse ortho rfft of half grids with the origin moved to voxel ``box/2``.

    ``real = irfftn(scale · (−1)^(x+y+z) · data, norm="ortho")``.

    Parameters
    ----------
    data
        complex ``(..., box, box, box//2+1)``.

    Returns
    -------
    volumes
        float32 ``(..., box, box, box)`` = (z, y, x).
    """
    # the output is float32, so the transform runs in single precision (half the time of complex128)
    d = (np.asarray(data) * (checkerboard_3d(box) * np.float32(scale))).astype(np.complex64, copy=False)
    out = scipy.fft.irfftn(d, s=(box, box, box), axes=(-3, -2, -1), norm="ortho", workers=workers,
                           overwrite_x=True)
    return out.astype(np.float32, copy=False)


def real_centred_to_half_grid(volumes, workers: int = 1) -> np.ndarray:
    """Inverse of :func:`half_grid_to_real_centred` (scale 1): complex ``(..., box, box, box//2+1)``."""
    box = volumes.shape[-1]
    f = scipy.fft.rfftn(np.asarray(volumes), axes=(-3, -2, -1), norm="ortho", workers=workers)
    return f * checkerboard_3d(box)


def half_grid_to_full_centred(half) -> np.ndarray:
    """Expand a real-valued Hermitian half grid ``(box, box, box//2+1)`` to the full human-centred
    ``(box, box, box)`` volume with DC at ``box/2`` (RELION's ``_CTF2.mrc`` / ``_multi.mrc`` layout)."""
    half = np.asarray(half)
    box = half.shape[0]
    sh = half.shape[-1]
    full = np.empty((box, box, box), dtype=half.dtype)
    kx = np.arange(box)
    kx_signed = np.where(kx < box // 2, kx, kx - box)
    # full[kz, ky, kx] in FFT order; negative kx from the Friedel mate (−kz, −ky, −kx)
    zi = (-np.arange(box)) % box
    for x in range(box):
        k = kx_signed[x]
        if 0 <= k < sh:
            full[:, :, x] = half[:, :, k]
        else:
            full[:, :, x] = half[zi][:, zi, -k]
    return np.fft.fftshift(full)


def backproject_slices_rfft_3d(slices, weights, rows, visible, box_3d: int, target=None, n_acc=None, out=None):
    """Backward (gather) Fourier backprojection, as ``relion_tomo_reconstruct_particle`` does it.

    Each 3D half-grid voxel ``k`` (``|k| < s3/2``) at distance ``d = k·n_f`` from slice plane ``f``
    (``|d| < 1``) receives ``(1 − |d|)`` times the bilinear sample of the slice at ``(k·row0, k·row1)``
    (Friedel mate for negative kx); ``ctf`` gets the same for the weights and ``mult`` the ``1 − |d|``.

    Parameters
    ----------
    slices, weights
        complex / float ``(n, F, s2, s2//2+1)``.
    rows
        float64 ``(n, F, 2, 3)`` orthonormal in-plane axes (:func:`slice_rows` with ``rbs = 1``).
    visible
        bool ``(n, F)``.
    box_3d, target, n_acc, out
        As in :func:`insert_slices_rfft_3d`.

    Returns
    -------
    data, ctf, mult
        complex128, float64, float64 ``(n_acc, s3, s3, s3//2+1)``.
    """
    from ._insert_kernels import gather_slices_kernel

    slices = np.ascontiguousarray(slices, dtype=np.complex64)
    weights = np.ascontiguousarray(weights, dtype=np.float32)
    n, n_frames = slices.shape[:2]
    rows = np.ascontiguousarray(rows, dtype=np.float64)
    if rows.shape != (n, n_frames, 2, 3):
        raise ValueError(f"rows must be {(n, n_frames, 2, 3)}, got {rows.shape}")
    normals = np.ascontiguousarray(np.cross(rows[:, :, 0], rows[:, :, 1]))
    norm = np.linalg.norm(normals, axis=-1, keepdims=True)
    normals = normals / np.where(norm > 0, norm, 1.0)
    target = np.arange(n, dtype=np.int64) if target is None else np.ascontiguousarray(target, dtype=np.int64)
    if n_acc is None:
        n_acc = int(target.max()) + 1 if n else 0
    shape = (n_acc, box_3d, box_3d, box_3d // 2 + 1)
    if out is None:
        out = (np.zeros(shape, np.complex128), np.zeros(shape, np.float64), np.zeros(shape, np.float64))
    data, ctf, mult = out
    for arr, dt in ((data, np.complex128), (ctf, np.float64), (mult, np.float64)):
        if arr.shape != shape or arr.dtype != dt or not arr.flags.c_contiguous:
            raise ValueError(f"accumulator must be C-contiguous {dt.__name__} {shape}")
    gather_slices_kernel(slices, weights, rows, normals, np.ascontiguousarray(visible, dtype=np.uint8), target,
                         data, ctf, mult)
    return data, ctf, mult
