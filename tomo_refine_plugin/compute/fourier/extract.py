"""2D extraction of particle windows from tilt series, RELION style (``extractAt2D_Fourier``, ``cropCircle``).

Conventions
-----------
* ``uv`` are image positions ``(u, v)`` = (column, row) in unbinned tilt-series px, shape
  ``(n_particles, n_tilts, 2)``; spectra are ``(n_particles, n_tilts, box, box//2+1)`` = (…, ky, kx).
* A window of size ``s`` starts at ``round(q) − s//2`` with C rounding (half away from zero); pixels
  beyond the image edge repeat the edge pixel.
* Spectra are *centred*: ``rfft2(ifftshift(window), norm="ortho")``, so the window pixel ``s//2`` is
  the phase origin, then shifted by the sub-pixel remainder so that the exact point ``q`` is.
* Real-space images returned by :func:`centred_irfft_2d` have the phase origin at pixel ``box//2``.

Pipelines
---------
* subtomo (``relion_tomo_subtomo``, §5.1–5.3, §6): :func:`extract_ctf_premultiplied_rfft_2d`, then
  :func:`circle_mask_rfft_2d` (3D path) or :func:`stack2d_images` (``--stack2d``).
* align observation (``relion_tomo_align`` §3.2): :func:`align_observation_rfft_2d`.
"""
from __future__ import annotations

import numpy as np
import scipy.fft

from ._extract_kernels import crop_circle_kernel, gather_windows_kernel, phase_shift_kernel

__all__ = [
    "c_round",
    "window_origins_px",
    "extract_windows",
    "windows_to_centred_rfft",
    "fourier_crop_rfft_2d",
    "phase_shift_rfft_2d",
    "extract_centred_rfft_2d",
    "extract_ctf_premultiplied_rfft_2d",
    "centred_irfft_2d",
    "centred_rfft_2d",
    "crop_circle",
    "circle_crop_radius_px",
    "centre_crop_2d",
    "circle_mask_rfft_2d",
    "stack2d_images",
    "align_observation_rfft_2d",
]


def c_round(x) -> np.ndarray:
    """C ``round``: half away from zero (``round(2.5) = 3``, ``round(−2.5) = −3``); int64, same shape."""
    x = np.asarray(x, dtype=np.float64)
    return (np.sign(x) * np.floor(np.abs(x) + 0.5)).astype(np.int64)


def window_origins_px(uv, window_px: int) -> np.ndarray:
    """Window corners ``round(q) − window//2`` (C rounding); int64 ``uv.shape`` = (…, 2) as (x, y)."""
    return c_round(uv) - int(window_px) // 2


def _rows(a, tail):
    a = np.asarray(a)
    return a.reshape((-1,) + a.shape[a.ndim - tail:])


