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

import functools
from dataclasses import dataclass

import numpy as np
import scipy.fft

from ..power_spectrum import noise_power_spectra
from ..ctf import _constants as ctf_constants
from ..dose import dose_weights_rfft_2d
from ..fourier.extract import (
    circle_crop_radius_px,
    crop_circle,
    extract_windows,
    fourier_crop_rfft_2d,
    window_origins_px,
    windows_to_centred_rfft,
)
from ..fourier.insert import (
    checkerboard_3d,
    dose_x_ranges,
    half_grid_to_real_centred,
    insert_slices_interleaved,
    insert_slices_rfft_3d,
    slice_rows,
)
from ..geometry import TiltSeriesOptics
from ..zernike import zernike_even_phase_rfft_2d, zernike_odd_phase_rfft_2d
from ._kernels import (
    ctf_dose_weight_kernel,
    ctf_envelope_kernel,
    gather_band_windows_kernel,
    separable_phase_kernel,
    split_accumulator_kernel,
)

__all__ = [
    "ExtractionSpec",
    "tilt_spectra",
    "stream_windows",
    "weight_spectra",
    "insert_3d",
    "insert_assemble_3d",
    "assemble_3d",
    "cone_weights",
    "stack_2d",
    "TomogramTables",
    "tomogram_tables",
    "noise_weights_rfft_2d",
    "grid_precorrection_2d",
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
    grid_precorr
        ``--grid_precorr``: divide the real-space 2D images by the trilinear-splat envelope
        (:func:`grid_precorrection_2d`) before insertion.
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
    grid_precorr: bool = False

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


def stream_windows(rows_source, uv, visible, window_px: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`~..fourier.extract.extract_windows` from a streamed tilt series, one row band per frame.

    Each frame's band spans only the rows the visible windows need (edge-clamped), so memory stays at
    the windows plus one band, whatever the tilt series' size; particles close in y share their bands.

    Parameters
    ----------
    rows_source
        Object with ``shape = (F, H, W)`` and ``read_rows(frame, y_start, y_stop, out=None)`` returning
        float32 ``(y_stop − y_start, W)`` (:class:`~..io.tomograms.TiltSeriesRows`).
    uv
        float64 ``(n, F, 2)`` projected positions (x, y) in image px.
    visible
        bool ``(n, F)``; invisible windows are zero-filled.

    Returns
    -------
    windows
        float32 ``(n, F, s, s)``.
    origins
        int64 ``(n, F, 2)`` = (x0, y0) window corners in image px.
    """
    n_frames, h, w = rows_source.shape
    uv = np.asarray(uv, np.float64)
    s = int(window_px)
    origins = np.ascontiguousarray(window_origins_px(uv, s))
    vis = np.ascontiguousarray(visible, dtype=np.bool_)
    windows = np.empty((uv.shape[0], n_frames, s, s), np.float32)
    buffer = None
    for f in range(n_frames):
        on = vis[:, f]
        if on.any():
            oy = origins[on, f, 1]
            y_start = min(max(int(oy.min()), 0), h - 1)
            y_stop = min(max(int(oy.max()) + s - 1, 0), h - 1) + 1
            if buffer is None or buffer.shape[0] < y_stop - y_start:
                buffer = np.empty((y_stop - y_start, w), np.float32)
            band = rows_source.read_rows(f, y_start, y_stop, out=buffer)
        else:
            y_start, band = 0, np.zeros((1, w), np.float32)
        gather_band_windows_kernel(band, y_start, h, origins, vis, f, windows)
    return windows, origins


def tilt_spectra(stack, uv, visible, spec: ExtractionSpec, workers: int = 1, defer_phase: bool = False):
    """Centred, binned, sub-pixel-centred spectra of the windows around each projected position.

    Parameters
    ----------
    stack
        float32 ``(F, H, W)`` tilt images, or a streamed tilt series (see :func:`stream_windows`).
    uv
        float64 ``(n, F, 2)`` projected positions (x, y) in image px.
    visible
        bool ``(n, F)``; invisible frames give zero spectra.
    spec
        Box sizes and binning.

    defer_phase
        Return the sub-pixel phase as factors instead of applying it (for :func:`weight_spectra`'s
        ``phase``, which applies it in its CTF pass: one pass over the spectra less).

    Returns
    -------
    spectra
        complex64 ``(n, F, s2, s2//2+1)``: the unitary FFT of the mean-preserving binned window, with the
        particle centre at the phase origin. With ``defer_phase``: ``(spectra, phase)``, where the
        spectra still need ``phase`` (None if already applied).
    """
    s02 = spec.window_px
    s2 = spec.box_2d
    if int(s02 / spec.binning + 0.5) != s2:
        raise ValueError(f"--bin {spec.binning} with --b {s2} does not give a {s2}-px binned window")
    if hasattr(stack, "read_rows"):
        windows, origins = stream_windows(stack, uv, visible, s02)
    else:
        windows, origins = extract_windows(stack, uv, s02, visible)
    if spec.circle_precrop:
        windows = crop_circle(windows, s02 // 2)
    if s02 % 2:
        f = windows_to_centred_rfft(windows, uv, origins, spec.binning, workers)
        return (f, None) if defer_phase else f
    # Same result as windows_to_centred_rfft, cheaper: for an even window ifftshift is the (−1)^(kx+ky)
    # modulation, and the sub-pixel phase factorises into a kx row times a ky column.
    f = scipy.fft.rfft2(windows, norm="ortho", workers=workers, overwrite_x=True)
    del windows
    rows_src = np.arange(s02)
    if spec.binning != 1.0:
        f = fourier_crop_rfft_2d(f, s2)
        rows = np.arange(s2)
        rows_src = np.where(rows < s2 / 2, rows, rows - s2 + s02)  # the source rows fourier_crop kept
    f = np.ascontiguousarray(f, dtype=np.complex64)
    shift = (np.asarray(uv, np.float64) - origins) / spec.binning - (s2 // 2)
    k = np.arange(s2)
    ky = np.where(k < s2 / 2, k, k - s2).astype(np.float64)
    kx = np.arange(s2 // 2 + 1, dtype=np.float64)
    # (−1)^(kx+ky) of the source grid (the ifftshift) and 1/bin fold into the separable sub-pixel phase
    sign_y = np.where(rows_src % 2, -1.0, 1.0) / spec.binning
    sign_x = np.where(np.arange(s2 // 2 + 1) % 2, -1.0, 1.0)
    row_factor = (sign_y * np.exp(2j * np.pi / s2 * ky * shift[..., 1, None])).astype(np.complex64)
    col_factor = (sign_x * np.exp(2j * np.pi / s2 * kx * shift[..., 0, None])).astype(np.complex64)
    row_factor, col_factor = np.ascontiguousarray(row_factor), np.ascontiguousarray(col_factor)
    if defer_phase:
        return f, (row_factor, col_factor)
    separable_phase_kernel(f, row_factor, col_factor)
    return f


@functools.lru_cache(maxsize=8)
def _checkerboard_2d(box: int) -> np.ndarray:
    y = np.arange(box)[:, None]
    x = np.arange(box // 2 + 1)[None, :]
    cb = (1 - 2 * ((x + y) % 2)).astype(np.float32)
    cb.setflags(write=False)  # cached: shared by every caller
    return cb


def weight_spectra(
    spectra,
    spec: ExtractionSpec,
    optics: TiltSeriesOptics,
    defocus_offsets_angst,
    dose,
    workers: int = 1,
    stack2d: bool = False,
    phase=None,
    noise_weights=None,
):
    """CTF/dose weighting, odd-aberration correction, whitening and circle crop (RELION ``processTomograms``).

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
    phase
        The deferred sub-pixel phase of ``tilt_spectra(..., defer_phase=True)``, or None.
    noise_weights
        float32 ``(F, s2, sh2)`` from :func:`noise_weights_rfft_2d` (``--whiten``), or None. The data are
        multiplied by ``w`` and the weights by ``w²`` (RELION: by ``w``, see below).

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
    # the checkerboard of the centred inverse FFT below folds into the per-pixel sign (it is ±1, so the
    # product is exact in any order)
    centre = spec.circle_crop or stack2d or spec.grid_precorr
    if phase is not None and not spec.do_ctf:
        separable_phase_kernel(x, *phase)
        phase = None
    if spec.do_ctf:
        pixel_sign = np.float32(spec.flip_sign) * (_checkerboard_2d(s2) if centre else np.ones((s2, sh2), np.float32))
        weights = np.empty((0, 0, 0, 0) if stack2d else x.shape, np.float32)
        _ctf_dose_weight(x, spec, optics, defocus_offsets_angst, dose, np.ascontiguousarray(pixel_sign), weights,
                         phase)
        if stack2d:
            weights = None
    else:
        if spec.flip_sign != 1.0:
            x *= np.float32(spec.flip_sign)
        if centre:
            x *= _checkerboard_2d(s2)
        weights = None if stack2d else np.ones(x.shape, np.float32)
    if optics.odd_zernike.size and np.any(optics.odd_zernike != 0):
        phi = zernike_odd_phase_rfft_2d(s2, spec.binned_pixel_size_angst, optics.odd_zernike)
        x *= np.exp(-1j * phi).astype(np.complex64)
    if noise_weights is not None:
        # Deliberate fix (docs/DEVIATIONS.md): RELION multiplies the CTF² weights by w, not w². The data
        # become w·c·X, so the weight that relion_refine divides by must be (w·c)² for the whitened
        # data and their weights to describe the same thing.
        x *= noise_weights[None]
        if weights is not None:
            weights *= np.square(noise_weights)[None]
    if stack2d and spec.binning != 1.0:
        x /= np.float32(spec.binning)
    if not centre:
        return x, weights
    # centred_irfft_2d / centred_rfft_2d without the fftshift copies: (−1)^(kx+ky) for the even box
    # (already applied above on the way in)
    cb = _checkerboard_2d(s2)
    img = scipy.fft.irfft2(x, s=(s2, s2), norm="ortho", workers=workers).astype(np.float32, copy=False)
    del x
    if spec.circle_crop:
        img = crop_circle(img, circle_crop_radius_px(s2, spec.box_3d))
    if spec.grid_precorr and not stack2d:
        img *= grid_precorrection_2d(s2, spec.box_3d)
    if stack2d:
        return img, None
    out = scipy.fft.rfft2(img, norm="ortho", workers=workers, overwrite_x=True)
    out *= cb
    return out.astype(np.complex64, copy=False), weights


def _ctf_dose_weight(spectra, spec: ExtractionSpec, optics: TiltSeriesOptics, defocus_offsets_angst, dose,
                     pixel_sign, weights, phase=None) -> None:
    """``spectra *= pixel_sign·CTF·dose`` and ``weights = (CTF·dose)²`` in one pass (see
    :func:`._kernels.ctf_dose_weight_kernel`); the CTF is ``ctf_rfft_2d_batch``'s, bit for bit."""
    s2 = spectra.shape[2]
    pix = spec.binned_pixel_size_angst
    k1, k2, k3 = ctf_constants(optics.voltage_kv, optics.cs_mm, optics.amplitude_contrast)
    f64 = lambda a: np.ascontiguousarray(a, dtype=np.float64)  # noqa: E731
    envelope = np.empty((optics.n_tilts, s2, s2 // 2 + 1), np.float64)
    ctf_envelope_kernel(f64(optics.ctf_bfactor_angst2), s2, float(pix), envelope)
    use_offset = bool(optics.even_zernike.size and np.any(optics.even_zernike != 0))
    offset = f64(zernike_even_phase_rfft_2d(s2, pix, optics.even_zernike)) if use_offset else np.zeros((1, 1))
    ctf_dose_weight_kernel(
        spectra, f64(optics.defocus_u_angst), f64(optics.defocus_v_angst), f64(np.deg2rad(optics.defocus_angle_deg)),
        f64(np.deg2rad(optics.phase_shift_deg)), envelope, f64(optics.ctf_scale), float(k1), float(k2), float(k3),
        float(pix), offset, use_offset, f64(defocus_offsets_angst), np.ascontiguousarray(dose, np.float32),
        pixel_sign, weights, *(phase if phase is not None else (np.zeros((0, 0, 0), np.complex64),) * 2),
    )


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


def _normfft(spec: ExtractionSpec) -> float:
    normfft = spec.box_2d / (spec.box_3d * np.sqrt(spec.binning))
    return 1.0 if abs(normfft - 1.0) <= 1e-4 else normfft


def insert_assemble_3d(data2d, weights2d, frame_rotations, box_matrices, visible, dose, spec: ExtractionSpec,
                       workers: int = 1, acc=None):
    """:func:`insert_3d` then :func:`assemble_3d`, without the complex128/float64 intermediates.

    Same output bits. ``acc`` is an optional reusable float64 buffer of at least ``n`` accumulators
    ``(n_max, s3, s3, s3//2+1, 4)`` (zeroed here).

    Returns
    -------
    volumes, weights
        As :func:`assemble_3d`.
    """
    n = data2d.shape[0]
    s3 = spec.box_3d
    shape = (n, s3, s3, s3 // 2 + 1, 4)
    if acc is None or acc.shape[0] < n or acc.shape[1:] != shape[1:]:
        acc = np.zeros(shape, np.float64)
    else:
        acc = acc[:n]
        acc.fill(0.0)
    rows = slice_rows(frame_rotations, box_matrices, spec.rbs)
    insert_slices_interleaved(data2d, weights2d, rows, visible, dose_x_ranges(dose, spec.cutoff_fract), spec.rbs**2,
                              acc)
    data = np.empty(shape[:4], np.complex64)
    weights = np.empty((n, 2 * s3, s3, s3 // 2 + 1), np.float32)
    factor = np.ascontiguousarray(checkerboard_3d(s3) * np.float32(_normfft(spec)))
    split_accumulator_kernel(acc, factor, data, weights)
    volumes = scipy.fft.irfftn(data, s=(s3, s3, s3), axes=(-3, -2, -1), norm="ortho", workers=workers,
                               overwrite_x=True)
    return volumes.astype(np.float32, copy=False), weights


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
    volumes = half_grid_to_real_centred(data, s3, scale=_normfft(spec), workers=workers)
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


def noise_weights_rfft_2d(rows_source, spec: ExtractionSpec, workers: int = 1) -> np.ndarray:
    """``--whiten`` noise weights ``w = 1/sqrt(PS)`` of every tilt image on the binned 2D half grid.

    The power spectrum is RELION's (``Tomogram::computeNoiseWeight``): the periodogram averaged over
    ``bin·b``-px tiles of the whole tilt image (step half a tile, unitary FFT, no window), radially
    averaged with linear-interpolation binning (align's
    :func:`~..power_spectrum.noise_power_spectra`), then interpolated linearly to the radius of each
    half-grid pixel (clamped to the last shell). ``w = 0`` where the power is 0.

    Deliberate fix (docs/DEVIATIONS.md): RELION looks the binned grid's radius ``r`` up at unbinned
    tile radius ``bin·r``, i.e. at ``bin`` times the frequency. Pixel ``r`` of the binned box
    (``r/(b·pix·bin)`` Å⁻¹) is the same frequency as radius ``r`` of the ``bin·b`` unbinned tile
    (``r/(bin·b·pix)``), so we look it up at ``r``. Identical for ``--bin 1``.

    Parameters
    ----------
    rows_source
        float32 ``(F, H, W)`` tilt images, or a streamed tilt series with ``read_rows`` (one frame is
        read at a time).
    spec
        Box sizes and binning.

    Returns
    -------
    weights
        float32 ``(F, s2, s2//2+1)``; ky in FFT order.
    """
    n_frames, h, _ = rows_source.shape
    s0 = spec.window_px
    s2 = spec.box_2d
    power = np.empty((n_frames, s0 // 2 + 1))
    for f in range(n_frames):
        frame = rows_source.read_rows(f, 0, h) if hasattr(rows_source, "read_rows") else rows_source[f]
        power[f] = noise_power_spectra(np.asarray(frame, np.float32)[None], s0, workers=workers)[0]
    with np.errstate(divide="ignore"):
        radial = np.where(power > 0, 1.0 / np.sqrt(np.where(power > 0, power, 1.0)), 0.0)
    k = np.arange(s2)
    ky = np.where(k < s2 / 2, k, k - s2).astype(np.float64)
    kx = np.arange(s2 // 2 + 1, dtype=np.float64)
    r = np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)
    grid = np.arange(power.shape[1], dtype=np.float64)
    return np.stack([np.interp(r, grid, radial[f]) for f in range(n_frames)]).astype(np.float32)


@functools.lru_cache(maxsize=8)
def grid_precorrection_2d(box_2d: int, box_3d: int) -> np.ndarray:
    """``--grid_precorr`` factor on the centred real-space 2D image: ``1/sinc²(r/s3)`` for ``r < s3/2``, else 0.

    ``r`` is the distance in px from pixel ``(s2//2, s2//2)`` and ``sinc(u) = sin(πu)/(πu)``. Trilinear
    splatting into the ``s3`` grid multiplies the reconstruction by the transform of the 1-voxel tent,
    ``sinc²(x/s3)`` per axis, so dividing the in-plane image by it pre-compensates the in-plane part
    (the same correction RELION's own reconstructions apply for trilinear interpolation). At
    ``r = s3/4`` the factor is ``π²/8``; it is 1 at the centre and ``π²/4`` at ``r → s3/2``.

    Deliberate fix (docs/DEVIATIONS.md): RELION multiplies by ``r/sin(πr/R)`` (``R = s3/2``; 1 for
    ``r < 1``, 0 from ``R − 1``), which lacks the ``π/R`` factor and jumps at ``r = 1``; even with it,
    ``(πr/R)/sin(πr/R)`` would undo a 2-voxel box kernel, not the trilinear tent.

    Returns
    -------
    factor
        float32 ``(s2, s2)``, read-only (cached).
    """
    c = box_2d // 2
    y, x = np.mgrid[0:box_2d, 0:box_2d]
    r = np.hypot(x - c, y - c)
    u = r / float(box_3d)
    out = np.where(r < box_3d / 2.0, 1.0 / np.square(np.sinc(u)), 0.0).astype(np.float32)
    out.setflags(write=False)
    return out
