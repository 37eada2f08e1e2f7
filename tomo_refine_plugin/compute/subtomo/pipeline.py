"""The per-particle numerics of ``relion_tomo_subtomo`` on batches of particles of one tomogram.

Steps (see ``shared/research/relion_subtomo_formats.md`` §5–6):

1. :func:`tilt_spectra`: windows of ``bin·b`` px around each projected position (C rounding, edge
   clamping), centred ortho rfft, Fourier crop by ``bin`` (then ``/bin``), sub-pixel centring.
2. :func:`weight_spectra`: × sign·CTF(depth)·dose, odd-Zernike correction, circle crop in real space;
   the CTF² weights.
3. :func:`insert_3d` + :func:`assemble_3d`: Fourier-slice insertion and the real-space volume and the
   ``_weights.mrc`` array; or :func:`stack_2d` for ``--stack2d``.

Arrays: tilt stack ``(n_tilts, H, W)``; per-particle image data ``(n, F, y, x)``; 2D spectra
``(n, F, s2, s2//2+1)`` = (particle, frame, ky, kx); volumes ``(z, y, x)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

from ..ctf import ctf_rfft_2d_batch
from ..dose import dose_weights_rfft_2d
from ..fourier.insert import (
    dose_x_ranges,
    half_grid_to_real_centred,
    insert_slices_rfft_3d,
    slice_rows,
)
from ..geometry import TiltSeriesOptics
from ..zernike import zernike_odd_phase_rfft_2d

__all__ = [
    "ExtractionSpec",
    "c_round",
    "checkerboard_2d",
    "crop_circle_mask",
    "tilt_spectra",
    "weight_spectra",
    "insert_3d",
    "assemble_3d",
    "cone_weights",
    "stack_2d",
    "TomogramTables",
    "tomogram_tables",
]


@dataclass(frozen=True)
class ExtractionSpec:
    """Box sizes and switches of one subtomo run.

    Attributes
    ----------
    box_2d
        ``s2D = --b`` (binned px).
    box_3d
        ``s3D = --crop`` (or ``--b``).
    binning
        ``--bin`` (real-valued).
    pixel_size_angst
        Tilt-series pixel size (unbinned).
    flip_sign
        −1 (RELION default, contrast inversion) or +1 (``--no_ic``).
    do_ctf
        False with ``--no_ctf``.
    circle_crop
        False with ``--no_circle_crop``.
    circle_precrop
        ``--circle_precrop``.
    cutoff_fract
        ``--cutoff_fract``.
    """

    box_2d: int
    box_3d: int
    binning: float = 1.0
    pixel_size_angst: float = 1.0
    flip_sign: float = -1.0
    do_ctf: bool = True
    circle_crop: bool = True
    circle_precrop: bool = False
    cutoff_fract: float = 0.01

    @property
    def window_px(self) -> int:
        """``s02D = (int)(bin·s2D + 0.5)``: the raw window in unbinned px."""
        return int(self.binning * self.box_2d + 0.5)

    @property
    def binned_pixel_size_angst(self) -> float:
        return self.binning * self.pixel_size_angst

    @property
    def rbs(self) -> float:
        return self.box_3d / self.box_2d

    @property
    def visibility_radius_px(self) -> float:
        """``bin·crop/2`` unbinned px (RELION uses crop here, not b)."""
        return self.binning * self.box_3d / 2.0


def c_round(x) -> np.ndarray:
    """C ``round``: half away from zero (not numpy's half-to-even). int64, same shape."""
    x = np.asarray(x, dtype=np.float64)
    return (np.sign(x) * np.floor(np.abs(x) + 0.5)).astype(np.int64)


def checkerboard_2d(box: int) -> np.ndarray:
    """``(−1)^(kx+ky)`` on the half grid, float32 ``(box, box//2+1)``: for an even box, multiplying a
    spectrum by it is the Fourier form of ``fftshift``/``ifftshift`` in real space."""
    y = np.arange(box)[:, None]
    x = np.arange(box // 2 + 1)[None, :]
    return (1 - 2 * ((x + y) % 2)).astype(np.float32)


def crop_circle_mask(box: int, boundary: int, falloff: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """RELION ``cropCircle`` mask and its outside region for a centred ``box`` image.

    ``R = box//2 − boundary``, ``r`` measured from ``(box//2, box//2)``; mask ``1`` for ``r < R − falloff``,
    ``0.5 − 0.5·cos(π(R − r)/falloff)`` for ``R − falloff ≤ r < R``, else 0. ``outside`` is ``r > R``: its
    mean is subtracted before masking.

    Returns
    -------
    mask
        float32 ``(box, box)``.
    outside
        bool ``(box, box)``.
    """
    c = box // 2
    radius = c - boundary
    yy, xx = np.mgrid[0:box, 0:box]
    r = np.hypot(xx - c, yy - c)
    mask = np.where(r < radius - falloff, 1.0, np.where(r < radius, 0.5 - 0.5 * np.cos(np.pi * (radius - r) / falloff), 0.0))
    return mask.astype(np.float32), r > radius


def _apply_crop_circle(images, mask, outside):
    """``images ← mask·(images − mean(images[outside]))`` over the last two axes, in place-safe."""
    mu = images[..., outside].mean(axis=-1)
    return (images - mu[..., None, None]) * mask


def tilt_spectra(stack, uv, visible, spec: ExtractionSpec, workers: int = 1) -> np.ndarray:
    """Centred, binned, sub-pixel-centred spectra of the windows around each projected position.

    Parameters
    ----------
    stack
        float32 ``(F, H, W)`` tilt images.
    uv
        float64 ``(n, F, 2)`` projected positions (x, y) in image px.
    visible
        bool ``(n, F)``; invisible frames give zero spectra.
    spec
        Box sizes and binning.

    Returns
    -------
    spectra
        complex64 ``(n, F, s2, s2//2+1)``: the unitary FFT of the mean-preserving binned window, with the
        particle centre at the phase origin.
    """
    n, n_frames, _ = uv.shape
    s02 = spec.window_px
    _, h, w = stack.shape
    origin = c_round(uv) - s02 // 2  # (n, F, 2) window corner
    ar = np.arange(s02)
    ix = np.clip(origin[..., 0, None] + ar, 0, w - 1)  # (n, F, s02)
    iy = np.clip(origin[..., 1, None] + ar, 0, h - 1)
    frames = np.arange(n_frames)[None, :, None, None]
    win = stack[frames, iy[..., :, None], ix[..., None, :]]  # (n, F, s02, s02)
    win[~visible] = 0.0
    if spec.circle_precrop:
        mask, outside = crop_circle_mask(s02, 0)
        win = _apply_crop_circle(win, mask, outside)
    if s02 % 2 == 0:
        f = scipy.fft.rfft2(win, norm="ortho", workers=workers) * checkerboard_2d(s02)
    else:
        f = scipy.fft.rfft2(np.fft.ifftshift(win, axes=(-2, -1)), norm="ortho", workers=workers)
    del win
    if spec.binning != 1.0:
        w1 = int(s02 / spec.binning + 0.5)
        if w1 != spec.box_2d:
            raise ValueError(f"--bin {spec.binning} with --b {spec.box_2d} gives a {w1}-px binned window")
        rows = np.arange(w1)
        src = np.where(rows < w1 / 2, rows, rows - w1 + s02)
        f = f[:, :, src, : w1 // 2 + 1] / np.float32(spec.binning)
    f = np.ascontiguousarray(f, dtype=np.complex64)
    s2 = spec.box_2d
    shift = (uv - origin) / spec.binning - (s2 // 2)  # particle offset from the phase origin, binned px
    ky = np.where(np.arange(s2) < s2 / 2, np.arange(s2), np.arange(s2) - s2).astype(np.float64)
    kx = np.arange(s2 // 2 + 1, dtype=np.float64)
    wbox = 2 * (s2 // 2)
    ph_x = np.exp(2j * np.pi * kx[None, None, :] * shift[..., 0, None] / wbox).astype(np.complex64)  # (n,F,sh)
    ph_y = np.exp(2j * np.pi * ky[None, None, :] * shift[..., 1, None] / wbox).astype(np.complex64)  # (n,F,s2)
    f *= ph_y[..., :, None]
    f *= ph_x[..., None, :]
    return f


def weight_spectra(
    spectra,
    spec: ExtractionSpec,
    optics: TiltSeriesOptics,
    defocus_offsets_angst,
    dose,
    workers: int = 1,
    stack2d: bool = False,
):
    """CTF/dose weighting, odd-aberration correction and circle crop (RELION ``processTomograms``).

    Parameters
    ----------
    spectra
        complex64 ``(n, F, s2, sh2)`` from :func:`tilt_spectra`; consumed (may be modified in place).
    optics
        Per-tilt CTF parameters, with the particle optics group's Zernike coefficients.
    defocus_offsets_angst
        float64 ``(n, F)`` depth-dependent defocus added to ΔfU and ΔfV.
    dose
        float32 ``(F, s2, sh2)`` dose weights (:func:`~..dose.dose_weights_rfft_2d`).
    stack2d
        If True, also divide by ``bin`` (RELION's 2D path) and skip the return to Fourier space.

    Returns
    -------
    data
        3D path: complex64 ``(n, F, s2, sh2)``, sign·CTF·dose·X, circle-cropped. 2D path: float32
        ``(n, F, s2, s2)`` centred real images.
    weights
        float32 ``(n, F, s2, sh2)``: ``(CTF·dose)²`` (ones with ``--no_ctf``); None for the 2D path.
    """
    n, n_frames, s2, sh2 = spectra.shape
    x = spectra
    if spec.do_ctf:
        tilt_idx = np.broadcast_to(np.arange(n_frames), (n, n_frames))
        c = ctf_rfft_2d_batch(s2, spec.binned_pixel_size_angst, optics, tilt_idx, defocus_offsets_angst)
        c *= dose[None]
        x *= (spec.flip_sign * c).astype(np.float32)
        weights = None if stack2d else (c * c).astype(np.float32)
        del c
    else:
        if spec.flip_sign != 1.0:
            x *= np.float32(spec.flip_sign)
        weights = None if stack2d else np.ones(x.shape, np.float32)
    if optics.odd_zernike.size and np.any(optics.odd_zernike != 0):
        phi = zernike_odd_phase_rfft_2d(s2, spec.binned_pixel_size_angst, optics.odd_zernike)
        x *= np.exp(-1j * phi).astype(np.complex64)
    if stack2d and spec.binning != 1.0:
        x /= np.float32(spec.binning)
    if not (spec.circle_crop or stack2d):
        return x, weights
    cb = checkerboard_2d(s2)
    img = scipy.fft.irfft2(x * cb, s=(s2, s2), norm="ortho", workers=workers).astype(np.float32)
    if spec.circle_crop:
        boundary = (s2 - spec.box_3d) // 2
        mask, outside = crop_circle_mask(s2, boundary)
        img = _apply_crop_circle(img, mask, outside)
    if stack2d:
        return img, None
    x = (scipy.fft.rfft2(img, norm="ortho", workers=workers) * cb).astype(np.complex64)
    return x, weights


def insert_3d(data2d, weights2d, frame_rotations, box_matrices, visible, dose, spec: ExtractionSpec):
    """Fourier-slice insertion of each particle's frames into its own 3D half grid.

    Returns
    -------
    data, ctf, mult
        complex128, float64, float64 ``(n, s3, s3, s3//2+1)``.
    """
    rows = slice_rows(frame_rotations, box_matrices, spec.rbs)
    x_ranges = dose_x_ranges(dose, spec.cutoff_fract)
    return insert_slices_rfft_3d(data2d, weights2d, rows, visible, x_ranges, spec.box_3d, spec.rbs**2)


def cone_weights(box: int, matrices, angle_deg: float, sig0: float) -> np.ndarray:
    """RELION ``--cone_weight`` down-weighting on the 3D half grid.

    ``p = R·(kx, ky, kz)``, ``t = |p_xy| / (|p_z|·sin(angle/2) + sig0)``, weight ``1 − exp(−t²/2)``.

    Parameters
    ----------
    matrices
        float64 ``(n, 3, 3)``, ``R = A_sub·A_part``.

    Returns
    -------
    weights
        float32 ``(n, box, box, box//2+1)``.
    """
    k = np.arange(box)
    ks = np.where(k < box // 2, k, k - box).astype(np.float64)
    kx = np.arange(box // 2 + 1, dtype=np.float64)
    grid = np.stack(np.broadcast_arrays(kx[None, None, :], ks[None, :, None], ks[:, None, None]), -1)  # (z,y,x,3)
    p = np.einsum("nij,zyxj->nzyxi", np.asarray(matrices, float), grid)
    slope = np.sin(np.deg2rad(angle_deg) / 2.0)
    t = np.hypot(p[..., 0], p[..., 1]) / (np.abs(p[..., 2]) * slope + sig0)
    return (1.0 - np.exp(-0.5 * t * t)).astype(np.float32)


def assemble_3d(data, ctf, mult, spec: ExtractionSpec, workers: int = 1):
    """Real-space pseudo-subtomograms and the ``_weights.mrc`` arrays.

    ``data_real = irfftn(normfft · (−1)^(x+y+z) · D, ortho)`` with ``normfft = s2/(s3·√bin)`` (applied only
    if it differs from 1 by more than 1e-4); weights = ``[C; Mu]`` stacked along z, unscaled.

    Returns
    -------
    volumes
        float32 ``(n, s3, s3, s3)`` = (particle, z, y, x), particle centre at voxel s3/2.
    weights
        float32 ``(n, 2·s3, s3, s3//2+1)``: CTF² for z < s3, multiplicity for z ≥ s3 (FFT order, DC at 0).
    """
    s3 = spec.box_3d
    normfft = spec.box_2d / (s3 * np.sqrt(spec.binning))
    if abs(normfft - 1.0) <= 1e-4:
        normfft = 1.0
    volumes = half_grid_to_real_centred(data, s3, scale=normfft, workers=workers)
    weights = np.concatenate([ctf, mult], axis=1).astype(np.float32)
    return volumes, weights


def stack_2d(images, visible, spec: ExtractionSpec) -> list:
    """Centre-crop the circle-cropped 2D images to ``s3`` and keep the visible frames (frame order).

    Parameters
    ----------
    images
        float32 ``(n, F, s2, s2)``.
    visible
        bool ``(n, F)``.

    Returns
    -------
    stacks
        list of n float32 arrays ``(n_visible_i, s3, s3)``.
    """
    b = (spec.box_2d - spec.box_3d) // 2
    crop = images[:, :, b : b + spec.box_3d, b : b + spec.box_3d]
    return [np.ascontiguousarray(crop[i][visible[i]]) for i in range(crop.shape[0])]


@dataclass(frozen=True)
class TomogramTables:
    """Per-tomogram quantities shared by all particles: dose weights on the 2D grid, frame rotations."""

    dose: np.ndarray  # float32 (F, s2, sh2)
    frame_rotations: np.ndarray  # float64 (F, 3, 3)


def tomogram_tables(projections, optics: TiltSeriesOptics, spec: ExtractionSpec) -> TomogramTables:
    """Dose weights at ``(s2, pix·bin)`` and the rotation blocks of the projection matrices."""
    dose = dose_weights_rfft_2d(
        spec.box_2d, spec.binned_pixel_size_angst, optics.pre_exposure_e_per_angst2, optics.bfactor_per_dose_angst2
    )
    return TomogramTables(dose=dose, frame_rotations=np.asarray(projections, float)[:, :3, :3].copy())
