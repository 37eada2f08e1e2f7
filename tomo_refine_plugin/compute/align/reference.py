"""Reference preprocessing for alignment: the half maps as Fourier half volumes, plus the shell weight.

Steps (RELION ``TomoReferenceMap``; relion_align.md §1.6): zero-pad each map to ``--b``; multiply by the
mask; taper (cosine edge of 10 px inside radius s/2, weighted mean subtracted); divide by
``sinc²(r/s) + 0.02`` (pre-compensates the trilinear Fourier interpolation of the slice extractor);
``rfftn`` normalised by ``s^{-3/2}`` with the box centre moved to voxel 0.

Deliberate deviation: RELION sets the presharpened centre voxel (r = 0) to 0 because it evaluates
``sin(x)/x`` at 0; we use ``sinc(0) = 1`` (see docs/DEVIATIONS.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..fourier.shells import radius_rfft_2d, radius_rfft_3d

__all__ = ["PreparedReference", "prepare_reference", "shell_weight_2d", "fsc_last_shell", "half_map_last_shell"]


@dataclass(frozen=True, eq=False)
class PreparedReference:
    """Fourier half volumes of the two half maps and the radial shell weight.

    Attributes
    ----------
    halves
        complex64 ``(2, s, s, s//2+1)`` = (half, kz, ky, kx), origin at index 0.
    box_px
        ``s`` (= ``--b``).
    last_shell_px
        Last fully trusted Fourier shell (Fourier px of box ``s``).
    snr_weight
        float64 ``(s//2+1,)``, per-shell SNR weight (ones unless ``--use_SNR_weight``).
    """

    halves: np.ndarray
    box_px: int
    last_shell_px: float
    snr_weight: np.ndarray


def _radius_grid(box_px: int) -> np.ndarray:
    c = np.arange(box_px) - box_px / 2.0
    z, y, x = np.meshgrid(c, c, c, indexing="ij", sparse=True)
    return np.sqrt(x * x + y * y + z * z)


def pad_to_box(volume: np.ndarray, box_px: int, path=None) -> np.ndarray:
    """Zero-pad a cubic ``(n, n, n)`` map to ``(box, box, box)`` keeping the centre voxel ``n//2`` at ``box//2``."""
    n = volume.shape[0]
    if volume.ndim != 3 or len(set(volume.shape)) != 1:
        raise InputError(f"reference map must be a cube, got shape {volume.shape}", path=path,
                         fix="use the half maps written by relion_tomo_reconstruct_particle")
    if n > box_px:
        raise InputError(f"reference box {n} px is larger than --b {box_px}", path=path, field="--b",
                         fix=f"run with --b {n} or larger (maps are zero-padded, never cropped)")
    if n == box_px:
        return volume.astype(np.float64)
    out = np.zeros((box_px,) * 3)
    o = box_px // 2 - n // 2
    out[o:o + n, o:o + n, o:o + n] = volume
    return out


def taper_and_presharpen(volume: np.ndarray, edge_px: float = 10.0) -> np.ndarray:
    """Taper (cosine edge ``edge_px`` inside radius s/2, weighted mean removed) then divide by sinc²+0.02."""
    s = volume.shape[0]
    r = _radius_grid(s)
    inner = s / 2.0 - edge_px
    w = np.where(r < inner, 1.0, np.where(r < s / 2.0, 0.5 * (1 + np.cos(np.pi * (r - inner) / edge_px)), 0.0))
    mean = (volume * w).sum() / w.sum()
    v = (volume - mean) * w
    sinc = np.sinc(r / s)  # numpy sinc is sin(πx)/(πx), 1 at 0 (RELION zeroes that voxel: fixed on purpose)
    return v / (sinc * sinc + 0.02)


def to_fourier(volume: np.ndarray) -> np.ndarray:
    """``rfftn`` with the box centre at voxel 0, normalised by ``s^{-3/2}``; complex64 ``(s, s, s//2+1)``."""
    s = volume.shape[0]
    return (np.fft.rfftn(np.fft.ifftshift(volume)) / s**1.5).astype(np.complex64)


def half_map_last_shell(halves: np.ndarray) -> tuple[float, np.ndarray]:
    """Last shell and SNR ``(τ²−σ²)/τ²`` estimated from the two half volumes (no FSC file).

    ``σ² = ⟨|F1−F2|²⟩/2``, ``τ² = ⟨(|F1|²+|F2|²)/2⟩`` per integer shell; the last shell is the first with
    SNR < 0.05, minus 1. Returns ``(last_shell_px, snr (s//2+1,))``.
    """
    s = halves.shape[1]
    n_shells = s // 2 + 1
    r = np.round(radius_rfft_3d(s)).astype(int).ravel()
    ok = r < n_shells
    f1 = halves[0].ravel()[ok].astype(np.complex128)
    f2 = halves[1].ravel()[ok].astype(np.complex128)
    rr = r[ok]
    sig = np.bincount(rr, np.abs(f1 - f2) ** 2, n_shells) / 2.0
    tau = np.bincount(rr, (np.abs(f1) ** 2 + np.abs(f2) ** 2) / 2.0, n_shells)
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = np.where(tau > 0, (tau - sig) / tau, 0.0)
    snr[0] = 1.0
    bad = np.nonzero(snr < 0.05)[0]
    first_bad = int(bad[0]) if bad.size else n_shells
    return float(first_bad - 1), snr


def fsc_last_shell(spectral_index, fsc, box_px: int) -> tuple[float, np.ndarray]:
    """Last shell and SNR weight ``2F/(1+F)`` from an FSC curve (RELION: FSC < 0.143 is 0).

    ``spectral_index``, ``fsc``: ``(n_fsc,)``. The curve's shells are rescaled to box ``s`` by
    ``scale = 2(n_fsc−1)/s``. Returns ``(last_shell_px, snr (s//2+1,))``.
    """
    f = np.asarray(fsc, dtype=np.float64).copy()
    f[f < 0.143] = 0.0
    n_fsc = f.shape[0]
    bad = np.nonzero(f == 0.0)[0]
    first_bad = int(bad[0]) if bad.size else n_fsc
    scale = 2.0 * (n_fsc - 1) / box_px
    last = (first_bad - 1) / scale
    shells = np.arange(box_px // 2 + 1) * scale
    ff = np.interp(shells, np.arange(n_fsc), f)
    return float(last), 2 * ff / (1 + ff)


def prepare_reference(half1, half2, voxel_size_angst, pixel_size_angst, box_px, mask=None, fsc_curve=None,
                      freq_cutoff_angst=-1.0, use_snr_weight=False, paths=(None, None)) -> PreparedReference:
    """Preprocess the half maps (module docstring) and find the shell cutoff.

    Parameters
    ----------
    half1, half2
        float ``(n, n, n)`` (z, y, x) maps, ``n ≤ box_px``.
    voxel_size_angst, pixel_size_angst
        The maps' voxel size and the tilt series' pixel size; they must agree (nothing is rescaled).
    mask
        Optional ``(n, n, n)`` mask multiplied into both maps.
    fsc_curve
        Optional ``(spectral_index, fsc)`` arrays; without it the SNR is estimated from the half maps.
    freq_cutoff_angst
        ``--freq_cutoff``; > 0 lowers the last shell to ``s·pix/cutoff``.
    """
    if abs(voxel_size_angst - pixel_size_angst) > 1e-3 * max(1.0, pixel_size_angst):
        raise InputError(
            f"reference voxel size {voxel_size_angst:g} Å differs from the tilt-series pixel size "
            f"{pixel_size_angst:g} Å (nothing is rescaled, as in RELION; a mismatch gives wrongly scaled predictions)",
            path=paths[0], field="voxel size", fix="reconstruct the reference at bin 1 (relion_tomo_reconstruct_particle)")
    vols = []
    for vol, path in zip((half1, half2), paths):
        vol = np.asarray(vol, dtype=np.float64)
        if not np.all(np.isfinite(vol)):
            raise InputError("half map contains NaN or infinite values", path=path, field="map data",
                             fix="recompute the half map")
        if mask is not None:
            if np.shape(mask) != vol.shape:
                raise InputError(f"mask shape {np.shape(mask)} differs from the half map's {vol.shape}",
                                 path=path, field="--mask")
            vol = vol * mask
        vols.append(to_fourier(taper_and_presharpen(pad_to_box(vol, box_px, path))))
    halves = np.stack(vols)
    if fsc_curve is not None:
        last, snr = fsc_last_shell(fsc_curve[0], fsc_curve[1], box_px)
    else:
        last, snr = half_map_last_shell(halves)
    if freq_cutoff_angst > 0:
        last = min(last, box_px * pixel_size_angst / freq_cutoff_angst)
    snr_weight = np.clip(snr, 0.0, 1.0) if use_snr_weight else np.ones(box_px // 2 + 1)
    return PreparedReference(halves=halves, box_px=box_px, last_shell_px=last, snr_weight=snr_weight)


def shell_weight_2d(reference: PreparedReference, width_px: float) -> np.ndarray:
    """The reference's 2D weight: SNR(r) × envelope (1 to the last shell, cosine flank of ``width_px``, 0 from s/2).

    Returns float64 ``(s, s//2+1)`` on the rfft half grid.
    """
    s = reference.box_px
    r = radius_rfft_2d(s)
    last = reference.last_shell_px
    t = (r - last) / max(width_px, 1e-9)
    env = np.where(r <= last, 1.0, np.where(t < 1.0, 0.5 * (1 + np.cos(np.pi * np.clip(t, 0, 1))), 0.0))
    env[r + 1 >= s / 2 + 1] = 0.0
    snr = np.interp(r, np.arange(s // 2 + 1), reference.snr_weight)
    return snr * env