def extract_windows(stack, uv, window_px: int, visible=None) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``window_px``-square windows around every (particle, tilt) position.

    Parameters
    ----------
    stack
        float32 ``(n_tilts, H, W)`` tilt series.
    uv
        float ``(n_particles, n_tilts, 2)`` positions (u, v) in image px.
    window_px
        Window size ``s`` (RELION: ``(int)(bin·b + 0.5)``).
    visible
        bool ``(n_particles, n_tilts)`` or None (all); invisible windows are zero-filled.

    Returns
    -------
    windows
        float32 ``(n_particles, n_tilts, s, s)`` = (…, y, x).
    origins
        int64 ``(n_particles, n_tilts, 2)`` = (x0, y0) window corners in image px.
    """
    stack = np.ascontiguousarray(stack, dtype=np.float32)
    uv = np.asarray(uv, dtype=np.float64)
    if stack.ndim != 3:
        raise ValueError(f"stack must be (n_tilts, H, W), got shape {stack.shape}")
    if uv.ndim != 3 or uv.shape[1:] != (stack.shape[0], 2):
        raise ValueError(f"uv must be (n_particles, {stack.shape[0]}, 2), got {uv.shape}")
    n, f = uv.shape[:2]
    s = int(window_px)
    origins = window_origins_px(uv, s)
    vis = np.ones((n, f), bool) if visible is None else np.asarray(visible, bool)
    if vis.shape != (n, f):
        raise ValueError(f"visible must be {(n, f)}, got {vis.shape}")
    tilt_of_row = np.ascontiguousarray(np.broadcast_to(np.arange(f, dtype=np.int64), (n, f)).ravel())
    out = np.empty((n * f, s, s), dtype=np.float32)
    gather_windows_kernel(
        stack, tilt_of_row, np.ascontiguousarray(origins.reshape(-1, 2)), np.ascontiguousarray(vis.ravel()), out
    )
    return out.reshape(n, f, s, s), origins


def fourier_crop_rfft_2d(spectra, out_box_px: int) -> np.ndarray:
    """Truncate half-grid spectra ``(…, s, s//2+1)`` to ``(…, w, w//2+1)`` (no window, no rescale).

    Rows ``y < w/2`` come from source row ``y``, the others from ``y − w + s`` (RELION's crop).
    """
    spectra = np.asarray(spectra)
    s = spectra.shape[-2]
    w = int(out_box_px)
    rows = np.array([y if y < w / 2 else y - w + s for y in range(w)])
    return np.ascontiguousarray(spectra[..., rows, : w // 2 + 1])


def phase_shift_rfft_2d(spectra, shifts_px) -> np.ndarray:
    """``X(k)·exp(+2πi(kx·tx + ky·ty)/box)``: moves the image content by ``−t`` (the point ``t`` to the origin).

    Parameters
    ----------
    spectra
        complex ``(…, box, box//2+1)``.
    shifts_px
        float ``(…, 2)`` = (tx, ty) in px of this box (same leading shape).

    Returns
    -------
    shifted
        complex64, same shape (a new array).
    """
    spectra = np.asarray(spectra)
    box = spectra.shape[-2]
    out = np.ascontiguousarray(spectra, dtype=np.complex64).reshape((-1,) + spectra.shape[-2:]).copy()
    t = np.ascontiguousarray(np.broadcast_to(np.asarray(shifts_px, np.float64), spectra.shape[:-2] + (2,)))
    phase_shift_kernel(out, t.reshape(-1, 2), box)
    return out.reshape(spectra.shape)


def windows_to_centred_rfft(windows, uv, origins, bin: float = 1.0, workers: int = 1) -> np.ndarray:
    """Centred unitary spectra of windows, binned by Fourier cropping, with the sub-pixel centre at the origin.

    ``F = rfft2(ifftshift(win), norm="ortho")``; for ``bin ≠ 1`` crop to ``w = (int)(s/bin + 0.5)`` and
    divide by ``bin``; then shift by ``t = (q − origin)/bin − w//2`` (≈ frac(q)/bin).

    Parameters
    ----------
    windows
        float32 ``(n_particles, n_tilts, s, s)``.
    uv
        ``(n_particles, n_tilts, 2)`` the exact positions the windows were cut around (image px).
    origins
        int ``(n_particles, n_tilts, 2)`` from :func:`extract_windows`.
    bin
        Binning factor (RELION ``--bin``).

    Returns
    -------
    spectra
        complex64 ``(n_particles, n_tilts, w, w//2+1)``.
    """
    windows = np.asarray(windows, dtype=np.float32)
    s = windows.shape[-1]
    spectra = scipy.fft.rfft2(scipy.fft.ifftshift(windows, axes=(-2, -1)), norm="ortho", workers=workers)
    w = s
    if bin != 1:
        w = int(s / bin + 0.5)
        spectra = fourier_crop_rfft_2d(spectra, w) / np.float32(bin)
    t = (np.asarray(uv, np.float64) - np.asarray(origins, np.float64)) / bin - w // 2
    return phase_shift_rfft_2d(spectra.astype(np.complex64, copy=False), t)


def extract_centred_rfft_2d(stack, uv, box_px: int, bin: float = 1.0, visible=None, workers: int = 1) -> np.ndarray:
    """:func:`extract_windows` of size ``(int)(bin·box + 0.5)`` then :func:`windows_to_centred_rfft`.

    Returns complex64 ``(n_particles, n_tilts, box, box//2+1)``.
    """
    s0 = int(bin * box_px + 0.5)
    windows, origins = extract_windows(stack, uv, s0, visible)
    return windows_to_centred_rfft(windows, uv, origins, bin, workers)


def extract_ctf_premultiplied_rfft_2d(
    stack, uv, box_px: int, ctf_dose, bin: float = 1.0, sign: float = -1.0, odd_phase=None, visible=None,
    workers: int = 1,
) -> np.ndarray:
    """subtomo's per-tilt observations ``X ← sign·c·X`` (then ``·exp(−i·φ_odd)``), ``c = CTF·dose``.

    Parameters
    ----------
    stack
        float32 ``(n_tilts, H, W)``.
    uv
        ``(n_particles, n_tilts, 2)`` image positions (trajectory points projected), unbinned px.
    box_px
        Output box ``b``; the window is ``(int)(bin·b + 0.5)`` px of the tilt series.
    ctf_dose
        float32 ``(n_particles, n_tilts, b, b//2+1)`` (or broadcastable), the CTF at the particle's depth
        times the dose weight, drawn at ``pix·bin``; pass ones for ``--no_ctf``.
    sign
        −1 (contrast inversion, RELION default) or +1 (``--no_ic``).
    odd_phase
        float64 ``(b, b//2+1)`` antisymmetric aberration phase (radians) or None.
    visible
        bool ``(n_particles, n_tilts)``; invisible tilts are zero.

    Returns
    -------
    spectra
        complex64 ``(n_particles, n_tilts, b, b//2+1)``.
    """
    spectra = extract_centred_rfft_2d(stack, uv, box_px, bin, visible, workers)
    spectra *= (np.float32(sign) * np.asarray(ctf_dose, dtype=np.float32))
    if odd_phase is not None:
        spectra *= np.exp(-1j * np.asarray(odd_phase, np.float64)).astype(np.complex64)
    return spectra


def centred_irfft_2d(spectra, workers: int = 1) -> np.ndarray:
    """``fftshift(irfft2(X, norm="ortho"))``: real images with the phase origin at pixel ``box//2``.

    ``spectra`` complex ``(…, box, box//2+1)`` (even box); returns float32 ``(…, box, box)``.
    """
    spectra = np.asarray(spectra)
    box = spectra.shape[-2]
    img = scipy.fft.irfft2(spectra, s=(box, box), norm="ortho", workers=workers)
    return scipy.fft.fftshift(img, axes=(-2, -1)).astype(np.float32, copy=False)


def centred_rfft_2d(images, workers: int = 1) -> np.ndarray:
    """Inverse of :func:`centred_irfft_2d`: ``rfft2(ifftshift(img), norm="ortho")``, complex64 ``(…, box, box//2+1)``."""
    images = np.asarray(images, dtype=np.float32)
    return scipy.fft.rfft2(scipy.fft.ifftshift(images, axes=(-2, -1)), norm="ortho", workers=workers).astype(
        np.complex64, copy=False
    )


def _radius_map(box_px: int) -> np.ndarray:
    c = box_px // 2
    y, x = np.mgrid[0:box_px, 0:box_px]
    return np.hypot(x - c, y - c)


def crop_circle(images, radius_px: float, falloff_px: float = 5.0) -> np.ndarray:
    """RELION ``cropCircle``: subtract the mean outside the circle, then a soft circular mask.

    With ``r`` the distance from pixel ``(box//2, box//2)``: ``μ`` = mean of pixels with ``r > R``
    (strictly: counting the four ``r = R`` pixels too moves RELION's ``--stack2d`` images by 6e-3·RMS);
    ``img ← m(r)·(img − μ)`` with ``m = 1`` for ``r < R − falloff``,
    ``0.5 − 0.5·cos(π(R − r)/falloff)`` for ``R − falloff ≤ r < R`` and 0 beyond.

    Parameters
    ----------
    images
        float ``(…, box, box)`` square images.
    radius_px, falloff_px
        ``R`` and the cosine edge width in px.

    Returns
    -------
    masked
        float32 ``(…, box, box)``.
    """
    images = np.asarray(images, dtype=np.float32)
    box = images.shape[-1]
    if images.shape[-2] != box:
        raise ValueError(f"crop_circle needs square images, got {images.shape[-2:]}")
    r = _radius_map(box)
    outer = r > radius_px
    mask = np.where(
        r < radius_px - falloff_px,
        1.0,
        np.where(r < radius_px, 0.5 - 0.5 * np.cos(np.pi * (radius_px - r) / falloff_px), 0.0),
    )
    flat = np.ascontiguousarray(images).reshape(-1, box, box)
    out = np.empty_like(flat)
    crop_circle_kernel(flat, mask, outer, out)
    return out.reshape(images.shape)


def circle_crop_radius_px(box_px: int, crop_px: int) -> int:
    """Radius of subtomo's circle mask in the ``box`` window: ``box//2 − (box − crop)//2`` (= crop/2 for even sizes)."""
    return int(box_px) // 2 - (int(box_px) - int(crop_px)) // 2


def centre_crop_2d(images, crop_px: int) -> np.ndarray:
    """Real-space centre crop ``[β, β + crop)`` with ``β = (box − crop)//2`` on the last two axes."""
    images = np.asarray(images)
    box = images.shape[-1]
    b = (box - int(crop_px)) // 2
    return images[..., b : b + int(crop_px), b : b + int(crop_px)]


def circle_mask_rfft_2d(spectra, crop_px: int, falloff_px: float = 5.0, workers: int = 1) -> np.ndarray:
    """subtomo §5.3: back to real space, :func:`crop_circle` at :func:`circle_crop_radius_px`, forward again.

    ``spectra`` complex ``(…, box, box//2+1)``; returns complex64 of the same shape.
    """
    spectra = np.asarray(spectra)
    box = spectra.shape[-2]
    img = crop_circle(centred_irfft_2d(spectra, workers), circle_crop_radius_px(box, crop_px), falloff_px)
    return centred_rfft_2d(img, workers)


def stack2d_images(
    spectra, crop_px: int, circle_crop: bool = True, bin: float = 1.0, falloff_px: float = 5.0, workers: int = 1
) -> np.ndarray:
    """``--stack2d`` output images from premultiplied spectra: ``/bin``, iFFT, circle crop, centre crop.

    Parameters
    ----------
    spectra
        complex ``(…, box, box//2+1)`` from :func:`extract_ctf_premultiplied_rfft_2d`.
    crop_px
        Output size (RELION ``--crop``).
    circle_crop
        False for ``--no_circle_crop``.
    bin
        RELION divides the 2D stack once more by ``bin`` (total ``/bin²`` relative to the unitary FFT).

    Returns
    -------
    images
        float32 ``(…, crop, crop)``, particle centre at pixel ``crop//2``.
    """
    spectra = np.asarray(spectra)
    box = spectra.shape[-2]
    img = centred_irfft_2d(spectra, workers)
    if bin != 1:
        img = img / np.float32(bin)
    if circle_crop:
        img = crop_circle(img, circle_crop_radius_px(box, crop_px), falloff_px)
    return np.ascontiguousarray(centre_crop_2d(img, crop_px), dtype=np.float32)


def align_observation_rfft_2d(stack, uv, box_px: int, visible=None, workers: int = 1) -> np.ndarray:
    """relion_tomo_align's observation (``extractFrameAt3D_Fourier``): raw window, circle crop, centred FFT.

    Window ``box`` at ``round(q) − box//2`` (clamped edges), :func:`crop_circle` at radius ``box/2``
    (falloff 5), ``rfft2(ifftshift(·))/box`` (= ``norm="ortho"``), phase ``exp(+2πi·k·(q − round(q))/box)``,
    and ``Obs(0, 0) = 0``.

    Parameters
    ----------
    stack
        float32 ``(n_tilts, H, W)`` raw tilt series (no CTF correction, no dose weighting).
    uv
        ``(n_particles, n_tilts, 2)`` image positions (px).
    visible
        bool ``(n_particles, n_tilts)`` or None; invisible tilts come back zero.

    Returns
    -------
    observations
        complex64 ``(n_particles, n_tilts, box, box//2+1)``.
    """
    windows, origins = extract_windows(stack, uv, box_px, visible)
    windows = crop_circle(windows, box_px / 2.0, 5.0)
    spectra = scipy.fft.rfft2(scipy.fft.ifftshift(windows, axes=(-2, -1)), norm="ortho", workers=workers)
    t = np.asarray(uv, np.float64) - np.asarray(origins, np.float64) - box_px // 2
    out = phase_shift_rfft_2d(spectra, t)
    out[..., 0, 0] = 0
    if visible is not None:
        out[~np.asarray(visible, bool)] = 0
    return out
